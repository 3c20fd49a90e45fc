"""Training on a ZeroGPU Space: GPU work in `@spaces.GPU` calls, cut into chunks that fit the per-call limit.

A ZeroGPU Space (env `SPACES_ZERO_GPU`) holds no GPU until a function decorated with `spaces.GPU(duration=S)` runs,
and takes it back after S seconds. So a training run becomes a loop of such calls: each one trains until the next
epoch would overrun its budget, saves a checkpoint at that epoch boundary and returns (engine/checkpoint.py); the
next call resumes from it, bit-exactly. Between chunks the best epoch so far is already a model folder on disk.
A Stop takes effect at the next chunk boundary at the latest.

Without the `spaces` package (anywhere but a ZeroGPU Space) the chunks run as plain calls: nothing changes but
the checkpoints. The decorator is applied at import, as ZeroGPU expects.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.events import Stopped
from engine.train import fit

CHUNK_SECONDS = int(os.environ.get("SNAPFIT_GPU_CHUNK", "110"))  # under ZeroGPU's 120 s default cap for a call
SAVE_MARGIN = 15  # seconds kept free in each call to save the checkpoint and the model folder


def gpu(duration: int):
    """`spaces.GPU(duration=...)` where the package exists, else a decorator that changes nothing."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


@gpu(CHUNK_SECONDS)
def train_chunk(prepared, cfg, out_dir: str, stop, checkpoint: str, budget: float):
    """One GPU call: train from the checkpoint (if any) until the budget is spent, yielding events."""
    yield from fit(prepared, cfg, out_dir, stop, checkpoint=checkpoint, time_budget=budget)


def train_in_chunks(prepared, cfg, out_dir: str, stop, budget: float = CHUNK_SECONDS - SAVE_MARGIN):
    """Yield the events of one training run made of as many GPU calls as it needs."""
    checkpoint = Path(f"{out_dir}.resume.pt")
    while True:
        last = None
        for last in train_chunk(prepared, cfg, out_dir, stop, str(checkpoint), budget):
            yield last
        if last is None or last.kind != "paused":
            return
        if stop.stopped:  # asked to stop while a chunk ran: the best epoch so far, already saved, is the result
            checkpoint.unlink(missing_ok=True)
            yield Stopped(last.model_dir, last.epochs_done, last.seconds)
            return
