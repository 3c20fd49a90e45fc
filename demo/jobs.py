"""Background jobs: long work that outlives the browser tab that started it.

Gradio cancels a generator event when its tab closes or reloads, so a training run streamed straight from
an event handler would die with the tab. Instead the handler submits a job here: the server owns it and
runs it on a daemon thread, every event it yields is kept in `Job.events`, and any page that knows the job
id (and belongs to the same owner) can `follow()` it, from the start or from where it left off.

`max_running` caps how many jobs train at once across all users (one GPU is shared); the rest wait in one
FIFO queue. Plain Python on purpose: no gradio, no torch, so it is easy to test and reuse.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.errors import UserError
from engine.stopping import StopToken

log = logging.getLogger("snapfit.jobs")

FINISHED = frozenset({"done", "stopped", "failed"})
MESSAGE_LIMIT = 300  # characters of an unexpected error shown to the user; the traceback goes to the server log
OUT_OF_MEMORY = (
    "Ran out of memory. Try a smaller batch size or a smaller image size, "
    "or wait until other training runs have finished."
)

Run = Callable[[StopToken], Iterable[Any]]


class Job:
    """One unit of background work and everything it has reported so far.

    Fields are written only by the JobManager (under its lock); readers may look at them at any time.
    """

    def __init__(self, owner: str, kind: str, run: Run) -> None:
        self.id: str = uuid.uuid4().hex  # unguessable: the id alone is never enough, but it should not leak jobs either
        self.owner = owner
        self.kind = kind
        self.status = "queued"
        self.events: list = []
        self.error: str | None = None
        self.stop_token = StopToken()
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self._run: Run | None = run

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def elapsed(self) -> float:
        """Seconds spent running (so far, or in total once ended); 0 while queued."""
        if self.started is None:
            return 0.0
        return (self.ended or time.time()) - self.started

    def __repr__(self) -> str:
        return f"Job({self.kind!r}, {self.status!r}, id={self.id[:8]}…, events={len(self.events)})"


def failure_message(exc: BaseException) -> str:
    """What to tell the user about an exception that ended a job (or a request): one readable line."""
    if isinstance(exc, UserError):
        return shorten(str(exc))
    if is_out_of_memory(exc):
        return OUT_OF_MEMORY
    return shorten(" ".join(f"Internal error ({type(exc).__name__}): {exc}".split()), MESSAGE_LIMIT)


def shorten(message: str, limit: int = 1000) -> str:
    """Keep a message readable when it quotes a huge input: long quoted values are cut to 80 characters
    (the advice around them stays), and the whole to `limit`."""
    message = re.sub(r"""(['"])([^'"]{80})[^'"]{20,}\1""", r"\1\2…\1", message)
    return message if len(message) <= limit else message[:limit - 1] + "…"


def is_out_of_memory(exc: BaseException) -> bool:
    # torch reports CUDA OOM as torch.OutOfMemoryError (a RuntimeError subclass; named here so this module
    # needs no torch import) and CPU OOM as a RuntimeError from its allocator.
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "DefaultCPUAllocator" in text)


class JobManager:
    """Owns every job: queues them, runs up to `max_running` at once, and lets their owners watch or stop them."""

    def __init__(self, max_running: int = 1, keep_seconds: float = 6 * 3600) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        self.max_running = max_running
        self.keep_seconds = keep_seconds
        # One Condition guards all state below; notify_all on every change wakes the followers.
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}  # insertion order = submission order, which latest() relies on
        self._queue: deque[Job] = deque()
        self._running = 0

    @classmethod
    def from_env(cls, keep_seconds: float = 6 * 3600) -> JobManager:
        """A manager sized by SNAPFIT_MAX_JOBS (default 1); a bad value falls back to 1 rather than crash the app."""
        raw = os.environ.get("SNAPFIT_MAX_JOBS", "").strip()
        max_running = 1
        if raw:
            try:
                max_running = int(raw)
                if max_running < 1:
                    raise ValueError
            except ValueError:
                log.warning("SNAPFIT_MAX_JOBS=%r is not a whole number of at least 1; using 1", raw)
                max_running = 1
        return cls(max_running=max_running, keep_seconds=keep_seconds)

    # --- submitting and running ------------------------------------------------------------------------

    def submit(self, owner: str, kind: str, run: Run) -> Job:
        """Queue `run(job.stop_token)`; it starts on its own thread as soon as a slot is free."""
        job = Job(owner, kind, run)
        with self._cond:
            self._prune()
            self._jobs[job.id] = job
            self._queue.append(job)
            self._start_queued()
            self._cond.notify_all()
        return job

    def _start_queued(self) -> None:
        """Fill free slots from the front of the queue. Caller holds the lock."""
        while self._queue and self._running < self.max_running:
            job = self._queue.popleft()
            job.status = "running"
            job.started = time.time()
            self._running += 1
            name = f"snapfit-job-{job.kind}-{job.id[:8]}"
            # Daemon: a job must never keep the server process alive on shutdown.
            threading.Thread(target=self._execute, args=(job,), name=name, daemon=True).start()

    def _execute(self, job: Job) -> None:
        # Assume the worst until the run ends cleanly, so even a BaseException leaves a finished job behind.
        status, error = "failed", "Internal error: the job was interrupted."
        try:
            for item in job._run(job.stop_token):
                self._record(job, item)
        except Exception as exc:
            error = failure_message(exc)
            self._log_failure(job, exc)
        else:
            status, error = ("stopped" if job.stop_token.stopped else "done"), None
        finally:
            self._finish(job, status, error)

    def _record(self, job: Job, item: Any) -> None:
        with self._cond:
            job.events.append(item)
            self._cond.notify_all()

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        with self._cond:
            job.status, job.error, job.ended = status, error, time.time()
            job._run = None  # the run's closure may hold datasets or models; let them go
            self._running -= 1
            self._start_queued()
            self._cond.notify_all()

    @staticmethod
    def _log_failure(job: Job, exc: Exception) -> None:
        if isinstance(exc, UserError):
            log.info("job %s (%s) stopped with a user error: %s", job.id, job.kind, exc)
        else:
            # The user sees a one-line message; the traceback goes to the server log so it is never lost.
            log.error("job %s (%s) of %s failed", job.id, job.kind, job.owner, exc_info=exc)

    def _prune(self) -> None:
        """Forget finished jobs older than keep_seconds, so a long-lived server does not grow forever."""
        cutoff = time.time() - self.keep_seconds
        for job_id in [j.id for j in self._jobs.values() if j.finished and j.ended is not None and j.ended < cutoff]:
            del self._jobs[job_id]

    # --- looking up and controlling ----------------------------------------------------------------------

    def get(self, job_id: str | None, owner: str) -> Job | None:
        """The job, or None if the id is unknown, pruned, or belongs to another owner (indistinguishable on purpose)."""
        if not job_id:
            return None
        with self._cond:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def latest(self, owner: str, kind: str | None = None) -> Job | None:
        """The owner's most recently submitted job (of `kind`, if given)."""
        with self._cond:
            for job in reversed(self._jobs.values()):
                if job.owner == owner and (kind is None or job.kind == kind):
                    return job
        return None

    def stop(self, job_id: str, owner: str) -> bool:
        """Ask the job to stop. A queued job is dropped at once as "stopped"; a running one stops at its next check.

        Returns False if the job is not visible to `owner`; True otherwise (also when it had already finished).
        """
        job = self.get(job_id, owner)
        if job is None:
            return False
        with self._cond:
            job.stop_token.stop()
            if job.status == "queued":
                self._queue.remove(job)
                job.status, job.ended, job._run = "stopped", time.time(), None
            self._cond.notify_all()
        return True

    def queue_position(self, job: Job) -> int:
        """1-based place in the queue (1 = next to start), 0 if the job is not waiting."""
        with self._cond:
            return self._position(job)

    def _position(self, job: Job) -> int:
        if job.status != "queued":
            return 0
        for place, queued in enumerate(self._queue, start=1):
            if queued is job:
                return place
        return 0

    def last_active(self, owner: str) -> float | None:
        """When the owner's work last ended: math.inf while a job of theirs is queued or running (their files
        must not be cleaned up then), None if they have no job at all."""
        with self._cond:
            ends = [math.inf if not j.finished else (j.ended or 0.0) for j in self._jobs.values() if j.owner == owner]
        return max(ends, default=None)

    def running_count(self) -> int:
        with self._cond:
            return self._running

    def queued_count(self) -> int:
        with self._cond:
            return len(self._queue)

    # --- watching ----------------------------------------------------------------------------------------

    def follow(
        self,
        job_id: str,
        owner: str,
        start: int = 0,
        poll: float = 0.25,
        timeout: float | None = None,
        heartbeat: float = 1.0,
    ) -> Iterator[tuple[list, Job]]:
        """Stream `(new_events, job)` from event index `start` until the job finishes.

        Yields when events arrive (batched if the reader is slower than the run), when the status or queue
        position changes, and every `heartbeat` seconds even without change so a page can refresh elapsed
        time. `poll` only bounds how long one wait on the condition lasts. The last yield carries the
        finished job. Yields nothing at all if the job is not visible to `owner`; stops quietly after
        `timeout` seconds if given. The lock is never held while the caller consumes a yield.
        """
        job = self.get(job_id, owner)
        if job is None:
            return
        cursor = max(0, start)
        seen: tuple[str, int] | None = None
        last_yield = time.monotonic()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(job.events) > cursor or self._state(job) != seen, timeout=poll)  # noqa: B023 (called here)
                new = job.events[cursor:]
                state = self._state(job)
            cursor += len(new)
            now = time.monotonic()
            if new or state != seen or now - last_yield >= heartbeat:
                seen, last_yield = state, now
                yield new, job
            # Judge by the state read under the lock, not job.status now: the job may have finished since,
            # and returning on that would skip the final yield. A finished state always differs from `seen`.
            if state[0] in FINISHED or (deadline is not None and now >= deadline):
                return

    def _state(self, job: Job) -> tuple[str, int]:
        return job.status, self._position(job)
