"""Peak memory (RSS) of a default training run on the built-in dataset.

    python benchmarks/peak_memory.py

Runs, each in a fresh process: (1) only the imports (torch, timm, the engine): the floor any run pays;
(2) the app's default offline recipe (engine.config's scratch recipe, TrainConfig's defaults) on builtin:shapes; (3) the command line's
defaults (`python -m engine train --data builtin:shapes`). Prints each peak RSS, the ratio to the import
floor, and the share of a free Hugging Face Space's 16 GB.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine  # noqa: E402

SPACE_MB = 16 * 1024

IMPORTS = "import engine, torch, timm, engine.train"
APP_DEFAULT = """
import tempfile, engine
from engine import data
from engine.train import TrainConfig, fit
with tempfile.TemporaryDirectory() as out:
    for _ in fit(data.load("builtin:shapes"), TrainConfig(), out):
        pass
"""


def peak_mb(args: list[str]) -> float:
    """Peak RSS of one child process (ru_maxrss of RUSAGE_CHILDREN is the largest child so far, in KiB on Linux)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return float(out.stdout.strip())


def main() -> None:
    print(machine())
    with tempfile.TemporaryDirectory() as out:
        rows = [
            ("imports only (floor)", peak_mb([sys.executable, "-c", IMPORTS])),
            ("app default recipe (resnet10t, 48 px)", peak_mb([sys.executable, "-c", APP_DEFAULT])),
            ("CLI defaults (resnet18, 64 px)", peak_mb([sys.executable, "-m", "engine", "train", "--data", "builtin:shapes",
                                                        "--out", str(Path(out) / "m")])),
        ]
    floor = rows[0][1]
    print(f"{'run on builtin:shapes (900 images)':<40}{'peak RSS MB':>12}{'x floor':>9}{'of 16 GB':>10}")
    for name, mb in rows:
        print(f"{name:<40}{mb:>12.0f}{mb / floor:>9.2f}{mb / SPACE_MB:>10.1%}")


if __name__ == "__main__":
    main()
