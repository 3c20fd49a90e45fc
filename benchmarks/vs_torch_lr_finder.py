"""Snapfit's LR range test against torch-lr-finder, on the same model, data and number of iterations.

    pip install -r benchmarks/requirements.txt
    python benchmarks/vs_torch_lr_finder.py [--data ../shared/data/sign-digits] [--model resnet18] [--steps 100]

Both arms get the same decoded images in memory (64 px by default), the same freshly built model (random init,
same seed), batch size, AdamW with the same weight decay, label smoothing, and an exponential sweep from
1e-7 to 10 over the same number of steps with early stopping off, so both run every step. The clock covers
building the model, the test, and restoring the weights. torch-lr-finder (`LRFinder.range_test`, its own
loss smoothing, `plot(suggest_lr=True)`: the steepest descent) runs the plain fp32 loop; Snapfit runs
`engine.lr_finder.find` with the `full` strategy. Prints the times and their ratio (target <= 1.0), each
suggestion and its distance in decades from torch-lr-finder's, and fastai's own `valley` function applied to
Snapfit's curve (it should equal Snapfit's valley: same definition).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine, require_folder, run_arm  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before anything imports torchvision)

START, END = 1e-7, 10.0


def decoded_data(path: str, size: int):
    from engine import data
    from engine.train import decode_once

    return decode_once(data.load(path), size, 0.2, 0)


def run_torch_lr_finder(path: str, model_name: str, steps: int, size: int, batch_size: int) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import timm
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch_lr_finder import LRFinder

    from engine import models
    from engine.data import Normalizer

    decoded = decoded_data(path, size)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=len(decoded.class_names))
    config = models.data_config(model, size)
    x = Normalizer(config["mean"], config["std"])(decoded.train.x)  # the same normalised images Snapfit trains on
    loader = DataLoader(TensorDataset(x, decoded.train.y), batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=START, weight_decay=0.05)
    finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss(label_smoothing=0.1))
    finder.range_test(loader, start_lr=START, end_lr=END, num_iter=steps, step_mode="exp", diverge_th=math.inf)
    finder.reset()
    seconds = time.perf_counter() - t0
    _, suggested = finder.plot(suggest_lr=True, skip_start=10, skip_end=5)
    return dict(seconds=seconds, steps=len(finder.history["lr"]), suggestions=dict(steepest=float(suggested)))


def run_snapfit(path: str, model_name: str, steps: int, size: int, batch_size: int) -> dict:
    from fastai.callback.schedule import valley

    from engine.config import FinderConfig
    from engine.lr_finder import find
    from engine.train import TrainConfig

    decoded = decoded_data(path, size)
    cfg = TrainConfig(model=model_name, weights="scratch", strategy="full", img_size=size, batch_size=batch_size)
    t0 = time.perf_counter()
    result = list(find(decoded, cfg, FinderConfig(START, END, steps, stop_div=False)))[-1]
    seconds = time.perf_counter() - t0
    lo = steps // 10  # fastai's trimming: a tenth of the planned steps, and the last five points
    fastai_valley, _ = valley(result.lrs[lo:-5], result.smoothed[lo:-5], steps)
    return dict(seconds=seconds, steps=len(result.lrs), suggestions=result.suggestions, fastai_valley=fastai_valley)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--model", default="resnet18")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--arm", choices=["torch-lr-finder", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm per process
    args = p.parse_args()
    if args.arm:
        import json

        runner = run_torch_lr_finder if args.arm == "torch-lr-finder" else run_snapfit
        print(json.dumps(runner(args.data, args.model, args.steps, args.img_size, args.batch_size)))
        return
    require_folder(args.data)
    import torch

    print(machine())
    print(f"{Path(args.data).name}: {args.model} from scratch, {args.img_size} px, batch {args.batch_size}, "
          f"{args.steps} steps from {START:g} to {END:g}, {torch.get_num_threads()} threads")
    common = ["--data", args.data, "--model", args.model, "--steps", str(args.steps), "--img-size", str(args.img_size),
              "--batch-size", str(args.batch_size)]
    theirs = run_arm(__file__, "--arm", "torch-lr-finder", *common)
    ours = run_arm(__file__, "--arm", "snapfit", *common)
    print(f"{'arm':<18}{'steps':>6}{'seconds':>9}   suggestions")
    for name, r in (("torch-lr-finder", theirs), ("Snapfit", ours)):
        text = ", ".join(f"{k} {v:.2e}" for k, v in r["suggestions"].items())
        print(f"{name:<18}{r['steps']:>6}{r['seconds']:>9.1f}   {text}")
    print(f"wall-time ratio Snapfit / torch-lr-finder: {ours['seconds'] / theirs['seconds']:.2f} (target <= 1.0)")
    reference = theirs["suggestions"]["steepest"]
    for name, value in ours["suggestions"].items():
        print(f"  Snapfit {name:<8} is {math.log10(value / reference):+.2f} decades from torch-lr-finder's suggestion")
    same = math.isclose(ours["fastai_valley"], ours["suggestions"].get("valley", math.nan))
    print(f"fastai valley() on Snapfit's curve: {ours['fastai_valley']:.2e} ({'equal to' if same else 'differs from'} Snapfit's valley)")


if __name__ == "__main__":
    main()
