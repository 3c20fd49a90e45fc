"""Classifying on one thread (demo/compute.py) against classifying on whichever worker thread is free.

    python benchmarks/compute_thread.py [--model resnet18] [--img-size 224] [--calls 50] [--threads 2]

Gradio runs each request on one of its worker threads. With PyTorch's OpenMP build every thread that calls
into torch gets an OpenMP team of its own, and with more such threads than cores OpenMP stops spin-waiting
between parallel regions. The baseline sends the same forward pass to `--threads` worker threads in turn (as
consecutive requests land on different Gradio workers); the other path sends every call to one
ComputeThread. Same model, same input, same process, nothing else running on the main thread's team.
Prints p50/p95 and the ratio. Then times a training run (the app's default recipe on the built-in data) on a
thread of its own, as a training job runs, while the compute thread, idle, still lives, and once it has ended.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from arms import machine  # noqa: E402

from benchmarks.predict_latency import percentiles, timed  # noqa: E402
from demo.compute import ComputeThread  # noqa: E402
from engine import data, models  # noqa: E402
from engine.train import TrainConfig, decode_once, fit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--threads", type=int, default=2, help="worker threads the baseline's calls rotate over")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the training timed beside the compute thread")
    args = p.parse_args()
    print(machine())

    one = ComputeThread(idle_seconds=1)
    # built on the compute thread, so the main thread never starts an OpenMP team of its own
    model, x = one.run(lambda: (models.create(args.model, 6)[0].eval(), torch.randn(1, 3, args.img_size, args.img_size)))

    def forward():
        with torch.no_grad():
            model(x)

    single = timed(lambda: one.run(forward), args.calls)
    workers = [ThreadPoolExecutor(1) for _ in range(args.threads)]  # one thread each: the rotation is exact
    turn = itertools.cycle(workers)
    rotating = timed(lambda: next(turn).submit(forward).result(), args.calls)

    print(f"{args.model} at {args.img_size} px, {args.calls} calls each, {torch.get_num_threads()} torch threads")
    print(f"{'path':<46}{'p50 ms':>9}{'p95 ms':>9}")
    for name, ms in [(f"calls rotating over {args.threads} worker threads", rotating), ("every call on one ComputeThread", single)]:
        print(f"{name:<46}{percentiles(ms)[0]:>9.1f}{percentiles(ms)[1]:>9.1f}")
    print(f"one compute thread is {percentiles(rotating)[0] / percentiles(single)[0]:.2f}x faster at p50")

    for worker in workers:
        worker.shutdown(wait=True)  # their threads end, and their OpenMP teams with them

    # A training job beside it: the app's default recipe on the built-in data, while the compute thread lives
    # (an idle team, right after a call), and once it has ended (as demo/compute.py's does when idle).
    decoded = in_a_thread(lambda: decode_once(data.load("builtin:shapes"), TrainConfig().img_size))
    cfg = TrainConfig(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        train = lambda: in_a_thread(lambda: timed_fit(decoded, cfg, tmp))  # noqa: E731
        wait_until_ended(one)
        held = ComputeThread(idle_seconds=60)  # lives through the first two runs
        held.run(forward)
        alive = min(train() for _ in range(2))
        wait_until_ended(held)
        ended = min(train() for _ in range(2))
    print(f"training, default recipe, {args.epochs} epochs, in a job thread (best of 2): {alive:.2f} s while an idle "
          f"compute thread lives, {ended:.2f} s once it has ended: {alive / ended:.2f}x")


def wait_until_ended(compute: ComputeThread) -> None:
    while compute.alive:
        time.sleep(0.1)


def timed_fit(decoded, cfg, out: str) -> float:
    t = time.perf_counter()
    for _ in fit(decoded, cfg, out):
        pass
    return time.perf_counter() - t


def in_a_thread(fn):
    """fn() on a thread of its own, as a training job runs (demo/jobs.py); the thread, and its team, end after."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]

if __name__ == "__main__":
    main()
