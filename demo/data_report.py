"""What the Data tab says about a loaded dataset: a summary, the split sizes and a list of warnings (Markdown)."""
from __future__ import annotations

from pathlib import Path

from engine import data as data_lib

IMBALANCE_RATIO = 3  # largest / smallest class at or beyond this: warn (accuracy alone then flatters a model)
LIST_AT_MOST = 12  # file names listed per warning; the rest are counted


def summary(dataset: data_lib.LabelledImages) -> str:
    counts = dataset.counts()
    return "\n\n".join([
        f"**{len(dataset)} images in {len(counts)} classes** from `{Path(dataset.source).name or dataset.source}`",
        "Classes: " + ", ".join(f"{name} ({n})" for name, n in counts.items()),
    ])


def split_sizes(dataset: data_lib.LabelledImages, val_fraction: float = 0.2, seed: int = 0) -> str:
    train, val = data_lib.split(dataset.labels, val_fraction, seed)
    return (f"Split: {len(train)} for training, {len(val)} for validation (stratified, {val_fraction:.0%}; "
            "the Train tab's validation fraction changes it).")


def warnings(dataset: data_lib.LabelledImages) -> list[str]:
    """The engine's warnings, the skipped files by name, and class imbalance."""
    out = list(dataset.warnings)
    if dataset.skipped:
        out.append(f"Skipped files ({len(dataset.skipped)}): {names(dataset.skipped)}")
    counts = {name: n for name, n in dataset.counts().items() if n > 0}
    if counts:
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        if counts[big] >= IMBALANCE_RATIO * counts[small]:
            out.append(f"Imbalanced classes: {big} has {counts[big]} images, {small} only {counts[small]} "
                       f"({counts[big] / counts[small]:.1f}x). Add images to the small classes, or expect the "
                       "model to favour the big ones.")
    return out


def names(items: list[str]) -> str:
    shown = ", ".join(f"`{i}`" for i in items[:LIST_AT_MOST])
    return shown + (f" and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else "")


def warnings_markdown(dataset: data_lib.LabelledImages) -> str:
    found = warnings(dataset)
    if not found:
        return "No problems found."
    return "**Warnings**\n\n" + "\n".join(f"- {w}" for w in found)
