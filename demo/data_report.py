"""What the Data tab says about a loaded dataset: a summary with the split sizes, and a list of warnings.

The engine's own warnings (unreadable files, tiny classes, validation images identical to training images,
found while decoding) come first; this adds the skipped files they did not name, and a stricter imbalance warning.
Warnings are engine.labelled.DataWarning: this reads their kind and the files they name, not their words.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine import data as data_lib
from engine.labelled import IMBALANCED, LIST_LIMIT, SKIPPED, DataWarning, label_report
from engine.train import Decoded

IMBALANCE_RATIO = 3  # largest / smallest class at or beyond this: warn (accuracy alone then flatters a model)


def summary(dataset: data_lib.LabelledImages, decoded: Decoded | None = None) -> str:
    return "\n\n".join([
        headline(dataset),
        ("Labels (images showing each): " if dataset.multi_label else "Classes: ")
        + ", ".join(f"{name} ({n})" for name, n in dataset.counts().items()),
        *([labels_per_image(dataset)] if dataset.multi_label else []),
        split_sizes(dataset, decoded),
    ])


def labels_per_image(dataset: data_lib.LabelledImages) -> str:
    """How many labels the images carry, and the labels seen together most often."""
    report = label_report(dataset)
    per_image = ", ".join(f"{k} label{'s' * (k != 1)}: {n}" for k, n in sorted(report["labels_per_image"].items()))
    names, together = dataset.class_names, report["co_occurrence"]
    pairs = sorted(((together[a][b], names[a], names[b]) for a in range(len(names)) for b in range(a + 1, len(names))
                    if together[a][b]), reverse=True)[:3]
    seen = "; seen together most: " + ", ".join(f"{a} + {b} ({n})" for n, a, b in pairs) if pairs else ""
    return f"Multi-label: images per number of labels: {per_image}{seen}."


def headline(dataset: data_lib.LabelledImages) -> str:
    """"**900 images in 6 classes** from `builtin:shapes`": the size and where it came from (a Hub id, or the
    uploaded folder's name, never a path on the server)."""
    origin = str(dataset.origin.get("source", ""))
    name = origin.removeprefix("hub:") if origin.startswith("hub:") else Path(dataset.source).name or dataset.source
    if dataset.multi_label:
        return f"**{len(dataset)} images with {len(dataset.counts())} labels (multi-label)** from `{name}`"
    return f"**{len(dataset)} images in {len(dataset.counts())} classes** from `{name}`"


def split_sizes(dataset: data_lib.LabelledImages, decoded: Decoded | None = None) -> str:
    """Training and validation sizes: as decoded when it was (unreadable images are then left out)."""
    if decoded is not None:
        n_train, n_val = len(decoded.train), len(decoded.val)
    else:
        n_train, n_val = (len(part) for part in data_lib.holdout(dataset))
    how = ("the dataset's own train/validation split" if dataset.has_own_split()
           else "iterative stratification, 20 %, so that every label is in both" if dataset.multi_label
           else "stratified, 20 %; the Train tab's validation fraction changes it")
    return f"Split: {n_train} for training, {n_val} for validation ({how})."


def warnings(dataset: data_lib.LabelledImages, decoded: Decoded | None = None) -> list[str]:
    """The warnings to show, as sentences: the engine's (read by kind, never by their words), then this tab's."""
    found = list(dataset.warnings) + [w for w in (decoded.warnings if decoded else []) if w not in dataset.warnings]
    named = {file for w in found for file in w.files}
    unnamed = [s for s in dataset.skipped if s not in named]
    if unnamed:
        found.append(DataWarning(SKIPPED, f"Skipped files: {data_lib.listed([f'`{s}`' for s in unnamed])}.",
                                 dict(files=len(unnamed)), unnamed[:LIST_LIMIT]))
    if not any(w.kind == IMBALANCED for w in found):  # the engine warns from a larger ratio; say it earlier
        found += imbalance(dataset)
    root = str(Path(dataset.source)) + os.sep
    return [w.message.replace(root, "") for w in found]  # files by their place in the dataset, not on the server's disk


def imbalance(dataset: data_lib.LabelledImages) -> list[DataWarning]:
    """A warning when the largest class has IMBALANCE_RATIO times the images of the smallest (or more)."""
    counts = {name: n for name, n in dataset.counts().items() if n > 0}
    if not counts:
        return []
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    if counts[big] < IMBALANCE_RATIO * counts[small]:
        return []
    return [DataWarning(IMBALANCED, f"Imbalanced classes: {big} has {counts[big]} images, {small} only {counts[small]} "
                                    f"({counts[big] / counts[small]:.1f}x). Add images to the small classes, or expect "
                                    "the model to favour the big ones.", dict(largest=counts[big], smallest=counts[small]))]


def warnings_markdown(dataset: data_lib.LabelledImages, decoded: Decoded | None = None) -> str:
    found = warnings(dataset, decoded)
    if not found:
        return "No problems found."
    return "**Warnings**\n\n" + "\n".join(f"- {w}" for w in found)
