"""What the side-by-side benchmarks share: each arm runs in a fresh process, so no arm warms the other's caches."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def require_folder(path: str) -> None:
    if not Path(path).is_dir():
        sys.exit(f"no such folder: {path} (pass --data PATH to a folder of class subfolders)")


def run_arm(script: str, *args: str) -> dict:
    """Run `python script *args` and return the JSON object on its last line of output (exit on failure)."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(script: str, arms: list[str], seeds: list[int], args: list[str], score: str, score_format: str,
              width: int, before_seed=None) -> dict[str, dict[str, float]]:
    """Run each arm of `script` (`--arm NAME *args --seeds SEED`) once per seed, arms alternating so that a slow
    spell of the machine hits both; print a row per run (arm, seed, `score`, seconds) and the means, and return
    {arm: {score: mean, "seconds": mean}}. `before_seed(seed)` may print a row of its own first."""
    results = {arm: [] for arm in arms}
    for seed in seeds:
        if before_seed is not None:
            before_seed(seed)
        for arm in arms:
            r = run_arm(script, "--arm", arm, *args, "--seeds", str(seed))
            results[arm].append(r)
            print(f"{r['arm']:<{width}}{seed:>5}{r[score]:{score_format}}{r['seconds']:>10.1f}", flush=True)
    mean = {arm: {k: sum(r[k] for r in rs) / len(rs) for k in (score, "seconds")} for arm, rs in results.items()}
    for arm, m in mean.items():
        print(f"{arm + ' (mean)':<{width}}{'':>5}{m[score]:{score_format}}{m['seconds']:>10.1f}")
    return mean


def timed(fn, calls: int, warmup: int = 3) -> list[float]:
    """Milliseconds of each of `calls` calls of `fn()`, after `warmup` calls that are not timed."""
    import time

    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls, after `warmup` calls that are not timed."""
    import statistics

    return statistics.median(timed(fn, repeats, warmup)) / 1000


def machine(bf16: bool | None = None) -> str:
    """The CPU, its vector extensions and whether bf16 was on (None: what the engine picks on this CPU, where it
    chooses): speed figures mean little without them."""
    import platform

    import torch

    if bf16 is None:
        from engine.train import TrainConfig, use_bf16

        bf16 = use_bf16(TrainConfig(), torch.device("cpu"))

    name = platform.processor() or "unknown CPU"
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"CPU: {name}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} threads, bf16 {'on' if bf16 else 'off (not supported here)'}")
