"""Full fine-tune throughput: Snapfit's `full` strategy against the plain PyTorch loop most tutorials teach.

    python benchmarks/train_throughput.py [--data ../shared/data/sign-digits] [--epochs 2] [--img-size 64]

Both arms train the same timm model (random init: the Hub is not needed) with the same batch size, image size,
epochs, optimizer (AdamW) and threads, on the same photos read from disk, and validate after every epoch.
The baseline is torchvision `ImageFolder` + PIL transforms + `DataLoader`, fp32, decoding every image every
epoch; it runs with `num_workers` 0 and 2 and keeps the faster. Snapfit decodes once, augments batched
tensors, and picks its precision and memory format itself (bf16 + channels_last where the CPU has bf16).
The clock covers data loading, training and validation. Prints images/s per arm and the ratio (target >= 1.5).
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

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before anything imports torchvision)


def run_baseline(path: str, model_name: str, epochs: int, size: int, batch_size: int, workers: int) -> dict:
    import timm
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    import engine.data as data_lib

    t0 = time.perf_counter()
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    full = datasets.ImageFolder(path, transform=tf)
    train_idx, val_idx = data_lib.stratified_holdout(full.targets, 0.2, 0)  # the same split as Snapfit's
    train = DataLoader(Subset(full, train_idx), batch_size=batch_size, shuffle=True, num_workers=workers)
    val = DataLoader(Subset(full, val_idx), batch_size=batch_size, num_workers=workers)
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=len(full.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
    seconds = time.perf_counter() - t0
    return dict(arm=f"ImageFolder loop, {workers} workers", seconds=seconds, images=epochs * len(train_idx),
                accuracy=correct / len(val_idx))


def run_snapfit(path: str, model_name: str, epochs: int, size: int, batch_size: int, workers: int) -> dict:
    from engine import data
    from engine.train import TrainConfig, fit

    t0 = time.perf_counter()
    cfg = TrainConfig(model=model_name, weights="scratch", strategy="full", epochs=epochs, img_size=size, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as out:
        for event in fit(data.load(path), cfg, out):
            if event.kind == "started":
                n_train = event.num_train
    seconds = time.perf_counter() - t0
    return dict(arm="Snapfit fit(strategy=full)", seconds=seconds, images=epochs * n_train, accuracy=event.best_val_acc)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sign-digits"))
    p.add_argument("--model", default="resnet18")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--arm", choices=["baseline", "snapfit"], help=argparse.SUPPRESS)  # internal: one arm per process
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm:
        runner = run_baseline if args.arm == "baseline" else run_snapfit
        print(json.dumps(runner(args.data, args.model, args.epochs, args.img_size, args.batch_size, args.workers)))
        return
    require_folder(args.data)
    print(machine())
    import torch

    print(f"{Path(args.data).name}: {args.model}, {args.img_size} px, batch {args.batch_size}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads")
    print(f"{'arm':<32}{'seconds':>9}{'images/s':>10}")
    rows = []
    for arm, workers in [("baseline", 0), ("baseline", 2), ("snapfit", 0)]:
        r = run_arm(__file__, "--arm", arm, "--workers", str(workers), "--data", args.data, "--model", args.model,
                    "--epochs", str(args.epochs), "--img-size", str(args.img_size), "--batch-size", str(args.batch_size))
        r["rate"] = r["images"] / r["seconds"]
        rows.append(r)
        print(f"{r['arm']:<32}{r['seconds']:>9.1f}{r['rate']:>10.1f}", flush=True)
    baseline = max(rows[:2], key=lambda r: r["rate"])
    print(f"throughput ratio Snapfit / best baseline: {rows[2]['rate'] / baseline['rate']:.2f} (target >= 1.5)")


if __name__ == "__main__":
    main()
