"""A dataset before decoding (`LabelledImages`), its checks, and the validation images it holds out.

"Split" here always means a source's own named part (a Hub split, a train/ or val/ folder); the train/validation
partition made for a run is the "holdout".

Every source (built-in, folder, zip, Hub) ends here. When the source has its own train/validation split
(`train/` + `val/` folders, a Hub dataset's splits) it is recorded in `splits` and `holdout` uses it;
otherwise the holdout is stratified and fully determined by (val_fraction, seed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError

LIST_LIMIT = 10  # names listed in one warning line; the full list is in `skipped`

# What a DataWarning is about (its `kind`)
SKIPPED = "skipped"  # files or rows left out (not images, unreadable, too large, unlabelled); `files`: those it names
TINY_CLASSES = "tiny_classes"  # classes with fewer than 2 images, kept out of validation
NO_TRAINING_IMAGES = "no_training_images"  # classes only in the source's validation or test split
IMBALANCED = "imbalanced"  # numbers: largest, smallest (images in the biggest and the smallest class)
SPLITS = "splits"  # how the source's own splits are used (the test split validates, a split is left out)
OVER_MEMORY_BUDGET = "over_memory_budget"  # decoded images would not fit in memory: decoded per batch instead
DUPLICATES = "duplicates"  # validation images identical to training images
# multi-label data only
NO_LABEL = "no_label"  # numbers: images (images carrying none of the labels)
RARE_LABELS = "rare_labels"  # labels on fewer than RARE_LABEL_IMAGES images; numbers: labels
LABEL_EVERYWHERE = "label_everywhere"  # labels on every image: nothing to learn from them; numbers: labels
ONE_LABEL_EACH = "one_label_each"  # every image has exactly one label: a single-label layout would do
RARE_LABEL_IMAGES = 5  # a label on fewer images than this is too rare to learn (and to validate) reliably


class DataWarning(str):
    """A warning about a dataset: the sentence shown to people, plus what it is about for code that acts on it.

    It *is* that sentence (a str), so it prints, logs, joins and compares as a plain message always did; code
    that needs to know what a warning says reads `kind` (one of the constants above) and `numbers` or `files`,
    never the words.
    """

    kind: str
    numbers: dict[str, int]
    files: tuple[str, ...]

    def __new__(cls, kind: str, message: str, numbers: dict[str, int] | None = None, files=()) -> DataWarning:
        warning = super().__new__(cls, message)
        warning.kind, warning.numbers, warning.files = kind, dict(numbers or {}), tuple(files)
        return warning

    @property
    def message(self) -> str:
        return str(self)

    def __reduce__(self):  # pickling and copying go through __new__ (str's own way would drop kind and numbers)
        return DataWarning, (self.kind, str(self), self.numbers, self.files)

    def __repr__(self) -> str:
        return f"DataWarning({self.kind!r}, {str(self)!r})"


@dataclass
class LabelledImages:
    """Class names, and per item an image (a path, encoded bytes or a PIL image) and its label: a class index, or
    for a multi-label dataset (`multi_label`) a sorted tuple of label indices, possibly empty (an image showing
    none of the labels). `class_names` are then the label names."""

    class_names: list[str]
    images: list  # a sequence: PIL.Image.Image | str path | bytes
    labels: list  # int per item, or (multi_label) tuple[int, ...] per item
    source: str
    skipped: list[str] = field(default_factory=list)  # names of files that are not images or could not be read
    warnings: list[DataWarning] = field(default_factory=list)
    splits: dict[str, list[int]] = field(default_factory=dict)  # the source's own "train"/"validation"/"test" items
    origin: dict = field(default_factory=dict)  # the load() arguments that give this dataset again
    item_names: list[str] | None = None  # how to name an item in messages when it has no path
    folder: str | None = None  # where the image paths lie: messages name files relative to it
    multi_label: bool = False  # several labels (or none) per image: `labels` holds tuples

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Images per class (multi-label: images carrying each label)."""
        flat = [c for item in self.labels for c in item] if self.multi_label else self.labels
        counts = np.bincount(np.asarray(flat, dtype=np.int64), minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def multi_hot(self, indices=None) -> np.ndarray:
        """Multi-label targets as a float32 (items x labels) matrix of 0 and 1, for the given items or all."""
        indices = range(len(self)) if indices is None else indices
        out = np.zeros((len(indices), len(self.class_names)), dtype=np.float32)
        for row, i in enumerate(indices):
            out[row, list(self.labels[i])] = 1.0
        return out

    def name(self, i: int) -> str:
        """How item i is shown to people: its Hub row, its path inside the source folder (never the server's
        own folders), or its number."""
        if self.item_names is not None:
            return self.item_names[i]
        image = self.images[i]
        if not isinstance(image, str):
            return f"item {i}"
        try:
            return str(Path(image).relative_to(self.folder or self.source))
        except ValueError:  # not under the source folder
            return image

    def has_own_split(self) -> bool:
        return bool(self.splits.get("train")) and bool(self.splits.get("validation"))


def listed(names: list[str], limit: int = LIST_LIMIT) -> str:
    """'a, b, c' or 'a, b, ... and 7 more': a warning stays one line however many files are named."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def first_per_class(items, keys, cap: int, n_classes: int | None = None) -> list:
    """The first `cap` items of each class, in order (`keys[item]` is an item's class). With `n_classes`,
    reading stops as soon as that many classes are full."""
    seen, out, full = {}, [], 0
    for item in items:
        n = seen.get(keys[item], 0)
        if n < cap:
            seen[keys[item]] = n + 1
            out.append(item)
            full += n + 1 == cap
            if full == n_classes:
                break
    return out


def validate(data: LabelledImages) -> LabelledImages:
    """Refuse what cannot be trained on; warn about what can but should be looked at."""
    # when files were skipped, say so: "no images" about a folder full of broken ones would mislead
    skipped = f" {' '.join(data.warnings)}" if data.skipped else ""
    if not data.labels:
        raise UserError(f"No usable images found.{skipped} Put readable images (PNG, JPEG, WebP, ...) in one subfolder "
                        "per class (e.g. cats/, dogs/).")
    if data.multi_label:
        return _validate_multi_label(data, skipped)
    if len(data.class_names) < 2:
        raise UserError(f"Found only one class ({data.class_names[0]}): a classifier needs at least 2 classes.{skipped}")
    small = [name for name, n in data.counts().items() if n < 2]
    if small:
        data.warnings.append(DataWarning(TINY_CLASSES, f"Classes with fewer than 2 images are kept out of validation: "
                                         f"{listed(small)}.", dict(classes=len(small))))
    if data.has_own_split():
        in_train = set(np.asarray(data.labels)[data.splits["train"]].tolist())
        missing = [name for c, name in enumerate(data.class_names) if c not in in_train]
        if missing:
            data.warnings.append(DataWarning(NO_TRAINING_IMAGES, "Classes with no training images (only validation "
                                             f"or test): {listed(missing)}.", dict(classes=len(missing))))
    counts = [n for n in data.counts().values() if n]
    if counts and max(counts) >= 10 * min(counts):
        data.warnings.append(DataWarning(IMBALANCED, f"Imbalanced classes: the largest has {max(counts)} images, the "
                                         f"smallest {min(counts)}.", dict(largest=max(counts), smallest=min(counts))))
    return data


def _validate_multi_label(data: LabelledImages, skipped: str) -> LabelledImages:
    counts = {name: n for name, n in data.counts().items() if n}
    if not counts:
        raise UserError(f"None of the {len(data)} images has a label: give each image at least one.{skipped}")
    if len(counts) < 2:
        raise UserError(f"Found only one label ({next(iter(counts))}): multi-label data needs at least 2 labels.{skipped}")
    warn = data.warnings.append
    if all(len(y) == 1 for y in data.labels):
        warn(DataWarning(ONE_LABEL_EACH, "Every image has exactly one label: this is single-label data. It is trained as "
                         "multi-label (as asked), but a folder per class would train a single-label classifier."))
    empty = sum(not y for y in data.labels)
    if empty:
        warn(DataWarning(NO_LABEL, f"{empty} of {len(data)} images have none of the labels (they teach what is not "
                         "there).", dict(images=empty)))
    rare = [name for name, n in counts.items() if n < RARE_LABEL_IMAGES]
    if rare:
        warn(DataWarning(RARE_LABELS, f"Labels on fewer than {RARE_LABEL_IMAGES} images, too rare to learn or check "
                         f"reliably: {listed(rare)}.", dict(labels=len(rare))))
    everywhere = [name for name, n in counts.items() if n == len(data)]
    if everywhere:
        warn(DataWarning(LABEL_EVERYWHERE, f"Labels on every image, so there is nothing to learn about them: "
                         f"{listed(everywhere)}.", dict(labels=len(everywhere))))
    if data.has_own_split():
        in_train = {c for i in data.splits["train"] for c in data.labels[i]}
        missing = [name for c, name in enumerate(data.class_names) if c not in in_train and counts.get(name)]
        if missing:
            warn(DataWarning(NO_TRAINING_IMAGES, "Labels with no training images (only validation or test): "
                             f"{listed(missing)}.", dict(labels=len(missing))))
    return data


def caption(data: LabelledImages, i: int) -> str:
    """Item i's class, or (multi-label) all its labels joined by ", "."""
    if not data.multi_label:
        return data.class_names[data.labels[i]]
    return ", ".join(data.class_names[c] for c in data.labels[i]) or "(no label)"


def first_per_label(labels: list[tuple[int, ...]], cap: int, n_labels: int) -> list[int]:
    """Multi-label items chosen so that each label shows on up to `cap` of them: an item is taken while one of its
    labels still has fewer (reading stops once every label has `cap`)."""
    seen, out = np.zeros(n_labels, dtype=np.int64), []
    for i, y in enumerate(labels):
        if any(seen[c] < cap for c in y):
            out.append(i)
            seen[list(y)] += 1
            if (seen >= cap).all():
                break
    return out


def label_report(data: LabelledImages) -> dict:
    """What the Data tab shows about labels: images per label, co-occurrence (labels x labels: images carrying
    both; the diagonal is the count), images with no label, how many labels images carry, and rare labels."""
    sets = [y if data.multi_label else (y,) for y in data.labels]
    onehot = np.zeros((len(sets), len(data.class_names)), dtype=np.int64)
    for row, y in enumerate(sets):
        onehot[row, list(y)] = 1
    per_image = onehot.sum(axis=1)
    counts = data.counts()
    return dict(multi_label=data.multi_label, images=len(data), labels=list(data.class_names), counts=counts,
                co_occurrence=(onehot.T @ onehot).tolist(), no_label=int((per_image == 0).sum()),
                labels_per_image={int(k): int(n) for k, n in enumerate(np.bincount(per_image)) if n},
                rare=[name for name, n in counts.items() if n < RARE_LABEL_IMAGES])


# ---------------------------------------------------------------------------------------------- holdout


def stratified_holdout(labels: list[int], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """A stratified holdout: about val_fraction of each class goes to validation (at least one, never all)."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"Validation fraction must be between 0 and 1 (got {val_fraction}).")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


def holdout(data: LabelledImages, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, validation) item indices: the source's own train and validation splits when it has them
    (val_fraction and seed are then unused), else a stratified holdout. The same dataset always gives the same."""
    if data.has_own_split():
        return sorted(data.splits["train"]), sorted(data.splits["validation"])
    if data.multi_label:
        return iterative_holdout(data.labels, len(data.class_names), val_fraction, seed)
    return stratified_holdout(data.labels, val_fraction, seed)


def iterative_holdout(labels: list[tuple[int, ...]], n_labels: int, val_fraction: float = 0.2,
                      seed: int = 0) -> tuple[list[int], list[int]]:
    """A holdout of multi-label items by iterative stratification (Sechidis et al. 2011): the rarest label's items
    are placed first, each where that label is most wanted, so every label is shared out close to val_fraction.
    A label on 2 or more images asks for at least one in validation, and a last pass moves an image across where
    a label still misses a side. Fully determined by (val_fraction, seed)."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"Validation fraction must be between 0 and 1 (got {val_fraction}).")
    rng = np.random.default_rng(seed)
    y = np.zeros((len(labels), n_labels), dtype=bool)
    for row, items in enumerate(labels):
        y[row, list(items)] = True
    per_label = y.sum(axis=0)
    want_val = np.where(per_label >= 2, np.maximum(1, np.round(per_label * val_fraction)), 0)
    wanted = np.stack([per_label - want_val, want_val]).astype(float)  # [train, validation] x labels
    room = np.array([1 - val_fraction, val_fraction]) * len(labels)
    side = np.full(len(labels), -1)
    while ((side < 0)[:, None] & y).any():
        left = ((side < 0)[:, None] & y).sum(axis=0)
        rarest = min(np.flatnonzero(left), key=lambda c: (left[c], rng.random()))
        for i in rng.permutation(np.flatnonzero((side < 0) & y[:, rarest])):
            s = _most_wanted(wanted[:, rarest], room, rng)
            side[i] = s
            wanted[s] -= y[i]
            room[s] -= 1
    for i in rng.permutation(np.flatnonzero(side < 0)):  # images with no label: where room is left
        side[i] = _most_wanted(room, room, rng)
        room[side[i]] -= 1
    _cover_both_sides(y, side)
    return np.flatnonzero(side == 0).tolist(), np.flatnonzero(side == 1).tolist()


def _most_wanted(wanted: np.ndarray, room: np.ndarray, rng) -> int:
    """The side (0 train, 1 validation) that wants it most, then the one with most room, then either."""
    return int(min((0, 1), key=lambda s: (-wanted[s], -room[s], rng.random())))


def _cover_both_sides(y: np.ndarray, side: np.ndarray) -> None:
    """Move an image across for each label on 2+ images that one side lacks, taking one whose other labels stay
    on the side it leaves (where no image can be moved without that, the label stays on one side)."""
    for c in np.flatnonzero(y.sum(axis=0) >= 2):
        for lacking in (1, 0):
            members = np.flatnonzero(y[:, c])
            if (side[members] == lacking).any():
                continue
            on_side = y & (side == 1 - lacking)[:, None]
            movable = [i for i in members if (on_side[:, y[i]].sum(axis=0) >= 2).all()]
            if movable and (side == 1 - lacking).sum() > 1:
                side[movable[0]] = lacking


def holdout_description(data: LabelledImages, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """What a model folder records so its holdout can be made again (see engine.train)."""
    if data.has_own_split():
        return dict(kind="dataset", note="the dataset's own train/validation split")
    if data.multi_label:
        return dict(kind="iterative_stratified", val_fraction=val_fraction, seed=seed,
                    note="iterative stratification (Sechidis et al. 2011) of the label sets")
    return dict(kind="stratified", val_fraction=val_fraction, seed=seed)


def own_splits(parts: dict[str, list[int]]) -> tuple[dict[str, list[int]], list[DataWarning]]:
    """Map a source's split names (train/val/valid/dev/test/...) to train/validation/test item lists.

    With no validation split, the test split validates (common public layouts ship train + test only).
    Returns the splits and notes for the user. Without a train split there is no own split: ({}, notes).
    """
    canon = {SPLIT_NAMES.get(name.lower(), name): items for name, items in parts.items()}
    if "train" not in canon or len(canon) < 2:
        return {}, []
    notes = []
    out = {"train": canon["train"]}
    if "validation" in canon:
        out["validation"] = canon["validation"]
        if "test" in canon:
            out["test"] = canon["test"]
    elif "test" in canon:
        out["validation"] = canon["test"]
        notes.append(DataWarning(SPLITS, "No validation split: the test split is used for validation."))
    unused = sorted(set(canon) - {"train", "validation", "test"})
    if unused:
        notes.append(DataWarning(SPLITS, f"Splits not used: {', '.join(unused)}."))
    return (out if "validation" in out else {}), notes


SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
               "valid": "validation", "dev": "validation", "test": "test", "testing": "test"}
