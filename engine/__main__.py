"""Command line: python -m engine {train, lr-find, models, runs, eval, predict, export, push}.

Progress goes to stderr (a bar on a terminal, plain lines otherwise); results go to stdout as JSON.
Bad arguments or bad input end with a one-line error and exit code 2.
`train` also runs under torchrun (`torchrun --nproc_per_node N -m engine train ...`): one run over N processes,
of which rank 0 reports progress and writes the model folder while the others stay quiet (engine/distributed.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from engine import hub


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    hub.detect_offline()  # before the hub libraries are imported, so offline fails fast
    from engine import distributed
    from engine.errors import UserError

    try:
        if distributed.launched() and args.func is not cmd_train:
            command = args.func.__name__.removeprefix("cmd_").replace("_", "-")
            raise UserError(f"Only `train` runs over several processes: run `python -m engine {command}` without torchrun.")
        return args.func(args)
    except UserError as exc:
        print(f"error{_rank_note(distributed)}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        lost = distributed.lost_peer_message(exc) if distributed.launched() else None
        if lost is None:
            raise
        print(f"error{_rank_note(distributed)}: {lost}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _rank_note(distributed) -> str:
    """" (rank N)" for messages from the processes other than the first under torchrun."""
    return f" (rank {os.environ['RANK']})" if distributed.launched() and os.environ.get("RANK", "0") != "0" else ""


DEFAULT_DATA = "builtin:shapes"
DATA_HELP = ("builtin:shapes (the default), a folder or .zip of class folders (or of train/ + val/ holding them), "
             "or a Hugging Face Hub dataset id owner/name (also hub:owner/name)")
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Snapfit: train image classifiers on your pictures.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    for name, func, help_ in [("train", cmd_train, "fine-tune a model"), ("lr-find", cmd_lr_find, "run the LR range test")]:
        sp = sub.add_parser(name, help=help_)
        _data_arguments(sp, DEFAULT_DATA)
        _option_arguments(sp, name == "lr-find")
        sp.add_argument("--out", required=name == "lr-find", help="output folder")
        if name == "train":
            sp.add_argument("--resume", metavar="DIR", help="go on with the stopped or failed run that was writing DIR, "
                            "from its last checkpoint (DIR.resume.pt), with its own settings and data")
        sp.set_defaults(func=func)
    sp = sub.add_parser("models", help="list the curated models: size, and whether pretrained weights are available here")
    sp.set_defaults(func=cmd_models)
    sp = sub.add_parser("runs", help="compare the model folders under a folder: data version, recipe, accuracy, "
                                     "per-class accuracy, time")
    sp.add_argument("dir", metavar="DIR", help="a folder holding model folders, at any depth")
    sp.add_argument("--json", action="store_true", help="one JSON list of the runs instead of the table")
    sp.set_defaults(func=cmd_runs)
    sp = sub.add_parser("predict", help="classify images with a model folder (one JSON line per image: top_k, or for "
                                        "a multi-label model the labels `above` their thresholds and those `below`)")
    sp.add_argument("--model-dir", required=True)
    sp.add_argument("--top-k", type=int, default=5, help="classes shown per image (a multi-label model shows every label)")
    sp.add_argument("--tta", action="store_true", help="average with the mirror image (test-time augmentation)")
    sp.add_argument("images", nargs="+")
    sp.set_defaults(func=cmd_predict)
    sp = sub.add_parser("export", help="export a model folder (ONNX)")
    sp.add_argument("--model-dir", required=True)
    sp.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file to write (dynamic batch; class names in its metadata)")
    sp.set_defaults(func=cmd_export)
    sp = sub.add_parser("push", help="push a model folder to a Hugging Face Hub model repo, with a model card",
                        description="The token comes from HF_TOKEN or `hf auth login`, never from a flag (flags end up "
                                    "in shell history and process lists).")
    sp.add_argument("--model-dir", required=True)
    sp.add_argument("--repo", required=True, metavar="OWNER/NAME")
    sp.add_argument("--private", action="store_true", help="create the repo as private")
    sp.add_argument("--lr-find", metavar="FILE", help="an lr_find.json from `lr-find`: its plot goes on the model card")
    sp.set_defaults(func=cmd_push)
    sp = sub.add_parser("eval", help="evaluate a model folder on a labelled dataset (prints and writes metrics JSON)")
    sp.add_argument("--model-dir", required=True)
    _data_arguments(sp, None)
    sp.add_argument("--out", help="metrics file to write (default: MODEL_DIR/eval.json)")
    sp.set_defaults(func=cmd_eval)
    return p


def _option_arguments(sp, finder: bool) -> None:
    """A flag for every option of engine/config.py's tables (--name-with-dashes; --x/--no-x for on/off options)."""
    from engine.config import DEFAULT_RECIPE, RECIPES, FinderConfig, TrainConfig, options

    # Every training option defaults to the recipe's value, else TrainConfig's: only what is given overrides.
    sp.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES),
                    help="starting values: " + "; ".join(f"{k}: {_recipe_text(k)}" for k in RECIPES)
                    + " (default: %(default)s)")
    for opt in options(TrainConfig).values():
        if opt.name != "weights":  # below, with its shorthands
            _add_option(sp, opt, f" (default: the recipe's, else {'auto' if opt.default is None else opt.default})")
    sp.add_argument("--freeze-backbone", action="store_const", dest="strategy", const="head", default=argparse.SUPPRESS,
                    help="same as --strategy head")
    w = sp.add_mutually_exclusive_group()
    w.add_argument("--pretrained", action="store_const", dest="weights", const="pretrained", default=argparse.SUPPRESS,
                   help="ImageNet weights: from the Hub, or built in for tf_efficientnet_lite0/1/2 (the default recipe's)")
    w.add_argument("--scratch", action="store_const", dest="weights", const="scratch", default=argparse.SUPPRESS,
                   help="random initialisation")
    w.add_argument("--weights", dest="weights", default=argparse.SUPPRESS, help="local .safetensors / .pth file or Snapfit model folder")
    if finder:
        for opt in options(FinderConfig).values():
            _add_option(sp, opt, f" (default: {'auto' if opt.default is None else opt.default})")


