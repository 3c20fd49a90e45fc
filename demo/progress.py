"""A training job's events, gathered into what a page shows of it: the status line, the loss, accuracy and
learning-rate curves, and the log. The Train tab and the Data tab's first model both follow trainings through it.
"""
from __future__ import annotations

from demo import plots
from engine.events import EpochEnd, Finished, Log, Paused, SavedBeforeFailure, Started, Step, Stopped, describe

LOGGED = (Started, EpochEnd, Log, Paused)  # the events the log shows, in engine.events.describe's words
FINAL = (Finished, Stopped, SavedBeforeFailure)


class TrainingProgress:
    """Accumulates a job's events (`add`) into what the page shows."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float, str]] = []  # (step, loss, series) for plots.loss_frame
        self.lrs: list[tuple[int, float]] = []  # (step, learning rate) of every step
        self.history: list[dict] = []  # one EpochEnd's fields per epoch
        self.log: list[str] = []
        self.started: Started | None = None
        self.last_step: Step | None = None
        self.final: Finished | Stopped | SavedBeforeFailure | None = None

    def add(self, event) -> None:
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, Step):
            self.last_step = event
            self.losses.append((event.step, event.loss, plots.LOSS_SERIES[0]))
            self.lrs.append((event.step, event.lr))
        elif isinstance(event, EpochEnd):
            self.history.append(event.__dict__)
            if self.started:
                self.losses.append((event.epoch * self.started.steps_per_epoch, event.val_loss, plots.LOSS_SERIES[1]))
        elif isinstance(event, FINAL):
            self.final = event
        if isinstance(event, LOGGED):
            self.log.append(describe(event))

    @property
    def saved(self) -> bool:
        """Whether the run ended with a model saved (all of it, or its best epoch before a stop or a failure)."""
        return self.final is not None and bool(self.final.model_dir)

    def status(self, job, position: int) -> str:
        """The status line: waiting, progress with the current learning rate, or how the run ended."""
        if job.status == "queued":
            return f"Waiting for a free training slot: position {position} in the queue."
        if job.status == "failed" and self.final is not None:
            return (f"Training failed: {job.error.rstrip('.')}. The best epoch before the failure (epoch {self.final.best_epoch}, "
                    f"{self.final.best_val_acc:.1%} validation accuracy) is saved and ready on the **Classify** tab.")
        if job.status == "failed":
            return f"Training failed: {job.error}"
        if job.status in ("done", "stopped") and self.final is not None:
            best = max((h["val_acc"] for h in self.history), default=0.0)
            head = "Finished" if job.status == "done" else "Stopped"
            return (f"{head} in {job.elapsed:.0f} s. Best validation accuracy **{best:.1%}**. "
                    "The model is ready on the **Classify** tab.")
        return self._progress(job)

    def _progress(self, job) -> str:
        if self.started is None or self.last_step is None:
            return f"Preparing… ({job.elapsed:.0f} s)"
        s, total = self.last_step, self.started.total_steps
        eta = job.elapsed / max(s.step, 1) * max(total - s.step, 0)
        return (f"Epoch {s.epoch}/{self.started.epochs} · step {s.step}/{total} · learning rate {s.lr:.2e} · "
                f"{s.images_per_s:.0f} images/s · loss {s.loss:.3f} · ETA {eta:.0f} s")
