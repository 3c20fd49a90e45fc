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
