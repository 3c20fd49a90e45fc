"""Training on a ZeroGPU Space: GPU work in `@spaces.GPU` calls, cut into chunks that fit the per-call limit.

A ZeroGPU Space (env `SPACES_ZERO_GPU`) holds no GPU until a function decorated with `spaces.GPU(duration=S)` runs,
and takes it back after S seconds. So a training run becomes a loop of such calls: each one trains until the next
epoch would overrun its budget, saves a checkpoint at that epoch boundary and returns (engine/checkpoint.py); the
next call resumes from it, bit-exactly. Between chunks the best epoch so far is already a model folder on disk.
A Stop ends the chunk running in the GPU worker after its current step (a Stop that lands between two chunks
is seen before the next one starts).

Without the `spaces` package (anywhere but a ZeroGPU Space) the chunks run as plain calls: nothing changes but
the checkpoints. The decorator is applied at import, as ZeroGPU expects.

What `spaces.GPU` really does with a generator function (the `spaces` package, spaces/zero/wrappers.py and
decorator.py, read as vendored in github.com/KingNish24/Realtime-whisper-large-v3-turbo at 690bb93; the package
itself is only installed on Hugging Face's runtime):
- outside a ZeroGPU Space (`Config.zero_gpu` false) the decorator returns the function unchanged;
- on one, each call asks the scheduler for a GPU, then hands the call to a worker process: `Worker` forks one
  (`multiprocessing.get_context('fork')`) and keeps it for later calls while it is idle and alive, so the
  arguments never travel by inheritance: `worker.arg_queue.put(((args, kwargs), gradio_context))` pickles them
  (multiprocessing's ForkingPickler, with torch's reductions: CPU tensors go through shared memory), and an
  unpicklable argument raises a PicklingError in the caller before any GPU time is spent;
- in the worker a thread iterates the generator and puts each yielded value on `res_queue`, pickled too (a value
  that cannot be pickled ends the call with that error); the server side yields them as they arrive, re-raises
  an exception the worker sent back, and raises "GPU task aborted" if the worker dies;
- the worker is a fork on the same machine: it writes the same disk, but shares no memory with the server after
  the fork: an Event set by the Stop button in the server is invisible to the copy the worker unpickled.
So everything `train_chunk` takes and yields must pickle: the Decoded data, the TrainConfig, strings, the events
(plain dataclasses), and the stop token, made shareable here (engine/stopping.py: a flag file that `stop()`
creates), so that Stop ends the chunk in the worker after its current step, not only at the next chunk boundary.
tests/demo/test_zerogpu.py runs the chunks through a stand-in that forks and pickles in the same way.
"""
from __future__ import annotations

import os

import torch

from engine import checkpoint as checkpoint_lib
from engine.events import Stopped
from engine.stopping import StopToken
from engine.train import fit

CHUNK_SECONDS = int(os.environ.get("SNAPFIT_GPU_CHUNK", "110"))  # under ZeroGPU's 120 s default cap for a call
SAVE_MARGIN = 15  # seconds kept free in each call to save the checkpoint and the model folder
_SERVER_PID = os.getpid()  # the process that imported this module: the app's server


def gpu(duration: int):
    """`spaces.GPU(duration=...)` where the package exists, else a decorator that changes nothing."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


@gpu(CHUNK_SECONDS)
def train_chunk(decoded, cfg, out_dir: str, stop, checkpoint: str, budget: float):
    """One GPU call: train from the checkpoint (if any) until the budget is spent, yielding events. On ZeroGPU it
    runs in the GPU worker on pickled copies of its arguments: `stop` must be shareable (train_in_chunks makes it so)."""
    one_cpu_thread_when_forked()
    yield from fit(decoded, cfg, out_dir, stop, checkpoint=checkpoint, time_budget=budget)


def one_cpu_thread_when_forked() -> None:
    """In a process forked from the server (the GPU worker), run PyTorch's CPU operations on one thread.

    PyTorch's CPU thread pool (GNU OpenMP in the pip wheels) does not survive a fork: once the server has run one
    parallel CPU operation (decoding, a prediction), the first parallel one in a forked child waits forever for
    pool threads that the fork did not copy (pytorch/pytorch#41197). Measured here with torch 2.13: a 256 x 256
    matmul, a 2M-element randn or a conv in a child forked after any of them ran in the parent never returns with
    2 threads, and returns at once after torch.set_num_threads(1) in the child (DataLoader workers do the same).
    The GPU does the training; the worker's own CPU work (building the model, reading a checkpoint) is small.
    """
    if os.getpid() != _SERVER_PID and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def train_in_chunks(decoded, cfg, out_dir: str, stop: StopToken | None = None, budget: float = CHUNK_SECONDS - SAVE_MARGIN):
    """Yield the events of one training run made of as many GPU calls as it needs. `stop` becomes shareable: the
    caller's token, stopped from any thread of this process, stops the chunk running in the GPU worker."""
    stop = (stop or StopToken()).shareable()
    checkpoint = checkpoint_lib.beside(out_dir)
    while True:
        last = None
        for last in train_chunk(decoded, cfg, out_dir, stop, str(checkpoint), budget):
            yield last
        if last is None or last.kind != "paused":
            return
        if stop.stopped:  # asked to stop while a chunk ran: the best epoch so far, already saved, is the result
            checkpoint.unlink(missing_ok=True)
            yield Stopped(last.model_dir, last.epochs_done, last.seconds)
            return
