"""A live Snapfit server inside the test process, with its job manager and workspaces at hand, and tiny datasets.

In-process on purpose: the tests can then look at the server's jobs and folders, and inject faults into its
training threads (tests/faults.py), while driving it only through its public API or a browser.
"""
from __future__ import annotations

import io
import socket
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from demo.jobs import JobManager

# A recipe that trains in a second or two on a tiny dataset (scratch weights: no Hub needed).
TINY_TRAIN = dict(model="resnet10t", weights="scratch", strategy="auto", epochs=1, lr=3e-3, batch_size=16, img_size=32,
                  augment="none")
GENERIC_ERROR = "has not enabled verbose error reporting"  # Gradio's answer to an exception it was not told about


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingJobs(JobManager):
    """The real JobManager, remembering every job submitted so a test can inspect and clean them up."""

    def __init__(self, max_running: int = 1) -> None:
        super().__init__(max_running=max_running)
        self.submitted = []

    def submit(self, owner, kind, run):
        job = super().submit(owner, kind, run)
        self.submitted.append(job)
        return job

    def stop_all(self, timeout: float = 120.0) -> None:
        """Stop every unfinished job and wait for them, so no training thread outlives its test."""
        for job in self.submitted:
            if not job.finished:
                self.stop(job.id, job.owner)
        deadline = time.monotonic() + timeout
        while any(not job.finished for job in self.submitted) and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def live_app(jobs: JobManager | None = None, workspaces=None, place=None):
    """Launch the app (offline, the launch settings app.py uses; on `place` if given) and yield its URL; stop its
    jobs on the way out."""
    from demo import build_demo, launch_kwargs

    demo = build_demo(offline=True, workspaces=workspaces, jobs=jobs, place=place)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            **launch_kwargs())
    try:
        yield url
    finally:
        if isinstance(jobs, TrackingJobs):
            jobs.stop_all()
        demo.close()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


COLOURS = {"red": (200, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 210), "yellow": (230, 210, 40)}


def colour_zip(path: Path, classes=("red", "green", "blue"), per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """A dataset .zip (one folder per class) of noisy solid-colour squares: tiny, and easy to tell apart."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as z:
        for name in classes:
            for i in range(per_class):
                pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, "PNG")
                z.writestr(f"{name}/{i}.png", png.getvalue())
    return path


def colour_png(path: Path, name: str = "red", size: int = 32) -> Path:
    Image.new("RGB", (size, size), COLOURS[name]).save(path)
    return path


def wait_for_output(job, predicate, timeout: float = 120.0):
    """Poll a gradio_client Job's outputs until one satisfies `predicate`; returns it (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = job.done()  # read first: outputs read after it include the last one
        for out in job.outputs():
            if predicate(out):
                return out
        if done:
            break
        time.sleep(0.1)
    raise AssertionError(f"no output matched within {timeout:.0f} s; outputs: {[str(o)[:200] for o in job.outputs()][-3:]}")
