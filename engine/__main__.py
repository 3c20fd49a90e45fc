"""Command line: python -m engine {train, lr-find, eval, predict}.

Progress goes to stderr (a bar on a terminal, plain lines otherwise); results go to stdout as JSON.
Bad arguments or bad input end with a one-line error and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from engine import hub


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    hub.detect_offline()  # before the hub libraries are imported, so offline fails fast
    from engine.errors import UserError

    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Snapfit: train image classifiers on your pictures.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for name, func, help_ in [("train", cmd_train, "fine-tune a model"), ("lr-find", cmd_lr_find, "run the LR range test")]:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--data", default="builtin:shapes", help="folder, .zip or builtin:shapes")
        sp.add_argument("--model", default="resnet18")
        sp.add_argument("--strategy", default="auto", choices=["auto", "head", "finetune", "full", "progressive"])
        sp.add_argument("--epochs", type=int, default=5)
        sp.add_argument("--lr", type=float, default=3e-3)
        sp.add_argument("--batch-size", type=int, default=64)
        sp.add_argument("--img-size", type=int, default=64)
        sp.add_argument("--augment", default="light", choices=["none", "light", "standard"])
        sp.add_argument("--seed", type=int, default=0)
        w = sp.add_mutually_exclusive_group()
        w.add_argument("--pretrained", action="store_const", dest="weights", const="pretrained")
        w.add_argument("--scratch", action="store_const", dest="weights", const="scratch")
        w.add_argument("--weights", dest="weights", help="local .safetensors / .pth file or model folder")
        sp.add_argument("--out", required=True, help="output folder")
        sp.set_defaults(func=func, weights="scratch")
    sp = sub.add_parser("predict", help="classify images with a model folder")
    sp.add_argument("--model-dir", required=True)
    sp.add_argument("--top-k", type=int, default=5)
    sp.add_argument("images", nargs="+")
    sp.set_defaults(func=cmd_predict)
    sp = sub.add_parser("eval", help="accuracy of a model folder on a labelled dataset")
    sp.add_argument("--model-dir", required=True)
    sp.add_argument("--data", required=True)
    sp.set_defaults(func=cmd_eval)
    return p


def _config(args):
    from engine.train import TrainConfig, preflight

    return preflight(TrainConfig(
        model=args.model, weights=args.weights, strategy=args.strategy, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, img_size=args.img_size, augment=args.augment, seed=args.seed,
    ))


class _Progress:
    """A one-line bar on a terminal; plain lines (one per epoch) when stderr is a file or a pipe."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == "step" and self.tty:
            print(f"\r  step {event.step}  loss {event.loss:.4f}  lr {event.lr:.2e}  {event.images_per_s:.0f} img/s", end="", file=sys.stderr)
        elif kind == "lr_step" and self.tty:
            print(f"\r  lr {event.lr:.2e}  loss {event.loss:.4f}  ({event.step}/{event.total})", end="", file=sys.stderr)
        elif kind == "epoch_end":
            print(("\r" if self.tty else "") + f"epoch {event.epoch}: train_loss={event.train_loss:.4f} val_loss={event.val_loss:.4f} "
                  f"val_acc={event.val_acc:.4f} ({event.seconds:.1f}s)", file=sys.stderr)
        elif kind in ("log", "started"):
            print(event.message if kind == "log" else f"training {event.model} ({event.strategy}) on {event.device}: "
                  f"{event.num_train} train / {event.num_val} val images", file=sys.stderr)


def cmd_train(args) -> int:
    from engine import data
    from engine.train import fit

    show, last, cfg = _Progress(), None, _config(args)
    for last in fit(data.load(args.data), cfg, args.out):
        show(last)
    print(json.dumps(asdict(last)))
    return 0


def cmd_lr_find(args) -> int:
    from engine import data
    from engine.lr_finder import find

    show, last, cfg = _Progress(), None, _config(args)
    for last in find(data.load(args.data), cfg):
        show(last)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(asdict(last)))
    print(json.dumps(dict(suggestions=last.suggestions, message=last.message, file=str(out / "lr_find.json"))))
    return 0


def cmd_predict(args) -> int:
    from engine.predict import Predictor

    predictor = Predictor.from_folder(args.model_dir)
    for path in args.images:
        print(json.dumps(dict(image=path, top_k=predictor.predict([path], args.top_k)[0])))
    return 0


def cmd_eval(args) -> int:
    import torch

    from engine import data
    from engine.evaluate import confusion_matrix, per_class_accuracy
    from engine.predict import Predictor

    predictor = Predictor.from_folder(args.model_dir)
    dataset = data.load(args.data)
    mapping = {name: predictor.class_names.index(name) for name in dataset.class_names if name in predictor.class_names}
    keep = [i for i, y in enumerate(dataset.labels) if dataset.class_names[y] in mapping]
    preds = []
    for start in range(0, len(keep), 64):
        chunk = [dataset.images[i] for i in keep[start : start + 64]]
        preds.append(predictor.probabilities(chunk).argmax(1))
    y_pred = torch.cat(preds)
    y_true = torch.tensor([mapping[dataset.class_names[dataset.labels[i]]] for i in keep])
    result = dict(
        accuracy=float((y_pred == y_true).float().mean()),
        num_images=len(keep),
        per_class_accuracy=per_class_accuracy(y_true, y_pred, predictor.class_names),
        confusion_matrix=confusion_matrix(y_true, y_pred, len(predictor.class_names)).tolist(),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