def _add_option(sp, opt, default_text: str) -> None:
    if opt.type is bool:
        sp.add_argument(opt.flag, dest=opt.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help=opt.help + default_text)
        return

    def typed(text: str):
        try:
            return opt.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    sp.add_argument(opt.flag, dest=opt.name, type=typed, choices=opt.choices, default=argparse.SUPPRESS,
                    metavar=None if opt.choices else opt.name.upper(), help=opt.help + default_text)


def _data_arguments(sp, default: str | None) -> None:
    """--data and the options of Hub datasets (train, lr-find and eval take the same)."""
    sp.add_argument("--data", default=default, required=default is None, help=DATA_HELP)
    sp.add_argument("--config", dest="data_config", help="Hub dataset: config (subset) name")
    sp.add_argument("--split", dest="data_split",
                    help="use only this split of the source (a Hub split, or a train/val/test folder); default: all, "
                         "with the source's own train/validation split when it has one")
    sp.add_argument("--image-column", help="Hub dataset: the image column (default: the first Image column)")
    sp.add_argument("--label-column", help="Hub dataset: the label column (default: a ClassLabel, or label/labels/...)")
    sp.add_argument("--max-per-class", type=int,
                    help="Hub dataset: stream at most this many images per class (validation/test: a quarter as many)")


def _load_data(args):
    from engine import data

    dataset = data.load(args.data, config=args.data_config, split=args.data_split, image_column=args.image_column,
                        label_column=args.label_column, max_per_class=args.max_per_class, progress=(shown := _LoadProgress()))
    if shown.printed:
        print(file=sys.stderr)  # end the progress line
    for warning in dataset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return dataset


