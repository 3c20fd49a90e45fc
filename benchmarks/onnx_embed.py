"""The quick recipe (the offline default) with its embedding pass through ONNX Runtime or through PyTorch.

    python benchmarks/onnx_embed.py [--data ../shared/data/sign-digits] [--seeds 0 1]

Each arm runs `engine.train.fit` with the quick recipe in its own process, from the JPEGs to the saved model
folder: "PyTorch" with engine/onnx_embed.py switched off, "Snapfit" as it ships (ONNX Runtime where the CPU
has no bf16 and the pass is large enough; on a bf16 CPU both arms are the same PyTorch path). Prints the
machine, each run's accuracy, whole-run seconds and embedding seconds (export included), and the ratios.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine, require_folder, run_arm  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before anything imports torchvision)


def run(path: str, seed: int, onnx: bool) -> dict:
    from engine import data, onnx_embed
    from engine.config import recipe
    from engine.train import fit

    if not onnx:
        onnx_embed.worth_it = lambda *args: False
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        events = list(fit(data.load(path), recipe("quick", seed=seed), out))
    logs = [e.message for e in events if e.kind == "log"]
    embed = sum(float(m) for line in logs for m in re.findall(r"(?:exported to ONNX Runtime|Embedded) in ([\d.]+) s", line))
    return dict(accuracy=events[-1].best_val_acc, seconds=time.perf_counter() - t0, embed_seconds=embed,
                onnx=any("ONNX Runtime" in m for m in logs))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arm", choices=["pytorch", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm per process
    args = p.parse_args()
    if args.arm:
        print(json.dumps(run(args.data, args.seeds[0], args.arm == "snapfit")))
        return
    require_folder(args.data)
    print(machine())
    print(f"{Path(args.data).name}: the quick recipe (Lite0, frozen, 224 px, a head on cached features), whole runs")
    print(f"{'arm':<34}{'seed':>5}{'val accuracy':>14}{'seconds':>9}{'embedding s':>13}")
    rows = {"pytorch": [], "snapfit": []}
    for seed in args.seeds:  # arms alternate, so a slow spell of the machine hits both
        for arm in rows:
            r = run_arm(__file__, "--arm", arm, "--data", args.data, "--seeds", str(seed))
            rows[arm].append(r)
            name = "PyTorch embedding" if arm == "pytorch" else f"Snapfit ({'ONNX Runtime' if r['onnx'] else 'PyTorch'})"
            print(f"{name:<34}{seed:>5}{r['accuracy']:>13.1%}{r['seconds']:>9.1f}{r['embed_seconds']:>13.1f}", flush=True)
    mean = {arm: {k: sum(r[k] for r in rs) / len(rs) for k in ("accuracy", "seconds", "embed_seconds")} for arm, rs in rows.items()}
    a, b = mean["pytorch"], mean["snapfit"]
    print(f"whole run: {a['seconds'] / b['seconds']:.2f}x faster; embedding (export included): "
          f"{a['embed_seconds'] / b['embed_seconds']:.2f}x; accuracy {100 * (b['accuracy'] - a['accuracy']):+.1f} points")


if __name__ == "__main__":
    main()
