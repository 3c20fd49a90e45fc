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
  stop_on_score, highest_score
                     a multi-label run stops early by its score (mAP) instead: the highest so far, and bad_epochs
                     counts the epochs since it last rose
  model              the model's state dict at the end of the last epoch
  optimizer          the phase's optimiser state dict, when the phase is half done (else None)
  rng                every random generator: shuffling, augmentation, torch's (dropout, drop path), numpy's
                     (timm's Mixup), CUDA's when present
  config             the run's TrainConfig as a dict: `python -m engine train --resume DIR` runs it again
  data               what the run trains on (`data_identity`): class names, split sizes, a digest of every decoded
                     image and its label, and the load() arguments that give the dataset again; a resume on other
                     data is refused

Besides the ZeroGPU chunks, every run of the command line and the app keeps such a checkpoint beside its model folder
(`beside`), saved at an epoch end at most once every `EVERY` seconds: a run that was stopped, or that failed, goes on
from there, and a finished one deletes it.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.errors import UserError
from engine.export import removed_on_failure

FORMAT = 1
EVERY = 60.0  # seconds of training between two saves: a resnet18's run state is ~180 MB to write


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
    stop_on_score: bool = False  # early stopping follows val_acc (a multi-label run's mAP), not val_loss
    highest_score: float = -math.inf
    model: dict | None = None  # filled only when saved
    optimizer: dict | None = None
    rng: dict | None = None
    config: dict | None = None
    data: dict | None = None
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
        if self.stop_on_score and epoch_end.val_acc > self.highest_score + 1e-4:
            self.highest_score, self.bad_epochs = epoch_end.val_acc, 0
        elif not self.stop_on_score and epoch_end.val_loss < self.lowest_val_loss - 1e-4:
            self.lowest_val_loss, self.bad_epochs = epoch_end.val_loss, 0
        else:
            self.bad_epochs += 1

    def next_phase(self) -> None:
        self.phase, self.epochs_in_phase, self.phase_step, self.optimizer = self.phase + 1, 0, 0, None

    def stops_early(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience


def beside(out_dir: str | Path) -> Path:
    """Where a run writing the model folder `out_dir` keeps its checkpoint: next to it, not in it (a model folder
    is zipped and pushed as it is)."""
    return Path(f"{Path(out_dir)}.resume.pt")


def data_identity(decoded) -> dict:
    """What a run trains on, in a few bytes: enough to tell another dataset, split or image size apart. Stricter than
    the data version of engine.data.fingerprint (the same at any size and order), because going on bit for bit needs
    the very same training and validation images in the very same order."""
    digest = hashlib.sha256(repr(decoded.class_names).encode())
    for part in (decoded.train, decoded.val):
        digest.update(b"".join(part.digests))
        digest.update(part.y.numpy().tobytes())
    return dict(classes=list(decoded.class_names), train=len(decoded.train), val=len(decoded.val),
                img_size=decoded.img_size, digest=digest.hexdigest()[:16], load=decoded.data_info.get("load") or {})


def check_resumable(state: RunState, config: dict, data: dict, path: str | Path) -> None:
    """Refuse to go on with a checkpoint of another run: another model or recipe, or other data."""
    name = Path(path).name
    if state.config is not None:
        differ = [k for k in sorted(set(state.config) | set(config)) if state.config.get(k) != config.get(k)]
        if differ:
            shown = ", ".join(f"{k} {state.config.get(k)!r} there, {config.get(k)!r} here" for k in differ[:4])
            raise UserError(f"{name} is the checkpoint of another run ({shown}): resume with that run's settings, or "
                            "delete it to start afresh.")
    if state.data is not None:
        was, now = state.data, data
        if (was["classes"], was["train"], was["val"], was["img_size"]) != (now["classes"], now["train"], now["val"], now["img_size"]):
            raise UserError(f"{name} was saved by a run on other data ({len(was['classes'])} classes, {was['train']} "
                            f"training and {was['val']} validation images at {was['img_size']} px; here "
                            f"{len(now['classes'])}, {now['train']} and {now['val']} at {now['img_size']} px).")
        if was["digest"] != now["digest"]:
            raise UserError(f"{name} was saved by a run on other images (the same classes and counts, but other "
                            "pictures or labels): resume on the dataset it trained on, or delete it to start afresh.")


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
