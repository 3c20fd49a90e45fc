"""Classifying on one thread (demo/compute.py) against classifying on whichever worker thread is free.

    python benchmarks/compute_thread.py [--model resnet18] [--img-size 224] [--calls 50] [--threads 2]

Gradio runs each request on one of its worker threads. With PyTorch's OpenMP build every thread that calls
into torch gets an OpenMP team of its own, and with more such threads than cores OpenMP stops spin-waiting
between parallel regions. The baseline sends the same forward pass to `--threads` worker threads in turn (as
consecutive requests land on different Gradio workers); the other path sends every call to one
ComputeThread. Same model, same input, same process, nothing else running on the main thread's team.
Prints p50/p95 and the ratio.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.predict_latency import percentiles, timed  # noqa: E402
from demo.compute import ComputeThread  # noqa: E402
from engine import models  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--threads", type=int, default=2, help="worker threads the baseline's calls rotate over")
    args = p.parse_args()

    one = ComputeThread(idle_seconds=600)
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


if __name__ == "__main__":
    main()
