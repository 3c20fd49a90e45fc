"""Two processes under torchrun against one process with the same global batch: same accuracy?

    python benchmarks/ddp_parity.py [--processes 2] [--batch-size 64] [--seeds 0 1 2] [--epochs 12] [--img-size 48]

Both arms run the command line on the built-in shapes with the app's offline recipe (resnet10t from scratch,
one-cycle at lr 1e-2): one process with --batch-size B, and N processes (gloo, CPU) with --batch-size B/N each,
so every optimizer step sees B images in both. Prints the best validation accuracy of each seed, the means and
their difference with its standard error (target: within noise, about 2 standard errors), whether every process ended
with the same weights, and the wall time of each arm (on a machine with fewer cores than processes x threads
the processes compete for cores, so the time says nothing about scaling there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine  # noqa: E402

from tests.live_app import free_port  # noqa: E402


def run(processes: int, batch_size: int, seed: int, args, out: Path) -> tuple[dict, float]:
    train = ["-m", "engine", "train", "--model", "resnet10t", "--epochs", str(args.epochs), "--img-size", str(args.img_size),
             "--lr", "1e-2", "--batch-size", str(batch_size), "--seed", str(seed), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if processes == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), *train]
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="global batch of both arms")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--img-size", type=int, default=48)
    args = p.parse_args()
    print(machine())
    n = args.processes
    single, multi, times, same = [], [], [0.0, 0.0], True
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            m1, t1 = run(1, args.batch_size, seed, args, Path(tmp) / f"one-{seed}")
            mn, tn = run(n, args.batch_size // n, seed, args, Path(tmp) / f"many-{seed}")
            for key in ("last_sha256", "saved_sha256"):
                same &= len(set(mn["distributed"][key])) == 1 and len(mn["distributed"][key]) == n
            single.append(m1["val_accuracy"])
            multi.append(mn["val_accuracy"])
            times[0] += t1
            times[1] += tn
            print(f"seed {seed}: 1 process x batch {args.batch_size}: {m1['val_accuracy']:.4f} ({t1:.1f} s)   "
                  f"{n} processes x batch {args.batch_size // n}: {mn['val_accuracy']:.4f} ({tn:.1f} s)", flush=True)
    std = lambda xs: statistics.stdev(xs) if len(xs) > 1 else float("nan")  # noqa: E731
    standard_error = (std(single) ** 2 / len(single) + std(multi) ** 2 / len(multi)) ** 0.5
    print(f"mean accuracy: 1 process {statistics.mean(single):.4f} (std over seeds {std(single):.4f}), {n} processes "
          f"{statistics.mean(multi):.4f} (std {std(multi):.4f}); difference {statistics.mean(multi) - statistics.mean(single):+.4f}, "
          f"standard error of the difference {standard_error:.4f}")
    print(f"identical weights on every process: {same}")
    print(f"wall time: 1 process {times[0]:.1f} s, {n} processes {times[1]:.1f} s (ratio {times[1] / times[0]:.2f}) "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
