"""A training run's state, all in one record: what the loop reads and updates, what a checkpoint saves, and what
resume restores.

A ZeroGPU Space lends a GPU for a limited time per call, so a long run is cut into chunks (demo/zerogpu.py).
`fit(..., checkpoint=PATH, time_budget=S)` ends a chunk at an epoch boundary and saves this state; the next call
with the same PATH goes on exactly, bit for bit, as if it had never stopped.

The checkpoint file (format 1) is `torch.save` of a dict with RunState's fields as named below, holding only
tensors and plain values, so it loads with `weights_only=True`:

  format             1
  phase              index into train.plan(cfg) of the phase to run next or go on with
  epochs_in_phase    that phase's epochs already done
  phase_step         that phase's optimiser steps already done: the learning rate is a pure function of it
                     (train.one_cycle), so no scheduler state is saved
  epoch, step        epochs and optimiser steps over the whole run
  seconds            training time spent so far
  history            one dict per epoch (events.EpochEnd's fields)
  best_epoch, best_val_acc, best_val_loss, best_weights, best_logits
                     the best epoch so far (highest validation accuracy, then lowest loss): its number, scores,
                     model state dict and validation logits (the model folder is written from these)
  lowest_val_loss, bad_epochs
                     early stopping: the lowest validation loss and the epochs since it last improved
  model              the model's state dict at the end of the last epoch
  optimizer          the phase's optimiser state dict, when the phase is half done (else None)
  rng                every random generator: shuffling, augmentation, torch's (dropout, drop path), numpy's
                     (timm's Mixup), CUDA's when present
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import UserError
from engine.export import removed_on_failure

FORMAT = 1


@dataclass
class RunState:
    phase: int = 0
    epochs_in_phase: int = 0
    phase_step: int = 0
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -math.inf
    best_val_loss: float = math.inf
    best_weights: dict | None = None
    best_logits: torch.Tensor | None = None
    lowest_val_loss: float = math.inf
    bad_epochs: int = 0
    model: dict | None = None  # filled only when saved
    optimizer: dict | None = None
    rng: dict | None = None
    format: int = FORMAT

    def record_epoch(self, epoch_end, model: torch.nn.Module, val_logits: torch.Tensor | None) -> None:
        """An epoch ended: keep it in the history, keep its weights if it is the best so far, count it for early
        stopping."""
        self.epoch, self.epochs_in_phase = epoch_end.epoch, self.epochs_in_phase + 1
        self.history.append(asdict(epoch_end))
        if (epoch_end.val_acc, -epoch_end.val_loss) > (self.best_val_acc, -self.best_val_loss) or self.best_weights is None:
            self.best_epoch, self.best_val_acc, self.best_val_loss = epoch_end.epoch, epoch_end.val_acc, epoch_end.val_loss
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best_logits = val_logits
        if epoch_end.val_loss < self.lowest_val_loss - 1e-4:
            self.lowest_val_loss, self.bad_epochs = epoch_end.val_loss, 0
        else:
            self.bad_epochs += 1

    def next_phase(self) -> None:
        self.phase, self.epochs_in_phase, self.phase_step, self.optimizer = self.phase + 1, 0, 0, None

    def stops_early(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience


def rng_state(learner) -> dict:
    state = dict(shuffle=learner.generator.get_state(), augment=learner.aug_generator.get_state(),
                 torch=torch.get_rng_state(), numpy=_numpy_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(learner, state: dict) -> None:
    learner.generator.set_state(state["shuffle"])
    learner.aug_generator.set_state(state["augment"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    _set_numpy_state(state["numpy"])


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos), has_gauss=int(has_gauss),
                cached=float(cached))


def _set_numpy_state(s: dict) -> None:
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def save(state: RunState, path: str | Path) -> Path:
    """Write atomically (a crash mid-write leaves the previous checkpoint intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with removed_on_failure(tmp):
        torch.save(asdict(state), tmp)
    return tmp.replace(path)


def load(path: str | Path) -> RunState:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("format") != FORMAT:
        raise UserError(f"{Path(path).name} is a checkpoint of another Snapfit version (format {saved.get('format')}, "
                        f"this one reads {FORMAT}): delete it to start the run afresh.")
    return RunState(**saved)
