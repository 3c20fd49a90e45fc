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
