"""Snapfit's offline default against fastai's `fine_tune`, both on the same built-in ImageNet EfficientNet-Lite0.

    pip install -r benchmarks/requirements.txt
    python benchmarks/vs_fastai_pretrained.py [--data ../shared/data/sign-digits] [--per-class 20 all] [--img-size 224]

Both arms get the same photos in the same train/valid folders (20 % of each class held out; with `--per-class N`
only N training photos per class), the same image size, the same threads, and the same pretrained weights:
engine/embedded.py's tf_efficientnet_lite0, loaded into the timm model fastai builds (`vision_learner(dls,
"tf_efficientnet_lite0", pretrained=False)`, then the body's weights, since fastai would download them) with the
weights' own normalisation (mean = std = 0.5). fastai gets its standard call, `learn.fine_tune(1)`: one frozen
epoch, one unfrozen epoch. Snapfit gets `python -m engine train` with no flag (the "quick" recipe) and the "best"
recipe. Each arm runs in its own process; the clock starts once the libraries are imported and stops when the
trained model has been validated. Target: at least fastai's accuracy in at most half its time.
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

ARCH = "tf_efficientnet_lite0"


def make_split(source: Path, out: Path, per_class: int | None, seed: int = 0) -> Path:
    """train/ and valid/ folders of links to the photos, 20 % of each class in valid/ (Snapfit's own split)."""
    from engine.labelled import split

    classes = sorted(d.name for d in source.iterdir() if d.is_dir())
    files = [(c, f) for c in classes for f in sorted((source / c).iterdir()) if f.is_file()]
    if per_class is not None:
        files = [(c, f) for c in classes for f in [f for k, f in files if k == c][: per_class + per_class // 4]]
    train_idx, val_idx = split([classes.index(c) for c, _ in files], 0.2, seed)
    for part, idx in (("train", train_idx), ("valid", val_idx)):
        for i in idx:
            c, f = files[i]
            (out / part / c).mkdir(parents=True, exist_ok=True)
            (out / part / c / f.name).symlink_to(f)
    return out


def run_fastai(folder: str, size: int, seed: int) -> dict:
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, accuracy, set_seed, vision_learner

    from engine import embedded

    set_seed(seed)
    t0 = time.perf_counter()
    dls = ImageDataLoaders.from_folder(folder, train="train", valid="valid", item_tfms=Resize(size), bs=32,
                                      batch_tfms=Normalize.from_stats([0.5] * 3, [0.5] * 3))
    learn = vision_learner(dls, ARCH, pretrained=False, metrics=accuracy)
    body = learn.model[0].model  # fastai's TimmBody holds the timm model, built without a classifier
    state = {k: v for k, v in embedded.weights(ARCH, body).items() if not k.startswith("classifier.")}
    body.load_state_dict(state, strict=True)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(1)
    acc = float(learn.validate()[1])
    return dict(accuracy=acc, seconds=time.perf_counter() - t0)


def run_snapfit(folder: str, size: int, recipe: str) -> dict:
    from engine import data
    from engine.train import RECIPES, TrainConfig, fit

    t0 = time.perf_counter()
    cfg = TrainConfig(**RECIPES[recipe] | dict(img_size=size))
    with tempfile.TemporaryDirectory() as out:
        events = list(fit(data.load(folder), cfg, out))
    return dict(accuracy=events[-1].best_val_acc, seconds=time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--per-class", nargs="+", default=["20", "all"])
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: "fastai" or a Snapfit recipe, in this process
    args = p.parse_args()
    if args.arm:
        from engine import hub

        hub.detect_offline()
        import engine  # noqa: F401  (its torchvision op guard before fastai imports torchvision)

        r = run_fastai(args.data, args.img_size, args.seed) if args.arm == "fastai" else \
            run_snapfit(args.data, args.img_size, args.arm)
        print(json.dumps(r))
        return
    require_folder(args.data)
    import torch

    import engine  # noqa: F401
    from engine.train import TrainConfig, use_bf16

    print(machine(use_bf16(TrainConfig(), torch.device("cpu"))))
    print(f"{ARCH} with the built-in ImageNet weights, {args.img_size} px, {torch.get_num_threads()} threads")
    print(f"{'photos per class':<18}{'arm':<34}{'val accuracy':>13}{'seconds':>9}")
    arms = [("fastai fine_tune(1)", "fastai"), ("Snapfit default (quick)", "quick"), ("Snapfit best", "best")]
    for per in args.per_class:
        with tempfile.TemporaryDirectory() as d:
            folder = make_split(Path(args.data), Path(d), None if per == "all" else int(per), args.seed)
            results = {}
            for name, arm in arms:
                results[arm] = r = run_arm(__file__, "--data", str(folder), "--img-size", str(args.img_size), "--seed",
                                           str(args.seed), "--arm", arm)
                print(f"{per:<18}{name:<34}{r['accuracy']:>12.1%}{r['seconds']:>9.1f}", flush=True)
        for arm in ("quick", "best"):
            ratio = results[arm]["seconds"] / results["fastai"]["seconds"]
            gain = 100 * (results[arm]["accuracy"] - results["fastai"]["accuracy"])
            print(f"{'':<18}{arm} vs fastai: time ratio {ratio:.2f} (target <= 0.50), accuracy {gain:+.1f} points (target >= 0)")


if __name__ == "__main__":
    main()
