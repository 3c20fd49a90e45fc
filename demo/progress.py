"""A training job's events, gathered into what a page shows of it: the status line, the loss, accuracy and
learning-rate curves, and the log. The Train tab and the Data tab's first model both follow trainings through it.
"""
from __future__ import annotations

from engine.events import EpochEnd, Finished, Log, Paused, SavedBeforeFailure, Started, Step, Stopped, describe, saved_score

LOGGED = (Started, EpochEnd, Log, Paused)  # the events the log shows, in engine.events.describe's words
FINAL = (Finished, Stopped, SavedBeforeFailure)
LOG_LINES = 100  # the log on the page: its latest 100 to 199 lines (an epoch writes one; the model folder's
# metrics.json keeps every epoch's figures)


class TrainingProgress:
    """Accumulates a job's events (`add`) into what the page shows."""

    def __init__(self) -> None:
        # (epoch, value) points for plots.loss_frame and plots.lr_frame: a step's epoch is fractional (2.5: half-way
        # through the third), a validation's whole (its epoch's end). The frames downsample them.
        self.train_loss: list[tuple[float, float]] = []
        self.val_loss: list[tuple[float, float]] = []
        self.lrs: list[tuple[float, float]] = []
        self.history: list[dict] = []  # one EpochEnd's fields per epoch
        self.log: list[str] = []
        self.started: Started | None = None
        self.last_step: Step | None = None
        self.final: Finished | Stopped | SavedBeforeFailure | None = None
        self._epoch_steps = (0, 0)  # (epoch, steps of it seen)

    def add(self, event) -> None:
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, Step):
            self.last_step = event
            x = self._epoch_of(event)
            self.train_loss.append((x, event.loss))
            self.lrs.append((x, event.lr))
        elif isinstance(event, EpochEnd):
            self.history.append(event.__dict__)
            self.val_loss.append((event.epoch, event.val_loss))
        elif isinstance(event, FINAL):
            self.final = event
        if isinstance(event, LOGGED):
            self.log.append(describe(event))

    def _epoch_of(self, step: Step) -> float:
        """Where a step falls in epochs: its epoch's start plus the part of the epoch done (at most all of it: the
        frozen epochs of a fine-tune may take a few more steps than Started.steps_per_epoch, its last phase's)."""
        epoch, seen = self._epoch_steps
        seen = seen + 1 if epoch == step.epoch else 1
        self._epoch_steps = (step.epoch, seen)
        per_epoch = self.started.steps_per_epoch if self.started else 1
        return step.epoch - 1 + min(1.0, seen / max(per_epoch, 1))

    def log_tail(self) -> str:
        """The latest lines of the log, LOG_LINES to twice that many: the window moves LOG_LINES lines at a time,
        so most updates only append to the text the page has (Gradio sends a text's appended part alone)."""
        start = max(0, len(self.log) - LOG_LINES) // LOG_LINES * LOG_LINES
        return "\n".join(self.log[start:])

    @property
    def metric(self) -> str:
        """What the run scores its epochs by: "accuracy", or "mAP" for a multi-label run."""
        return self.started.metric if self.started is not None else "accuracy"

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
                    f"{saved_score(self.final.best_val_acc, self.final.metric)}) is saved and ready on the **Classify** tab.")
        if job.status == "failed":
            return f"Training failed: {job.error}"
        if job.status in ("done", "stopped") and self.final is not None:
            best = max((h["val_acc"] for h in self.history), default=0.0)
            head = "Finished" if job.status == "done" else "Stopped"
            best_text = f"validation mAP **{best:.3f}**" if self.metric == "mAP" else f"validation accuracy **{best:.1%}**"
            return (f"{head} in {job.elapsed:.0f} s. Best {best_text}. "
                    "The model is ready on the **Classify** tab.")
        return self._progress(job)

    def _progress(self, job) -> str:
        if self.started is None or self.last_step is None:
            return f"Preparing… ({job.elapsed:.0f} s)"
        s, total = self.last_step, self.started.total_steps
        eta = job.elapsed / max(s.step, 1) * max(total - s.step, 0)
        return (f"Epoch {s.epoch}/{self.started.epochs} · step {s.step}/{total} · learning rate {s.lr:.2e} · "
                f"{s.images_per_s:.0f} images/s · loss {s.loss:.3f} · ETA {eta:.0f} s")
