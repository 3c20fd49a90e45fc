"""Capture: seconds from the last captured frame to a usable model, and the live view's frames per second.

    python benchmarks/capture_speed.py [--per-class 30] [--classes 2 3 4 5]

Webcam-like frames (640x480, a built-in shape filling the middle, noise) are captured class by class the way the
Capture tab does it: each frame is stored and embedded as it arrives. After the last frame, the clock runs until a
model is usable:
- Snapfit live: `LiveModel.fit` (the last frame embedded, then an L-BFGS head on the cached features);
- baseline: the app's "first model" path, the quick recipe (`engine.train.fit`, a head trained by epochs on
  features embedded at the start of the run) on the same pictures as a dataset.
Each model then classifies 20 new frames per class. The live view's speed is one 640x480 frame to class
probabilities, as the live view does it (`LiveModel.predict`) and as the Classify tab's predictor does it on the
quick recipe's model folder. Both arms run in this one process, alternating, after one untimed warm-up of each.
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
from arms import machine, timed  # noqa: E402

import engine  # noqa: E402,F401  (first: its torchvision op guard must run before anything imports torchvision)

FRAME = (640, 480)


def webcam_frames(shape: int, n: int, seed: int):
    """n 640x480 RGB frames of one built-in shape class, as a webcam held on it might give them."""
    import numpy as np
    from PIL import Image

    from engine import sample

    pictures, labels = sample.generate(n_per_class=n, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for picture in (p for p, y in zip(pictures, labels) if y == shape):
        frame = Image.new("RGB", FRAME, tuple(int(v) for v in rng.integers(90, 200, 3)))
        frame.paste(picture.resize((400, 400)), (120, 40))
        noisy = np.asarray(frame, dtype=np.int16) + rng.integers(-6, 7, (FRAME[1], FRAME[0], 3))
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def quick_recipe_model(captured, out_dir: str) -> str:
    from engine.config import recipe
    from engine.train import fit

    events = list(fit(captured.to_labelled(), recipe("quick"), out_dir))
    return events[-1].model_dir


def accuracy(predict, tests: dict[str, list]) -> float:
    right = sum(max(p := predict(f), key=p.get) == name for name, frames in tests.items() for f in frames)
    return right / sum(len(f) for f in tests.values())


def one_size(k: int, per_class: int, embedder) -> dict:
    from engine import capture, sample
    from engine.predict import Predictor

    names = list(sample.CLASSES[:k])
    train = {name: webcam_frames(c, per_class, seed=1) for c, name in enumerate(names)}
    tests = {name: webcam_frames(c, 20, seed=2) for c, name in enumerate(names)}
    captured, live = capture.CapturedSet(), capture.LiveModel(embedder)
    capture_ms = []
    for name in names:
        captured.add_class(name)
        for frame in train[name][:-1] if name == names[-1] else train[name]:
            t = time.perf_counter()
            captured.add(name, [frame])
            live.embed_new(captured)
            capture_ms.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    captured.add(names[-1], [train[names[-1]][-1]])
    live.fit(captured)
    live_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        predictor = Predictor.from_folder(quick_recipe_model(captured, out))
        quick_s = time.perf_counter() - t
    return dict(k=k, live_s=live_s, quick_s=quick_s, capture_ms=statistics.median(capture_ms),
                live_acc=accuracy(live.predict, tests), quick_acc=accuracy(lambda f: predictor.predict([f])[0], tests),
                live_ms=statistics.median(timed(lambda: live.predict(tests[names[0]][0]), 30)),
                predictor_ms=statistics.median(timed(lambda: predictor.predict([tests[names[0]][0]]), 30)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--classes", type=int, nargs="+", default=[2, 3, 4, 5])
    args = p.parse_args()
    from engine import capture, hub

    hub.detect_offline()  # as the app and the CLI do: the baseline's pretrained weights come from the package then

    print(machine())
    t = time.perf_counter()
    embedder = capture.Embedder()
    print(f"live embedder ({capture.LIVE_ARCH} at {capture.LIVE_SIZE} px, "
          f"{'ONNX Runtime' if embedder.onnx is not None else 'PyTorch'}) built in {time.perf_counter() - t:.1f} s, "
          "once per server process")
    one_size(2, 4, embedder)  # warm-up: first calls of both paths, not timed
    print(f"{args.per_class} frames per class, 640x480; seconds from the last frame to a usable model, accuracy on "
          "20 new frames per class")
    print(f"{'classes':>7}{'live s':>8}{'quick recipe s':>16}{'ratio':>7}{'live acc':>10}{'quick acc':>11}"
          f"{'ms/frame stored':>17}{'live fps':>10}{'Classify fps':>14}")
    rows = []
    for k in args.classes:
        r = one_size(k, args.per_class, embedder)
        rows.append(r)
        print(f"{k:>7}{r['live_s']:>8.2f}{r['quick_s']:>16.1f}{r['quick_s'] / r['live_s']:>6.0f}x{r['live_acc']:>10.1%}"
              f"{r['quick_acc']:>11.1%}{r['capture_ms']:>17.0f}{1000 / r['live_ms']:>10.1f}{1000 / r['predictor_ms']:>14.1f}",
              flush=True)
    worst = max(r["live_s"] for r in rows)
    fps = min(1000 / r["live_ms"] for r in rows)
    ratio = statistics.median(r["predictor_ms"] / r["live_ms"] for r in rows)
    print(f"last frame to a usable model: at most {worst:.2f} s (target 3 s); live view: at least {fps:.1f} frames/s "
          f"at {capture.LIVE_SIZE} px (target 5), {ratio:.1f}x the Classify tab's predictor")


if __name__ == "__main__":
    main()
