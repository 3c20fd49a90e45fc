"""What every tab's handlers share: the workspaces, the job manager, and whether the Hub is reachable."""
from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass

import gradio as gr

from demo.jobs import JobManager
from demo.space import Place
from demo.workspace import Workspace, Workspaces
from engine.errors import UserError
from engine.train import PRETRAINED_RECIPE, SCRATCH_RECIPE


@dataclass
class Context:
    workspaces: Workspaces
    jobs: JobManager
    offline: bool
    place: Place = Place()  # a laptop, or a (ZeroGPU) Space: defaults and caps follow

    def workspace(self, key) -> Workspace:
        return self.workspaces.get(key)

    def recipe(self) -> dict:
        """The Train tab's starting values: a small model from scratch offline, a pretrained one online."""
        return SCRATCH_RECIPE if self.offline else PRETRAINED_RECIPE

    def stop_latest(self, key, kind: str) -> None:
        """Ask the workspace's running job of this kind to stop (it ends after its current step)."""
        ws = self.workspace(key)
        job = self.jobs.latest(ws.key, kind)
        if job is not None and not job.finished:
            self.jobs.stop(job.id, ws.key)

    def follow(self, owner: str, job, interval: float):
        """A job's new events and latest state, at most once per `interval` seconds (always the final state).

        Pages only need a few updates a second; the events in between are batched, never dropped.
        """
        pending, last = [], 0.0
        job_id = job.id
        for new_events, job in self.jobs.follow(job_id, owner, start=0):  # noqa: B020 (job: its latest state)
            pending += new_events
            now = time.monotonic()
            if job.finished or now - last >= interval:
                yield pending, job
                pending, last = [], now


def user_errors(fn):
    """Turn a UserError into a gr.Error (a readable message in the page, not a traceback)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except UserError as exc:
                raise gr.Error(str(exc), duration=None) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), duration=None) from exc
    return wrapper
