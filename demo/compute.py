"""One thread for the app's short model calls (classifying, Grad-CAM), so they run at full speed.

Gradio runs each request on whichever of its worker threads is free. PyTorch's CPU build parallelises with
OpenMP, which gives every calling thread a team of its own; once there are more of those threads than cores,
OpenMP stops spin-waiting between parallel regions, and every layer pays for waking its threads. Requests that
hop between worker threads therefore classify about 1.5x slower than a single thread does (36 vs 23 ms for
resnet18 at 224 px on 2 cores; `benchmarks/compute_thread.py`). Running them all on this one thread keeps one
team. The same effect slows a training job (a thread of its own, demo/jobs.py) while any other thread keeps an
idle team, so the thread ends after IDLE_SECONDS without work, taking its team with it. Every short model call of
a request goes through here: classifying, Grad-CAM, examples, loading a model, evaluating, the augmentation
preview, the ONNX export.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
# Short: while the thread lives, its idle team slows a training job's threads by half (benchmarks/compute_thread.py);
# a call after a longer pause pays about 6 ms to start a new team.
IDLE_SECONDS = 2.0


class ComputeThread:
    """Runs calls one at a time, in order, on a single thread that is started on demand and ends when idle."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS, name: str = "snapfit-compute") -> None:
        self.idle_seconds, self.name = idle_seconds, name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _thread and the decision to end it
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) on the compute thread; returns its result or raises its exception, here."""
        future: Future = Future()
        with self._lock:
            self._calls.put((future, fn, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
        return future.result()

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _serve(self) -> None:
        while True:
            try:
                future, fn, args, kwargs = self._calls.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:  # a call queued meanwhile keeps the thread going; otherwise it ends here
                    if self._calls.empty():
                        self._thread = None
                        return
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                future.set_exception(exc)


compute = ComputeThread()  # shared by every session: one OpenMP team for the whole app
