"""The small records that long-running engine work yields.

`train.fit()` and `lr_finder.find()` are generators of these. The CLI prints them, the demo draws them,
tests assert on them. Each is a plain dataclass so it can be logged as JSON (`dataclasses.asdict`). Readers tell
them apart by type (`isinstance(event, EpochEnd)`); `describe(event)` is their one line of text, the same on the
command line and in the app's training log.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import AUTO_STEPS_MAX, AUTO_STEPS_MIN, AUTO_STEPS_SHARE


@dataclass
class Log:
    """A line of plain-language progress (e.g. "embedding 720 images once")."""

    message: str
    kind: str = "log"


@dataclass
class Started:
    epochs: int
    steps_per_epoch: int
    total_steps: int
    num_train: int
    num_val: int
    model: str
    strategy: str
    device: str
    metric: str = "accuracy"  # what the run scores its epochs by (val_acc): "accuracy", or "mAP" for multi-label
    kind: str = "started"


@dataclass
class Step:
    step: int  # 1-based over the whole run
    epoch: int  # 1-based
    loss: float
    lr: float
    images_per_s: float
    kind: str = "step"


@dataclass
class EpochEnd:
    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    seconds: float
    lr: float
    metric: str = "accuracy"  # what val_acc is: the accuracy, or for a multi-label run the mAP
    kind: str = "epoch_end"


@dataclass
class Finished:
    model_dir: str
    best_epoch: int
    best_val_acc: float
    seconds: float
    metric: str = "accuracy"  # what best_val_acc is (see EpochEnd)
    kind: str = "finished"


@dataclass
class Stopped:
    """The caller stopped the run; `model_dir` holds the best epoch so far ("" if none finished)."""

    model_dir: str
    epochs_done: int
    seconds: float
    kind: str = "stopped"


@dataclass
class SavedBeforeFailure:
    """The run failed after `best_epoch` ended; that epoch is in `model_dir`. The error is raised right after."""

    model_dir: str
    best_epoch: int
    best_val_acc: float
    metric: str = "accuracy"
    kind: str = "saved_before_failure"


@dataclass
class Paused:
    """A chunk of a longer run ended at an epoch boundary within its time budget (see engine/checkpoint.py):
    `checkpoint` resumes it; `model_dir` already holds the best epoch so far."""

    model_dir: str
    checkpoint: str
    epochs_done: int
    seconds: float
    kind: str = "paused"


@dataclass
class LRStarted:
    """The range test's plan: `total` steps, against the `training_steps` the training run with the same settings
    would take; `auto`: the number was chosen from those (engine.config.auto_steps). `lr`: the learning rate
    that training would use without the finder (the one to keep when the curve can't be trusted)."""

    total: int
    training_steps: int
    auto: bool
    lr: float
    kind: str = "lr_started"


@dataclass
class LRStep:
    step: int
    total: int
    lr: float
    loss: float
    smoothed: float
    seconds: float = 0.0  # since the test's first step began: with step and total, the time left
    kind: str = "lr_step"

    @property
    def eta(self) -> float:
        """Seconds left if every remaining step takes the average so far (a test that diverges ends sooner)."""
        return self.seconds / self.step * (self.total - self.step)


@dataclass
class LRFinished:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    message: str = ""  # why no suggestion could be made, when that is the case
    stopped: bool = False
    seconds: float = 0.0
    caution: str = ""  # why the suggestions should not be trusted (engine.lr_finder.caution); "" when the curve is clear
    kind: str = "lr_finished"


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss from an hour)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(event) -> str:
    """One line of plain text for an event: what the CLI prints and what the app's training log shows.

    Matched by type, so a new event class is a new branch here (anything unknown falls back to its repr).
    """
    if isinstance(event, Log):
        return event.message
    if isinstance(event, Started):
        scored = " (multi-label, scored by mAP)" if event.metric == "mAP" else ""
        return (f"training {event.model} ({event.strategy}) on {event.device}: {event.num_train} training / "
                f"{event.num_val} validation images{scored}")
    if isinstance(event, Step):
        return (f"step {event.step} (epoch {event.epoch}): loss {event.loss:.4f}, lr {event.lr:.2e}, "
                f"{event.images_per_s:.0f} images/s")
    if isinstance(event, EpochEnd):
        return (f"epoch {event.epoch}: train loss {event.train_loss:.4f}, val loss {event.val_loss:.4f}, "
                f"val {_score(event.val_acc, event.metric)} ({event.seconds:.1f} s)")
    if isinstance(event, Finished):
        return (f"finished in {event.seconds:.0f} s: epoch {event.best_epoch} ({saved_score(event.best_val_acc, event.metric)}) "
                f"is saved in {event.model_dir}")
    if isinstance(event, Stopped):
        saved = f"the best epoch so far is saved in {event.model_dir}" if event.model_dir else "no epoch ended, nothing saved"
        return f"stopped after {event.epochs_done} epochs ({event.seconds:.0f} s): {saved}"
    if isinstance(event, SavedBeforeFailure):
        return (f"the run failed after epoch {event.best_epoch}; that epoch ({saved_score(event.best_val_acc, event.metric)}) "
                f"is saved in {event.model_dir}")
    if isinstance(event, Paused):
        return f"checkpoint after epoch {event.epochs_done}; going on in the next GPU call"
    if isinstance(event, LRStarted):
        rule = (f" (auto: {AUTO_STEPS_SHARE:.0%} of them, {AUTO_STEPS_MIN} to {AUTO_STEPS_MAX})"
                if event.auto else "")
        return (f"LR finder: {event.total} steps, about {event.total / max(event.training_steps, 1):.0%} of the "
                f"{event.training_steps} steps of the training run{rule}")
    if isinstance(event, LRStep):
        return (f"LR finder step {event.step}/{event.total}: lr {event.lr:.2e}, loss {event.loss:.4f}"
                + (f", ETA {clock(event.eta)}" if event.seconds else ""))
    if isinstance(event, LRFinished):
        found = ", ".join(f"{name} {lr:.2e}" for name, lr in event.suggestions.items()) or event.message or "none"
        doubt = f" (not reliable: {event.caution})" if event.caution else ""
        return (f"LR finder {'stopped' if event.stopped else 'done'} after {len(event.lrs)} steps ({event.seconds:.1f} s): "
                f"{found}{doubt}")
    return repr(event)


def metrics_score(metrics: dict) -> tuple[float | None, str]:
    """A model folder's metrics.json score and what it is: (accuracy, "accuracy"), or (mAP, "mAP") for a multi-label
    model; (None, "accuracy") when it holds neither."""
    if metrics.get("multi_label"):
        return metrics.get("val_map"), "mAP"
    return metrics.get("val_accuracy"), "accuracy"


def short_score(value: float, metric: str) -> str:
    """A score in a table cell: "93.1%", "mAP 0.912"."""
    return f"mAP {value:.3f}" if metric == "mAP" else f"{value:.1%}"


def _score(value: float, metric: str) -> str:
    """A run's score as people read it: "accuracy 93.1%", "mAP 0.912"."""
    return f"mAP {value:.3f}" if metric == "mAP" else f"accuracy {value:.1%}"


def saved_score(value: float, metric: str) -> str:
    """A saved epoch's score: "93.1% validation accuracy", "validation mAP 0.912"."""
    return f"validation mAP {value:.3f}" if metric == "mAP" else f"{value:.1%} validation accuracy"
