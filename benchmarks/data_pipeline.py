"""Data pipeline: preparing real-size photos and iterating training batches, Snapfit against torchvision.

    python benchmarks/data_pipeline.py [--images 1000] [--epochs 5] [--size 128] [--batch-size 64] [--photos DIR]

The script first writes `--images` JPEGs of 800x600 (10 classes of varied synthetic photos: gradients,
shapes, texture, noise; quality 90) into a temporary folder, or into --photos DIR to reuse them in a later
run; that is not timed. Then each arm runs in its own
process and the clock covers everything from the folder to the last batch of the last epoch:

  baseline   torchvision ImageFolder + PIL transforms (RandomResizedCrop, RandomHorizontalFlip, ToTensor,
             Normalize) + DataLoader, shuffled; num_workers 0 and 2, the faster one is the baseline.
  Snapfit    engine.data.load (checks every file) + decode once (JPEG draft mode, threads) to uint8 tensors,
             then per batch: the `light` augmentation on the whole batch (flip, zoom, shift, rotation) and
             normalisation.
  lazy       the same as Snapfit with a memory budget of 0 MB: every batch decodes its images again. Shown
             for information (it is what datasets beyond the budget cost); not part of the ratio.

Every arm yields float batches of batch-size x 3 x size x size, normalised. Prints seconds and images/s per
arm and the ratio Snapfit / best baseline (target >= 3).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from arms import machine, run_arm  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before anything imports torchvision)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_photos(root: Path, n: int, classes: int = 10, seed: int = 0) -> None:
    """n JPEGs of 800x600, `classes` folders: each class a hue and a shape, each image its own layout and noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:600, 0:800].astype(np.float32)
    for i in range(n):
        c = i % classes
        hue = np.array([np.cos(c), np.cos(c + 2.1), np.cos(c + 4.2)]) * 0.5 + 0.5
        angle = rng.uniform(0, np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / 1000.0
        base = (ramp[..., None] * hue * 200 + rng.uniform(20, 60, 3)).clip(0, 255)
        texture = rng.normal(0, 18, (150, 200, 3)).repeat(4, 0).repeat(4, 1)  # blotchy texture, like a real scene
        img = Image.fromarray((base + texture).clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(3, 8)):
            x, y, r = rng.integers(0, 800), rng.integers(0, 600), rng.integers(30, 160)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if c % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1))
        noise = rng.normal(0, 6, (600, 800, 3))
        img = Image.fromarray((np.asarray(img) + noise).clip(0, 255).astype(np.uint8))
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def run_baseline(path: str, epochs: int, size: int, batch_size: int, workers: int) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    t0 = time.perf_counter()
    tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])
    loader = DataLoader(datasets.ImageFolder(path, transform=tf), batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    images, check = 0, 0.0
    for _ in range(epochs):
        for x, _y in loader:
            images += len(x)
            check += float(x[:, :, 0, 0].sum())  # touch every batch
    return dict(arm=f"ImageFolder + DataLoader, {workers} workers", seconds=time.perf_counter() - t0, images=images)


def run_snapfit(path: str, epochs: int, size: int, batch_size: int, budget: int | None) -> dict:
    import torch

    from engine import data

    t0 = time.perf_counter()
    dataset = data.load(path)
    decoded, _ = data.decode(dataset, range(len(dataset)), size, lazy=not data.fits_in_memory(len(dataset), size, budget))
    t_prepared = time.perf_counter() - t0
    normalize, generator = data.Normalizer(MEAN, STD), torch.Generator().manual_seed(0)
    images, check = 0, 0.0
    for _ in range(epochs):
        for idx in data.batches(len(decoded), batch_size, shuffle=True, generator=generator):
            x = normalize(data.augment(decoded.x[idx].float().div_(255.0), "light", generator))
            images += len(x)
            check += float(x[:, :, 0, 0].sum())
    arm = "Snapfit, decoded per batch (budget 0)" if budget == 0 else "Snapfit, decoded once"
    return dict(arm=arm, seconds=time.perf_counter() - t0, images=images, prepare_seconds=t_prepared)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--photos", help="keep the generated photos in this folder (and reuse them if already there)")
    p.add_argument("--arm", choices=["baseline", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm per process
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm == "baseline":
        print(json.dumps(run_baseline(args.data, args.epochs, args.size, args.batch_size, args.workers)))
        return
    if args.arm == "snapfit":
        print(json.dumps(run_snapfit(args.data, args.epochs, args.size, args.batch_size, args.budget)))
        return
    import torch

    print(machine())
    with tempfile.TemporaryDirectory(prefix="snapfit-bench-") as tmp:
        folder = Path(args.photos or tmp)
        t = time.perf_counter()
        if len(list(folder.glob("*/*.jpg"))) != args.images:
            shutil.rmtree(folder, ignore_errors=True)
            make_photos(folder, args.images)
        print(f"{args.images} JPEGs of 800x600 ready in {time.perf_counter() - t:.0f} s; {args.epochs} epochs at "
              f"{args.size} px, batch {args.batch_size}, {torch.get_num_threads()} threads")
        print(f"{'arm':<42}{'seconds':>9}{'images/s':>10}")
        common = ["--data", str(folder), "--epochs", str(args.epochs), "--size", str(args.size), "--batch-size", str(args.batch_size)]
        rows = []
        for extra in (["--arm", "baseline", "--workers", "0"], ["--arm", "baseline", "--workers", "2"], ["--arm", "snapfit"],
                      ["--arm", "snapfit", "--budget", "0"]):
            r = run_arm(__file__, *extra, *common)
            r["rate"] = r["images"] / r["seconds"]
            rows.append(r)
            decoded = f"   (load + decode {r['prepare_seconds']:.1f} s)" if "prepare_seconds" in r else ""
            print(f"{r['arm']:<42}{r['seconds']:>9.1f}{r['rate']:>10.0f}{decoded}", flush=True)
    baseline = max(rows[:2], key=lambda r: r["rate"])
    print(f"ratio Snapfit / best baseline ({baseline['arm']}): {rows[2]['rate'] / baseline['rate']:.1f}x (target >= 3)")
    print(f"decoded per batch / best baseline: {rows[3]['rate'] / baseline['rate']:.1f}x (for information)")


if __name__ == "__main__":
    main()
