"""The small records that long-running engine work yields.

`train.fit()` and `lr_finder.find()` are generators of these. The CLI prints them, the demo draws them,
tests assert on them. Each is a plain dataclass so it can be logged as JSON (`dataclasses.asdict`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
    kind: str = "epoch_end"


@dataclass
class Finished:
    model_dir: str
    best_epoch: int
    best_val_acc: float
    seconds: float
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
class LRStep:
    step: int
    total: int
    lr: float
    loss: float
    smoothed: float
    kind: str = "lr_step"


@dataclass
class LRFinished:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    message: str = ""  # why no suggestion could be made, when that is the case
    stopped: bool = False
    seconds: float = 0.0
    kind: str = "lr_finished"
