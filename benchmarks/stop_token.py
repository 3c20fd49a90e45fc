"""What a shareable StopToken's look costs against the in-memory one (engine/stopping.py).

    python benchmarks/stop_token.py [--looks 20000]

A StopToken made shareable for ZeroGPU's worker process (demo/zerogpu.py) is read there as a stat() of a flag file
that does not exist until Stop is pressed; the training loop looks once per step. A step takes milliseconds
(resnet10t, 32 px, batch 32: about 30 ms on 2 CPU cores), so a look of a few microseconds is free. Prints both costs
and their ratio, measured in this run.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine  # noqa: E402

from engine.stopping import StopToken  # noqa: E402


def per_look(token, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        token.stopped  # noqa: B018 - the look is what is measured
    return (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--looks", type=int, default=20_000)
    args = p.parse_args()
    print(machine())
    copy = pickle.loads(pickle.dumps(StopToken().shareable()))  # as the worker process holds it
    in_memory, through_file = per_look(StopToken(), args.looks), per_look(copy, args.looks)
    print(f"in memory: {in_memory * 1e6:.2f} us per look; shareable copy (flag file): {through_file * 1e6:.2f} us per look; "
          f"ratio {through_file / in_memory:.0f}x, {through_file / 30e-3:.4%} of a 30 ms step")


if __name__ == "__main__":
    main()
