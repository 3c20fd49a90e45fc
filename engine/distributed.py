"""One training run over several processes: PyTorch DistributedDataParallel under torchrun.

torchrun starts N copies of `python -m engine train ...` and tells each who it is through environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `init()` joins them into one process group: NCCL
between GPUs, gloo on CPUs. The rest of the engine asks this module the few things that differ between one
process and many; in a single process every helper is a no-op, so that path runs exactly as it always did.

How the work is split:
  training    every epoch all processes draw the same shuffled order (same generator, same seed), pad it by
              repeating its start to a multiple of N and take every N-th item from their rank on, as torch's
              DistributedSampler does: each process gets the same number of batches, so the collectives of
              every step line up and none waits for a process that has run out of data.
  validation and embedding (the head strategy's feature cache)   item i goes to process i % N, without
              padding; the results are gathered and put back in order, so every process ends with the same
              full tensor and metrics count every validation image exactly once.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import warnings
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from engine.errors import UserError

# A collective that waits longer than this ends the run with an error instead of hanging forever (a process
# that died on another machine, say). All processes decode the same images before the first collective, so
# they reach it within seconds of each other; SNAPFIT_DIST_TIMEOUT (seconds) raises it for huge datasets.
TIMEOUT_S = float(os.environ.get("SNAPFIT_DIST_TIMEOUT", "600"))


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group torchrun describes (no-op in a single process or when already joined)."""
    if not launched() or dist.is_initialized():
        return
    dev, backend_ = device_of_this_process(), _backend()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # before NCCL starts, so each process's communicator lives on its own GPU
    dist.init_process_group(backend_, timeout=timedelta(seconds=TIMEOUT_S), device_id=dev if backend_ == "nccl" else None)


def _backend() -> str:
    if not torch.cuda.is_available():
        return "gloo"
    # NCCL refuses two processes on one GPU ("duplicate GPU"): with more processes per machine than GPUs
    # (a smoke test on one GPU), gloo moves the gradients instead, slower but it works.
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return "nccl" if per_machine <= torch.cuda.device_count() else "gloo"


def lost_peer_message(exc: BaseException) -> str | None:
    """One line for a collective that failed because another process stopped answering or died (None for any
    other error): gloo and NCCL say so in a RuntimeError that names their own source file."""
    text = " ".join(str(exc).split())
    if not (isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and _PEER_LOST.search(text))):
        return None
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)[:200]  # gloo's "[/path/to/unbound_buffer.cc:78] " prefix
    return (f"lost contact with another training process ({text}). If one failed, its own output above says why; "
            f"if one is only slow (decoding a large dataset, say), raise SNAPFIT_DIST_TIMEOUT (now {TIMEOUT_S:.0f} s).")


_PEER_LOST = re.compile(r"gloo|nccl|timed out|connection (closed|reset)|broken pipe", re.IGNORECASE)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The process that writes the model folder and reports progress (rank 0)."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def backend() -> str | None:
    return dist.get_backend() if active() else None


