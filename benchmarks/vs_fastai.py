"""Snapfit's default recipe side by side with fastai, from scratch, on the same photos, model, size and epochs.

    pip install -r benchmarks/requirements.txt
    python benchmarks/vs_fastai.py [--data ../shared/data/sign-digits] [--epochs 5] [--img-size 64]

Each arm runs in its own process, one after the other, with the same number of threads. The clock starts
once the libraries are imported and stops when the trained model has been validated; both arms read the
JPEGs from disk. fastai gets its standard call: `ImageDataLoaders.from_folder` (20 % validation,
Resize), `vision_learner(resnet18, pretrained=False)`, `fit_one_cycle(epochs, 3e-3)`. Snapfit gets
`engine.train.fit` with the TrainConfig defaults for a from-scratch run. Prints one row per arm and seed,
the means, and their ratios: the target is at least fastai's accuracy in at most half its time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import alternate, machine, require_folder  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before fastai imports torchvision)


def run_fastai(path: str, epochs: int, size: int, batch_size: int, seed: int) -> dict:
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, resnet18, set_seed, vision_learner

    set_seed(seed)
    t0 = time.perf_counter()
    dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=seed, item_tfms=Resize(size), bs=batch_size)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 3e-3)
    acc = float(learn.validate()[1])
    return dict(arm="fastai fit_one_cycle", accuracy=acc, seconds=time.perf_counter() - t0)


def run_snapfit(path: str, epochs: int, size: int, batch_size: int, seed: int) -> dict:
    import tempfile

    from engine import data
    from engine.train import TrainConfig, fit

    t0 = time.perf_counter()
    cfg = TrainConfig(model="resnet18", weights="scratch", epochs=epochs, img_size=size, batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        events = list(fit(data.load(path), cfg, out))
    return dict(arm="snapfit fit (defaults)", accuracy=events[-1].best_val_acc, seconds=time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per arm and seed (split and init)")
    p.add_argument("--arm", choices=["fastai", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm in this process
    args = p.parse_args()
    if args.arm:
        runner = run_fastai if args.arm == "fastai" else run_snapfit
        print(json.dumps(runner(args.data, args.epochs, args.img_size, args.batch_size, args.seeds[0])))
        return
    require_folder(args.data)
    print(machine())
    import torch

    print(f"{Path(args.data).name}: resnet18 from scratch, {args.img_size} px, {args.epochs} epochs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'arm':<26}{'seed':>5}{'val accuracy':>14}{'seconds':>10}")
    mean = alternate(__file__, ["fastai", "snapfit"], args.seeds, ["--data", args.data, "--epochs", str(args.epochs),
                     "--img-size", str(args.img_size), "--batch-size", str(args.batch_size)], "accuracy", ">13.1%", 26)
    print(f"time ratio snapfit/fastai: {mean['snapfit']['seconds'] / mean['fastai']['seconds']:.2f} (target <= 0.50); "
          f"accuracy difference: {100 * (mean['snapfit']['accuracy'] - mean['fastai']['accuracy']):+.1f} points (target >= 0)")


if __name__ == "__main__":
    main()
