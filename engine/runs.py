"""Runs side by side: the model folders under a folder (any folder, at any depth, that holds config.json and
metrics.json) read into comparable rows, and those rows as a plain-text table (`python -m engine runs DIR`).

A row names the data it trained on by the fingerprint training saved (engine.data.fingerprint), and numbers the
fingerprints "v1", "v2"... in the order they first appear, oldest run first: runs on the same pictures share a
version, and a cleaned dataset shows as a new one.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.config import RECIPES, recipe
from engine.errors import UserError
from engine.events import metrics_score, short_score

MACHINE_DEPENDENT = ("bf16", "channels_last")  # resolved on the machine that trained: no part of a recipe
CLASSES_SHOWN = 6  # per-class accuracies spelled out in a table cell; beyond that, the lowest ones


@dataclass
class Run:
    """One model folder as a row of the comparison; `error` says why its metrics could not be read (the other
    fields are then empty)."""

    folder: str
    name: str
    model: str = ""
    recipe: str = ""  # the recipe it is exactly, else its strategy
    epochs: int | None = None
    img_size: int | None = None
    data: str = ""  # the data fingerprint; "" for a folder saved before training recorded one
    val_accuracy: float | None = None  # the run's score: its accuracy, or for a multi-label run its mAP (`metric`)
    metric: str = "accuracy"
    best_epoch: int | None = None
    seconds: float | None = None
    per_class: dict = field(default_factory=dict)  # class name -> validation accuracy (None: no image of it)
    history: list = field(default_factory=list)  # one dict per epoch (engine.events.EpochEnd's fields)
    error: str | None = None


def find(root: str | Path) -> list[Run]:
    """Every model folder under `root` (itself included), oldest first (by when its metrics were written)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist: give the folder that holds your model folders (the --out of "
                        "`python -m engine train`, or a folder above several).")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: give the folder that holds your model folders.")
    folders = [Path(d) for d, _, files in os.walk(root) if {"config.json", "metrics.json"} <= set(files)]
    if not folders:
        raise UserError(f"No model folders under {root}: a model folder holds config.json and metrics.json "
                        "(train one with `python -m engine train --out FOLDER`).")
    folders.sort(key=lambda f: (_written(f), str(f)))
    return [read(f, root) for f in folders]


def _written(folder: Path) -> float:
    try:
        return (folder / "metrics.json").stat().st_mtime
    except OSError:
        return 0.0


def read(folder: str | Path, root: str | Path | None = None) -> Run:
    """One model folder as a row, named by its path under `root` (or by its own name)."""
    folder = Path(folder)
    name = folder.name if root is None or folder == Path(root) else str(folder.relative_to(root))
    try:
        m = json.loads((folder / "metrics.json").read_text())
        hp = m.get("hyperparameters") or {}
        score, metric = metrics_score(m)
        return Run(str(folder), name, model=model_name(hp), recipe=recipe_of(hp) or hp.get("strategy", ""),
                   epochs=hp.get("epochs"), img_size=hp.get("img_size"), data=(m.get("data") or {}).get("fingerprint", ""),
                   val_accuracy=float(score), metric=metric, best_epoch=m.get("best_epoch"), seconds=m.get("seconds"),
                   per_class=dict(m.get("per_class_accuracy") or {}), history=list(m.get("history") or []))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a broken file is a row, not a crash
        return Run(str(folder), name, error=f"unreadable metrics.json ({type(exc).__name__})")


def model_name(hp: dict) -> str:
    """As engine.models.display_name (without importing timm): the pretrained tag only with pretrained weights."""
    name = str(hp.get("model") or "")
    return name if hp.get("weights") == "pretrained" else name.partition(".")[0]


def recipe_of(hp: dict) -> str | None:
    """The name of the recipe a run's saved hyper-parameters are exactly (as resolved by training), or None."""
    for name in RECIPES:
        cfg = recipe(name)
        wanted = asdict(cfg) | dict(strategy=cfg.resolved_strategy(), lr=cfg.resolved_lr(), head_lr=cfg.resolved_head_lr(),
                                    freeze_bn=cfg.resolved_freeze_bn())
        wanted = json.loads(json.dumps(wanted))  # tuples as lists, as metrics.json holds them
        if all(hp.get(k) == v for k, v in wanted.items() if k not in MACHINE_DEPENDENT):
            return name
    return None


def data_versions(fingerprints, known: dict[str, int] | None = None) -> dict[str, int]:
    """A version number per fingerprint in order of first appearance, continuing `known` (updated in place)."""
    known = {} if known is None else known
    for fp in fingerprints:
        if fp and fp not in known:
            known[fp] = len(known) + 1
    return known


def data_label(fingerprint: str, versions: dict[str, int]) -> str:
    return f"v{versions[fingerprint]}" if fingerprint in versions else "?"


def per_class_text(per_class: dict, limit: int = CLASSES_SHOWN) -> str:
    """"circle 100% · square 95%"; with more classes than `limit`, the lowest ones (what to look at)."""
    known = [(name, acc) for name, acc in per_class.items() if acc is not None]
    if len(per_class) <= limit:
        return " · ".join(f"{name} {'n/a' if acc is None else f'{acc:.0%}'}" for name, acc in per_class.items())
    lowest = sorted(known, key=lambda item: item[1])[:limit]
    return "lowest: " + " · ".join(f"{name} {acc:.0%}" for name, acc in lowest)


COLUMNS = ("run", "model", "recipe", "epochs", "size", "data", "val acc", "best epoch", "seconds", "per class")


def rows(runs: list[Run]) -> list[dict]:
    """The runs as plain values for machines (`--json`): data version, fingerprint, accuracies; no history."""
    versions = data_versions(r.data for r in runs)
    return [dict(name=r.name, folder=r.folder, model=r.model, recipe=r.recipe, epochs=r.epochs, img_size=r.img_size,
                 data_version=data_label(r.data, versions) if r.data else None, data_fingerprint=r.data or None,
                 val_accuracy=r.val_accuracy, metric=r.metric, best_epoch=r.best_epoch, seconds=r.seconds, per_class_accuracy=r.per_class,
                 error=r.error) for r in runs]


def table(runs: list[Run]) -> str:
    """The runs as an aligned plain-text table, one line each; an unreadable folder says so on its line."""
    versions = data_versions(r.data for r in runs)
    lines = []
    for r in runs:
        if r.error:
            lines.append([r.name] + [""] * (len(COLUMNS) - 2) + [r.error])
            continue
        data = f"{data_label(r.data, versions)} {r.data}" if r.data else "?"
        lines.append([r.name, r.model, r.recipe, _text(r.epochs), _text(r.img_size), data, short_score(r.val_accuracy, r.metric),
                      _text(r.best_epoch), "" if r.seconds is None else f"{r.seconds:.0f}", per_class_text(r.per_class)])
    widths = [max(len(str(cells[k])) for cells in [COLUMNS, *lines]) for k in range(len(COLUMNS) - 1)]
    return "".join(("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + "  " + str(cells[-1])).rstrip() + "\n"
                   for cells in [COLUMNS, *lines])


def _text(value) -> str:
    return "" if value is None else str(value)
