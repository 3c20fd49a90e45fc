"""`head` strategy: an epoch on cached features against a frozen-backbone epoch that re-runs the backbone.

    python benchmarks/head_strategy.py [--data builtin:shapes] [--model resnet18] [--img-size 128] [--epochs 5]

Both arms train only the classifier of the same model, on the same decoded images, with the same batch size,
precision, optimizer and one-cycle schedule, and validate after every epoch. The baseline is the usual
frozen-backbone loop: every batch goes through the backbone again (without gradients) before the head.
Snapfit's `head` strategy embeds every image once, then trains on the cached features. Prints the median
seconds per epoch after the embedding pass, the one-off embedding time, and the ratio (target >= 20).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from arms import machine  # noqa: E402

from engine import data as data_lib  # noqa: E402
from engine import models  # noqa: E402
from engine.train import Learner, TrainConfig, _validate, decode_once, fit, one_cycle, set_lrs  # noqa: E402


def frozen_backbone_epochs(decoded, cfg: TrainConfig) -> list[float]:
    """The baseline: backbone frozen (eval mode, no gradients) but re-run on every batch of every epoch."""
    learner = Learner(decoded, cfg)
    model, head = learner.model, learner.model.get_classifier()
    models.set_trainable(model, learner.groups, len(learner.groups) - 1)
    optimizer = learner.optimizer([cfg.resolved_lr()], params_of=[list(head.parameters())])
    total, step = cfg.epochs * -(-len(learner.train_x) // cfg.batch_size), 0
    seconds = []
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        model.eval()
        for idx in data_lib.batches(len(learner.train_x), cfg.batch_size, True, learner.generator):
            with torch.no_grad(), learner.autocast():
                feats = model.forward_head(model.forward_features(learner.normalize(learner.train_x[idx])), pre_logits=True)
            loss = F.cross_entropy(head(feats.float()), learner.train_y[idx], label_smoothing=cfg.label_smoothing)
            set_lrs(optimizer, *one_cycle(step, total))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        _validate(learner, epoch, loss.item(), 0.0, t, None)  # re-runs the backbone on the validation images too
        seconds.append(time.perf_counter() - t)
    return seconds


def head_epochs(decoded, cfg: TrainConfig) -> tuple[list[float], float]:
    seconds, embedded_at, started_at = [], None, time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for event in fit(decoded, cfg, out):
            if event.kind == "log" and event.message.startswith("Embedded in"):
                embedded_at = time.perf_counter() - started_at
            if event.kind == "epoch_end":
                seconds.append(event.seconds)
    return seconds, embedded_at


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="builtin:shapes")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    print(machine())
    cfg = TrainConfig(model=args.model, weights="scratch", strategy="head", epochs=args.epochs, img_size=args.img_size,
                      batch_size=args.batch_size)
    decoded = decode_once(data_lib.load(args.data), cfg.img_size, cfg.val_fraction, cfg.seed)
    print(f"{args.data}: {args.model}, {args.img_size} px, batch {args.batch_size}, {len(decoded.train)} train / "
          f"{len(decoded.val)} val images, {torch.get_num_threads()} threads")
    baseline = statistics.median(frozen_backbone_epochs(decoded, cfg))
    cached, embed_seconds = head_epochs(decoded, cfg)
    ours = statistics.median(cached)
    print(f"{'arm':<44}{'s / epoch':>10}")
    print(f"{'frozen backbone, re-run every epoch':<44}{baseline:>10.3f}")
    print(f"{'Snapfit head (cached features)':<44}{ours:>10.4f}   (one-off: set-up and embedding {embed_seconds:.1f} s)")
    print(f"epoch time ratio frozen-backbone / head: {baseline / ours:.0f}x (target >= 20x)")


if __name__ == "__main__":
    main()
