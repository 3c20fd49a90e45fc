"""Which recipe gives the best accuracy for the time: the table behind engine.train.RECIPES.

    python benchmarks/pretrained_recipes.py [--data ../shared/data/sign-digits] [--per-class 20 all] [--arms quick best ...]

Each arm is a whole run as a person starts it (decoding the photos from disk, embedding, training, validating), in
a fresh process, on the same split: 20 % of each class held out, and with `--per-class N` only the first N/0.8
photos of each class used (N for training). Arms: the recipes by name, and variants that were tried against them
(another size, another backbone, no pretrained weights). Prints the CPU, whether bf16 was on, accuracy and seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine, require_folder, run_arm  # noqa: E402

ARMS = {  # name -> (recipe, overrides)
    "quick": ("quick", {}),
    "best": ("best", {}),
    "quick at 160 px": ("quick", dict(img_size=160)),
    "quick, lite1 at 240 px": ("quick", dict(model="tf_efficientnet_lite1.in1k", img_size=240)),
    "best at 160 px": ("best", dict(img_size=160)),
    "best at 128 px": ("best", dict(img_size=128)),
    "best, progressive resizing 112 -> 224 px": ("best", dict(progressive_resize=True)),
    "best, BatchNorm statistics train": ("best", dict(freeze_bn=False)),
    "finetune as fastai (1 head epoch at 2e-3)": ("best", dict(freeze_epochs=1, head_lr=2e-3, lr=2e-3, lr_mult=100.0,
                                                              freeze_bn=False)),
    "scratch (resnet10t, 48 px)": ("scratch", {}),
    "lite0 from scratch, 224 px, 12 epochs": ("scratch", dict(model="tf_efficientnet_lite0", img_size=224, batch_size=32)),
}


def subset(path: str, per_class: int | None):
    from engine import data
    from engine.labelled import LabelledImages

    full = data.load(path)
    if per_class is None:
        return full
    keep_per_class = per_class + per_class // 4  # N for training, N/4 for validation
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(full.labels):
        by_class.setdefault(y, []).append(i)
    keep = [i for y in sorted(by_class) for i in by_class[y][:keep_per_class]]
    return LabelledImages(full.class_names, [full.images[i] for i in keep], [full.labels[i] for i in keep], full.source)


def run_one(path: str, per_class: int | None, arm: str) -> dict:
    from engine.train import RECIPES, TrainConfig, fit

    recipe, overrides = ARMS[arm]
    t0 = time.perf_counter()
    cfg = TrainConfig(**RECIPES[recipe] | overrides)
    with tempfile.TemporaryDirectory() as out:
        events = list(fit(subset(path, per_class), cfg, out))
    return dict(accuracy=events[-1].best_val_acc, seconds=time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--per-class", nargs="+", default=["20", "all"], help="training photos per class, or all")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run this arm in this process
    args = p.parse_args()
    if args.one:
        from engine import hub

        hub.detect_offline()
        per = None if args.per_class[0] == "all" else int(args.per_class[0])
        print(json.dumps(run_one(args.data, per, args.one)))
        return
    require_folder(args.data)
    import torch

    import engine  # noqa: F401
    from engine.train import TrainConfig, use_bf16

    print(machine(use_bf16(TrainConfig(), torch.device("cpu"))))
    print(f"{'photos per class':<18}{'arm':<44}{'val accuracy':>13}{'seconds':>9}")
    for per in args.per_class:
        for arm in args.arms:
            r = run_arm(__file__, "--data", args.data, "--per-class", per, "--one", arm)
            print(f"{per:<18}{arm:<44}{r['accuracy']:>12.1%}{r['seconds']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