class _LoadProgress:
    """progress(done, total, stage) of data.load: a line that updates on a terminal, nothing otherwise."""

    def __init__(self) -> None:
        self.tty, self.printed = sys.stderr.isatty(), False

    def __call__(self, done: int, total: int | None, stage: str) -> None:
        if self.tty:
            self.printed = True
            print(f"\r  {stage}: {done}" + (f"/{total}" if total else ""), end="", file=sys.stderr)


def _config(args):
    """The recipe's values, overridden by the options given on the command line."""
    from engine.config import RECIPES, TrainConfig, options
    from engine.train import preflight

    given = {name: getattr(args, name) for name in options(TrainConfig) if hasattr(args, name)}
    return preflight(TrainConfig(**RECIPES[args.recipe] | given))


def _finder_config(args):
    from engine.config import FinderConfig, options

    return FinderConfig(**{name: getattr(args, name) for name in options(FinderConfig) if hasattr(args, name)}).checked()


def _recipe_text(name: str) -> str:
    from engine.config import recipe

    cfg = recipe(name)
    return f"{cfg.model.split('.')[0]} {'from scratch' if cfg.from_scratch else cfg.weights}, {cfg.strategy}, {cfg.img_size} px"


class _Progress:
    """A one-line bar on a terminal; plain lines (one per epoch) when stderr is a file or a pipe. The words are
    engine.events.describe's, the same as the app's training log."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, event) -> None:
        from engine.events import EpochEnd, Log, LRStarted, LRStep, SavedBeforeFailure, Started, Step, describe

        if isinstance(event, (Step, LRStep)):
            if self.tty:
                print(f"\r  {describe(event)}", end="", file=sys.stderr)
        elif isinstance(event, (EpochEnd, SavedBeforeFailure, Log, Started, LRStarted)):
            end_bar = "\r" if self.tty and isinstance(event, EpochEnd) else ""  # the epoch's line replaces its bar
            print(end_bar + describe(event), file=sys.stderr)


def cmd_train(args) -> int:
    from engine import checkpoint, distributed
    from engine.errors import UserError
    from engine.train import fit

    cfg = _resumed(args) if args.resume else _config(args)
    if not args.out:
        raise UserError("Give --out FOLDER for the model folder (or --resume FOLDER to go on with a stopped run).")
    distributed.init()  # under torchrun: join the other processes (a no-op in a single process)
    # One process keeps a checkpoint beside the model folder, to resume from; torchrun's runs are not cut up.
    resumable = None if distributed.active() else str(checkpoint.beside(args.out))
    try:
        show, last = _Progress() if distributed.is_main() else None, None  # the other ranks stay quiet
        for last in fit(_load(args), cfg, args.out, checkpoint=resumable):
            if show:
                show(last)
        if show:
            print(json.dumps(asdict(last)))
    finally:
        distributed.teardown()
    return 0


# load() arguments as the checkpoint keeps them (engine.data's `origin`) -> the flags' names
ORIGIN_FLAGS = dict(source="data", split="data_split", config="data_config", image_column="image_column",
                    label_column="label_column", max_per_class="max_per_class")


def _resumed(args):
    """--resume DIR: the settings of the run that wrote DIR and its checkpoint, and its data unless --data is given."""
    from engine import checkpoint
    from engine.config import TrainConfig, options
    from engine.errors import UserError

    path = checkpoint.beside(args.resume)
    if not path.is_file():
        raise UserError(f"Nothing to resume: there is no {path.name} beside {args.resume}. A run saves one at an "
                        f"epoch end every {checkpoint.EVERY:.0f} s of training, and deletes it when it finishes.")
    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UserError("--resume writes the run's own folder: drop --out.")
    given = [opt.flag for name, opt in options(TrainConfig).items() if hasattr(args, name)]
    if given:
        raise UserError(f"--resume goes on with the run's own settings: drop {', '.join(given)}.")
    state = checkpoint.load(path)
    if state.config is None:
        raise UserError(f"{path.name} does not say which settings its run had (an older Snapfit wrote it): delete it "
                        "and train afresh.")
    origin = (state.data or {}).get("load") or {}
    if args.data == DEFAULT_DATA and origin.get("source"):  # no --data: the run's own
        for key, value in origin.items():
            if key in ORIGIN_FLAGS:
                setattr(args, ORIGIN_FLAGS[key], value)
    args.out = args.resume
    return TrainConfig(**state.config)


def _load(args):
    """_load_data, except that under torchrun a .zip is unpacked by the first process of each machine alone and
    the others read the folder it unpacked: several processes unpacking the same files at once would race."""
    from engine import data, distributed

    path = Path(os.path.expanduser(args.data.strip()))
    if not (distributed.active() and path.suffix.lower() == ".zip" and path.is_file()):
        return _load_data(args)
    with distributed.local_main_first():
        if distributed.local_rank() == 0:
            return _load_data(args)  # unpacks the zip beside it, without .zip (engine.folders.load_zip)
        return data.load_folder(path.with_suffix(""), split=args.data_split)  # same items; only rank 0 writes metrics


def cmd_lr_find(args) -> int:
    from engine.figures import lr_curve
    from engine.lr_finder import find

    show, last, cfg, finder = _Progress(), None, _config(args), _finder_config(args)
    for last in find(_load_data(args), cfg, finder):
        show(last)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(asdict(last)))
    lr_curve(last.lrs, last.losses, last.smoothed, last.suggestions).savefig(out / "lr_find.png")
    print(json.dumps(dict(suggestions=last.suggestions, message=last.message, json=str(out / "lr_find.json"),
                          png=str(out / "lr_find.png"))))
    return 0


def cmd_models(args) -> int:
    """The catalog as the app offers it: offline, the models whose pretrained weights are here come first."""
    import torch

    from engine import models

    offline = hub.is_offline()
    entries = models.catalog(offline)
    width = max(len(e.name) for e in entries) + 2
    print(f"{'model':<{width}}{'params':>7}  {'pretrained weights':<20}note")
    for entry in entries:
        weights = "built in" if entry.built_in else ("no (Hub offline)" if offline else "from the Hub")
        note = entry.note + ("" if entry.cpu or torch.cuda.is_available() else " (no GPU here: slow)")
        print(f"{entry.name:<{width}}{entry.params_m:>6g}M  {weights:<20}{note}")
    return 0


def cmd_runs(args) -> int:
    from engine import runs

    found = runs.find(args.dir)
    print(json.dumps(runs.rows(found)) if args.json else runs.table(found), end="\n" if args.json else "")
    return 0


def cmd_predict(args) -> int:
    from engine.predict import Predictor

    predictor = Predictor.from_folder(args.model_dir)
    for path in args.images:
        if predictor.multi_label:  # every label the image gets (at or above its threshold), then the others
            print(json.dumps(dict(image=path, **predictor.predict_labels([path], args.tta)[0])))
        else:
            print(json.dumps(dict(image=path, top_k=predictor.predict([path], args.top_k, args.tta)[0])))
    return 0


def cmd_export(args) -> int:
    from engine.export import to_onnx

    print(json.dumps(dict(onnx=str(to_onnx(args.model_dir, args.onnx)))))
    return 0


def cmd_push(args) -> int:
    from engine.events import LRFinished
    from engine.model_card import LR_FIND_JSON
    from engine.push import check_repo_id, push

    check_repo_id(args.repo)  # a bad id fails before anything is written
    if args.lr_find:
        _keep_lr_find(Path(args.lr_find), Path(args.model_dir) / LR_FIND_JSON, LRFinished)
    print(json.dumps(dict(url=push(args.model_dir, args.repo, private=args.private))))
    return 0


def _keep_lr_find(source: Path, target: Path, result_type) -> None:
    """Copy an LR finder result into the model folder (after checking it is one) so every card shows it."""
    from engine.errors import UserError

    try:
        result = result_type(**json.loads(source.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{source} is not an lr_find.json written by `python -m engine lr-find` ({exc}).") from None
    if target.parent.is_dir():
        target.write_text(json.dumps(asdict(result)))


def cmd_eval(args) -> int:
    from engine.errors import UserError
    from engine.evaluate import evaluate, items_of_known_classes
    from engine.predict import Predictor

    predictor = Predictor.from_folder(args.model_dir)
    dataset = _load_data(args)
    if predictor.multi_label:
        return _eval_multi_label(args, predictor, dataset)
    if dataset.multi_label:
        raise UserError(f"{args.model_dir} gives one class per image, but this dataset has several labels per image: "
                        "evaluate a multi-label model on it.")
    names = predictor.class_names
    keep = items_of_known_classes(dataset, range(len(dataset)), names)
    labels = [names.index(dataset.class_names[dataset.labels[i]]) for i in keep]
    result = evaluate(predictor, [dataset.images[i] for i in keep], labels, names)
    for item in result["top_losses"]:  # name the file, not just its position in the list evaluated
        item["image"] = dataset.name(keep[item["index"]])
    result["skipped_images"] = len(dataset) - len(keep)
    _write_eval(args, result)
    return 0


def _write_eval(args, result: dict) -> None:
    out = Path(args.out) if args.out else Path(args.model_dir) / "eval.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def _eval_multi_label(args, predictor, dataset) -> int:
    """A multi-label model on labelled images (several labels each, or one from class folders): labels matched
    by name, a model label the data lacks counted absent everywhere (and listed). The table goes to stderr, the
    metrics as JSON to stdout and the file."""
    from engine.errors import UserError
    from engine.multilabel import evaluate, targets_by_name

    names, data_names = predictor.class_names, dataset.class_names
    if not set(names) & set(data_names):
        raise UserError(f"None of the dataset's labels ({', '.join(data_names)}) are labels of this model "
                        f"({', '.join(names)}).")
    targets = targets_by_name(dataset, range(len(dataset)), names)
    result = evaluate(predictor, list(dataset.images), targets, names)
    for found in result["mistakes"].values():  # name the files, not just their positions in the list evaluated
        for item in found["false_positives"] + found["false_negatives"]:
            item["image"] = dataset.name(item["index"])
    result["labels_not_in_data"] = [name for name in names if name not in data_names]
    result["labels_unknown_to_model"] = [name for name in data_names if name not in names]
    print(multi_label_table(result), file=sys.stderr)
    _write_eval(args, result)
    return 0


def multi_label_table(result: dict) -> str:
    """engine.multilabel.summarize's result as text: the scores, then one line per label."""
    def pct(value):
        return "  n/a" if value is None else f"{value * 100:5.1f}"

    width = max(len(r["name"]) for r in result["per_label"]) + 2
    lines = [f"{result['num_images']} images: mAP {result['map'] * 100:.1f} %, micro F1 {result['micro_f1'] * 100:.1f} %, "
             f"macro F1 {result['macro_f1'] * 100:.1f} % (at the model's thresholds)",
             f"{'label':<{width}}{'thresh':>7}{'prec %':>8}{'rec %':>7}{'F1 %':>7}{'AP %':>7}{'images':>8}{'FP':>5}{'FN':>5}"]
    lines += [f"{r['name']:<{width}}{r['threshold']:>7.3f}{pct(r['precision']):>8}{pct(r['recall']):>7}{pct(r['f1']):>7}"
              f"{pct(r['ap']):>7}{r['support']:>8}{r['fp']:>5}{r['fn']:>5}" for r in result["per_label"]]
    if result.get("labels_not_in_data"):
        lines.append(f"labels of the model the data never names (counted absent): {', '.join(result['labels_not_in_data'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
