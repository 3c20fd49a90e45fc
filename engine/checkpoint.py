"""Resumable training: everything a run holds at the end of an epoch, saved so another call can go on from there.

A ZeroGPU Space lends a GPU for a limited time per call, so a long run is cut into chunks (demo/zerogpu.py).
`fit(..., checkpoint=PATH, time_budget=S)` ends a chunk at an epoch boundary and saves this state; the next
call with the same PATH continues exactly, bit for bit, as if it had never stopped: weights, optimizer and
one-cycle schedule, every random generator (shuffling, augmentation, dropout, mixup's numpy draws) and the
best-epoch tracker. The file holds only tensors and plain values, so it loads with `weights_only=True`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.export import removed_on_failure


@dataclass
class RunState:
    phase: int  # index into train.plan(cfg) of the phase to run next or go on with
    epochs_in_phase: int  # epochs of that phase already done
    epoch: int  # epochs done over the whole run
    step: int
    seconds: float  # training time spent in earlier chunks
    model: dict
    tracker: dict  # train._Tracker's fields
    rng: dict  # generator states
    optimizer: dict | None = None  # the phase's optimizer and scheduler, when it is half done
    scheduler: dict | None = None


def rng_state(session) -> dict:
    state = dict(shuffle=session.generator.get_state(), augment=session.aug_generator.get_state(),
                 torch=torch.get_rng_state(), numpy=_numpy_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(session, state: dict) -> None:
    session.generator.set_state(state["shuffle"])
    session.aug_generator.set_state(state["augment"])
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
    return RunState(**torch.load(path, map_location="cpu", weights_only=True))