def device_of_this_process() -> torch.device:
    """cuda:LOCAL_RANK under torchrun on a GPU machine (shared round-robin when there are fewer GPUs than
    processes), the GPU or the CPU otherwise."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if not launched():
        return torch.device("cuda")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def check_sizes(num_train: int, num_val: int) -> None:
    """Every process needs at least one training and one validation image of its own."""
    n = world_size()
    if n > 1 and min(num_train, num_val) < n:
        raise UserError(f"{num_train} training and {num_val} validation images are too few for {n} processes (each needs at "
                        "least one of each): use fewer processes or more images.")


# ---------------------------------------------------------------------------------------------- sharding


def shard_len(n: int, processes: int | None = None) -> int:
    """Items per process in a training epoch of n items."""
    return math.ceil(n / (processes or world_size()))


def shard_order(order: torch.Tensor, rank_: int | None = None, processes: int | None = None) -> torch.Tensor:
    """A process's part of an epoch's shuffled order (this process's, unless given; all of it when alone), as
    DistributedSampler: padded by repeating from the start to a multiple of the process count, then every
    N-th item from the rank on."""
    n = processes or world_size()
    if n == 1:
        return order
    total = shard_len(len(order), n) * n
    padded = order.repeat(math.ceil(total / len(order)))[:total]
    return padded[(rank() if rank_ is None else rank_) :: n]


def run_sharded(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn over this process's rows of x (every N-th from its rank), gathered from all processes and put back
    in x's order: every process gets the tensor that fn(x) gives in a single process."""
    if not active():
        return fn(x)
    n = world_size()
    parts = all_gather_rows(fn(x[rank() :: n]))
    out = parts[0].new_empty((len(x), *parts[0].shape[1:]))
    for r, part in enumerate(parts):
        out[r::n] = part
    return out


def all_gather_rows(t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's tensor, in rank order; they may differ in their first dimension (padded for the
    collective, which needs equal shapes, and trimmed again)."""
    sizes = [torch.zeros(1, dtype=torch.int64, device=t.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(t)], dtype=torch.int64, device=t.device))
    longest = max(int(s) for s in sizes)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [p[: int(s)] for p, s in zip(parts, sizes)]


# ---------------------------------------------------------------------------------------------- training


def wrap(model: nn.Module) -> nn.Module:
    """DistributedDataParallel around the model's currently trainable parameters (the model itself when alone).

    Gradients are averaged over processes during backward, so each optimizer step sees the gradient of the
    global batch. BatchNorm stays plain: each process normalises with its own batch statistics, and DDP
    copies rank 0's running statistics (buffers) to the others at every forward; `sync_buffers` does it once
    more after an epoch's last step. SyncBatchNorm would cost a collective per BatchNorm layer and step.
    """
    if not active():
        return model
    # channels_last parameters whose gradient comes back in the default layout (1x1 kernels, where both layouts
    # are the same memory; small_conv.py's matmul path) make DDP warn that gradient and bucket strides differ.
    # It copies them correctly all the same; the warning would only be noise in every process's output.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    dev = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def no_sync(net: nn.Module):
    """Skip the gradient all-reduce of a backward whose gradients are accumulated further before a step."""
    return net.no_sync() if isinstance(net, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


def average_gradients(params) -> None:
    """What DDP does, for a module trained outside it (the head on cached features): one all-reduce of the
    flattened gradients, divided by the process count."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@torch.no_grad()
def broadcast_state(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every process."""
    for t in [*model.parameters(), *model.buffers()]:
        _broadcast(t)


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Rank 0's BatchNorm running statistics on every process, so all evaluate (and end with) the same model."""
    for t in model.buffers():
        _broadcast(t)


def _broadcast(t: torch.Tensor) -> None:
    if active():
        dist.broadcast(t.data, 0)


def mean(value: float) -> float:
    """The mean of a number over all processes."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device_of_this_process())
    dist.all_reduce(t)
    return t.item() / world_size()


def from_main(values: list[float]) -> list[float]:
    """Rank 0's numbers on every process, so that decisions taken from them (best epoch, early stopping)
    are the same everywhere even where floating point could differ in the last bit."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device_of_this_process())
    dist.broadcast(t, 0)
    return t.tolist()


def any_true(flag: bool) -> bool:
    t = torch.tensor([int(flag)], device=device_of_this_process())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class SharedStop:
    """A stop token all processes agree on: once any of them is asked to stop, all stop at the same point.
    Each look at `stopped` is a collective, so every process must look equally often (they run the same code)."""

    def __init__(self, token) -> None:
        self.token, self._agreed = token, False

    def stop(self) -> None:
        self.token.stop()

    @property
    def stopped(self) -> bool:
        if not self._agreed:
            self._agreed = any_true(self.token.stopped)
        return self._agreed


def shared(token):
    """`token` itself in a single process, a SharedStop around it under torchrun."""
    return SharedStop(token) if active() else token


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names and values (layout-independent), to show processes hold the same model."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gather_strings(value: str) -> list[str]:
    """Every process's string, in rank order."""
    if not active():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def local_main_first():
    """The first process of each machine runs the block before the others do (e.g. unpacking a zip they share)."""
    if active() and local_rank() != 0:
        dist.barrier()
    yield
    if active() and local_rank() == 0:
        dist.barrier()
