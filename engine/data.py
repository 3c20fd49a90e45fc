"""Data: sources -> labelled images -> validation holdout -> uint8 tensors decoded once -> batches.

Sources (`load`): `builtin:shapes`, or its multi-label kin `builtin:shapes-multi`; a folder or .zip of class
folders, or of train/ + val/ (+ test/) holding them (engine/folders.py); a Hugging Face Hub dataset id
`owner/name` or a local copy of a Hub dataset repo (engine/hub_data.py). Every image is decoded once
(engine/images.py: any mode to RGB, EXIF rotation, first GIF frame, JPEG draft mode for big photos),
square-cropped and resized to the working size, and kept as uint8 in memory (a 64 px image costs 12 KB) up to a
memory budget; beyond it, images are decoded again per batch with the same result. Augmentation then runs on
whole batches of tensors, which is far cheaper than per-image PIL transforms (benchmarks/data_pipeline.py).

`progress` callbacks are called as progress(done, total or None, stage) with stage a few plain words.
"""
from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine import images, labelled, sample
from engine.config import AUGMENTATIONS
from engine.errors import UserError
from engine.folders import MAX_ZIP_BYTES, MAX_ZIP_FILES, load_folder, load_zip, safe_extract  # noqa: F401 (API)
from engine.hub_data import is_hub_id, is_repo_folder, load_hub
from engine.images import DECODE_ERRORS, IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, open_rgb, to_square  # noqa: F401 (API)
from engine.labelled import DataWarning, LabelledImages, first_per_class, holdout, holdout_description, listed, validate  # noqa: F401 (API)

stratified_holdout = labelled.stratified_holdout
BUILTIN = "builtin:shapes"
BUILTIN_MULTI = "builtin:shapes-multi"
DEFAULT_MEMORY_BUDGET_MB = 2048  # decoded images kept in memory; SNAPFIT_MEMORY_BUDGET_MB overrides it
DECODE_THREADS = int(os.environ.get("SNAPFIT_DECODE_THREADS", min(8, os.cpu_count() or 1)))  # PIL decodes without the GIL


# ---------------------------------------------------------------------------------------------- sources


def load(source: str, *, config: str | None = None, split: str | None = None, image_column: str | None = None,
         label_column: str | None = None, max_per_class: int | None = None, progress=None) -> LabelledImages:
    """Load `builtin:shapes` (or `builtin:shapes-multi`), a folder or .zip of class folders, or a Hub dataset
    (`owner/name`, `hub:owner/name`, or a local copy of a Hub dataset repo). config, image_column, label_column and max_per_class are for Hub
    datasets; split picks one split of a source that has several (a Hub split name, or train/val/test folders)."""
    source = (source or "").strip()
    hub_options = dict(config=config, image_column=image_column, label_column=label_column, max_per_class=max_per_class)
    if source.startswith("hub:"):
        return load_hub(source[4:].strip(), split=split, progress=progress, **hub_options)
    path = Path(os.path.expanduser(source)) if source else None
    if path is not None and is_repo_folder(path):
        return load_hub(str(path), split=split, progress=progress, **hub_options)
    if any(v is not None for v in hub_options.values()):
        given = ", ".join(k for k, v in hub_options.items() if v is not None)
        if not is_hub_id(source):
            raise UserError(f"{given}: only for Hub datasets (owner/name), not for '{source or BUILTIN}'.")
    if not source or source in (BUILTIN, "builtin"):
        if split is not None:
            raise UserError(f"The built-in dataset has no split '{split}' to pick.")
        return load_builtin()
    if source == BUILTIN_MULTI:
        if split is not None:
            raise UserError(f"The built-in dataset has no split '{split}' to pick.")
        return load_builtin_multi()
    if path.is_dir():
        return _with_origin(load_folder(path, split=split, progress=progress), source, split)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _with_origin(load_zip(path, split=split, progress=progress), source, split)
    if is_hub_id(source) and not path.exists():
        try:
            return load_hub(source, split=split, progress=progress, **hub_options)
        except UserError as exc:  # it may have been meant as a path: say that it is not one either
            raise UserError(f"{exc} (There is no folder or file '{source}' here either.)") from exc
    raise UserError(f"'{source}' is not a folder, a .zip, a Hub dataset id (owner/name) or {BUILTIN}. "
                    "Give a folder with one subfolder per class.")


def _with_origin(data: LabelledImages, source: str, split: str | None) -> LabelledImages:
    data.origin = dict(source=source, split=split)
    return data


def load_builtin(n_per_class: int = 150, seed: int = 0) -> LabelledImages:
    images, labels = sample.generate(n_per_class=n_per_class, seed=seed)
    return LabelledImages(list(sample.CLASSES), images, labels, source=BUILTIN, origin=dict(source=BUILTIN))


def load_builtin_multi(n_images: int = 900, seed: int = 0) -> LabelledImages:
    """The built-in multi-label set: one to three shapes per image, each image labelled with all it shows."""
    images, labels = sample.generate_multi(n_images=n_images, seed=seed)
    return LabelledImages(list(sample.CLASSES), images, labels, source=BUILTIN_MULTI, origin=dict(source=BUILTIN_MULTI),
                          multi_label=True)


def preview(data: LabelledImages, per_class: int = 4, size: int = 128) -> list[tuple[np.ndarray, str]]:
    """A few images of each class as (uint8 H x W x 3, class name), class by class, whatever the items are (paths,
    bytes, PIL). Multi-label data: images chosen so that each label shows, captioned with all their labels.
    Unreadable images are left out."""
    if data.multi_label:
        picks = labelled.first_per_label(data.labels, per_class, len(data.class_names))
    else:
        picks = first_per_class(range(len(data)), data.labels, per_class, len(data.class_names))
    tensors, _ = decode(data, sorted(picks, key=lambda i: data.labels[i]), size)
    return [(x.permute(1, 2, 0).numpy(), labelled.caption(data, i)) for x, i in zip(tensors.x, tensors.index)]


def originals(data: LabelledImages, indices, max_side: int, fallbacks=None) -> list[np.ndarray | None]:
    """The items' own images for people to look at (uint8 H x W x 3, aspect kept, longest side at most max_side),
    rather than the small squares a model works on. An item that no longer reads shows its entry of `fallbacks`
    (say, its decoded square) enlarged to max_side instead, or None when there are no fallbacks."""
    shown = []
    for k, i in enumerate(indices):
        try:
            shown.append(np.array(images.for_display(data.images[i], max_side)))
        except DECODE_ERRORS:
            square = None if fallbacks is None else Image.fromarray(np.asarray(fallbacks[k], dtype=np.uint8))
            shown.append(None if square is None else np.array(square.resize((max_side, max_side), Image.BICUBIC)))
    return shown


def fingerprint(data: LabelledImages, indices) -> str:
    """A short digest of what a run learns from: the class names and, per item, its class and its contents. The
    same pictures in another order give the same fingerprint; a relabelled, added or removed picture gives another.

    Cheap beside decoding, and the same at any working size: a file counts by its name in the source and its size
    (it is not read again), encoded bytes and in-memory pictures by a hash of them.
    """
    h = hashlib.blake2b("\0".join(data.class_names).encode(), digest_size=6)
    for entry in sorted(f"{_label_key(data, i)}\0{_content_key(data, i)}" for i in indices):
        h.update(entry.encode() + b"\n")
    return h.hexdigest()


def _label_key(data: LabelledImages, i: int) -> str:
    """Item i's class name, or (multi-label) its label names set apart by a character no name holds."""
    if data.multi_label:
        return "\x1f".join(data.class_names[c] for c in data.labels[i])
    return data.class_names[data.labels[i]]


def _content_key(data: LabelledImages, i: int) -> str:
    image = data.images[i]
    if isinstance(image, str):
        try:
            size = os.stat(image).st_size
        except OSError:  # gone since loading: decoding skips it anyway
            size = -1
        return f"{data.name(i)}\0{size}"
    if isinstance(image, (bytes, bytearray)):
        return hashlib.blake2b(image, digest_size=16).hexdigest()
    if isinstance(image, Image.Image):
        return f"{image.mode}{image.size}" + hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
    return data.name(i)


# ---------------------------------------------------------------------------------------------- decoding


def memory_budget_mb(value: int | None = None) -> int:
    """The memory decoded images may take: `value`, else $SNAPFIT_MEMORY_BUDGET_MB, else the default."""
    if value is None:
        text = os.environ.get("SNAPFIT_MEMORY_BUDGET_MB", str(DEFAULT_MEMORY_BUDGET_MB))
        if not text.strip().isdigit():
            raise UserError(f"SNAPFIT_MEMORY_BUDGET_MB must be a whole number of MB (got {text!r}).")
        value = int(text)
    return value


def fits_in_memory(n_images: int, size: int, budget_mb: int | None = None) -> bool:
    return n_images * 3 * size * size <= memory_budget_mb(budget_mb) * 1024**2


@dataclass
class Tensors:
    """Decoded images (uint8, N x 3 x S x S, or a LazyImages) and labels: int64 (N) class indices, or for a
    multi-label dataset float32 (N x labels) multi-hot rows.

    `index` holds each item's position in the LabelledImages, `digests` a hash of its decoded pixels."""

    x: torch.Tensor
    y: torch.Tensor
    index: list[int] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


class LazyImages:
    """Images decoded when a batch asks for them: what `decode` would have kept in memory, value for value,
    for datasets beyond the memory budget. Indexing with a batch of positions returns a uint8 tensor."""

    def __init__(self, data: LabelledImages, index: list[int], size: int, device=None) -> None:
        self.data, self.index, self.size, self.device = data, index, size, torch.device(device or "cpu")
        self.shape = (len(index), 3, size, size)
        self.dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.index)

    def to(self, device) -> LazyImages:
        return LazyImages(self.data, self.index, self.size, device)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, int):
            return self[[idx]][0]
        positions = range(*idx.indices(len(self))) if isinstance(idx, slice) else torch.as_tensor(idx).flatten().tolist()
        items = [self.index[p] for p in positions]
        out = np.empty((len(items), 3, self.size, self.size), dtype=np.uint8)
        for k, (arr, _) in enumerate(_decode_all(self.data, items, self.size)):
            if arr is None:
                raise UserError(f"{self.data.name(items[k])} could not be read any more (was it changed or removed "
                                "during training?).")
            out[k] = arr.transpose(2, 0, 1)
        return torch.from_numpy(out).to(self.device)


def _decode_one(data: LabelledImages, i: int, size: int) -> tuple[np.ndarray | None, bytes]:
    try:
        arr = to_square(data.images[i], size)
    except DECODE_ERRORS:
        return None, b""
    return arr, hashlib.blake2b(arr.tobytes(), digest_size=16).digest()


def _decode_all(data: LabelledImages, indices: list[int], size: int):
    """(array or None, digest) per item, in order; threads overlap the decoding (PIL releases the GIL)."""
    if DECODE_THREADS <= 1 or len(indices) < 8:
        return (_decode_one(data, i, size) for i in indices)
    pool = ThreadPoolExecutor(DECODE_THREADS)
    results = pool.map(lambda i: _decode_one(data, i, size), indices, chunksize=16)
    pool.shutdown(wait=False)  # map has queued every item; the pool's threads exit once it is drained
    return results


def decode(data: LabelledImages, indices, size: int, progress=None, lazy: bool = False) -> tuple[Tensors, list[str]]:
    """Decode the given items once. Unreadable images are skipped and their names returned.

    lazy: check every image now (decoding it once) but keep none; batches decode theirs when asked (LazyImages).
    """
    indices = list(indices)
    # Filled through numpy: a torch copy per image may wake its thread pool, which costs more than the copy
    x = None if lazy else np.empty((len(indices), 3, size, size), dtype=np.uint8)
    keep, digests, bad = [], [], []
    for n, (i, (arr, digest)) in enumerate(zip(indices, _decode_all(data, indices, size))):
        if arr is None:
            bad.append(data.name(i))
        else:
            if x is not None:
                x[len(keep)] = arr.transpose(2, 0, 1)
            keep.append(i)
            digests.append(digest)
        if progress and (n % 64 == 0 or n == len(indices) - 1):
            progress(n + 1, len(indices), "decoding" if not lazy else "checking images")
    if not keep:
        raise UserError("None of the images could be read.")
    if data.multi_label:
        y = torch.from_numpy(data.multi_hot(keep))
    else:
        y = torch.tensor([data.labels[i] for i in keep], dtype=torch.int64)
    x = LazyImages(data, keep, size) if lazy else torch.from_numpy(x[: len(keep)])
    return Tensors(x, y, keep, digests), bad


def decode_train_val(data: LabelledImages, train_idx, val_idx, size: int, progress=None, memory_budget: int | None = None):
    """Decode a train/validation split once: (train Tensors, val Tensors, unreadable names, warnings).

    Lazy beyond the memory budget. Warns about unreadable images (and records them on `data`) and about
    validation images identical to training images (their accuracy would flatter the model)."""
    lazy = not fits_in_memory(len(train_idx) + len(val_idx), size, memory_budget)
    train, bad_t = decode(data, train_idx, size, progress, lazy=lazy)
    val, bad_v = decode(data, val_idx, size, lazy=lazy)
    bad, warnings = bad_t + bad_v, []
    if lazy:
        warnings.append(DataWarning(labelled.OVER_MEMORY_BUDGET, f"{len(train) + len(val)} images at {size} px exceed "
                                    f"the memory budget of {memory_budget_mb(memory_budget)} MB: they are decoded again "
                                    "for every batch (slower).", dict(images=len(train) + len(val), size=size)))
    if bad:
        warnings.append(DataWarning(labelled.SKIPPED, f"Skipped {len(bad)} unreadable images: {listed(bad)}.",
                                    dict(files=len(bad)), files=bad[:labelled.LIST_LIMIT]))
        data.skipped += [b for b in bad if b not in data.skipped]
        if warnings[-1] not in data.warnings:
            data.warnings.append(warnings[-1])
    same = identical(train, val)
    if same:
        pairs = [f"{data.name(v)} = {data.name(t)}" for v, t in same]
        warnings.append(DataWarning(labelled.DUPLICATES, f"{len(same)} validation images are identical to training "
                                    f"images (validation accuracy will look better than it is): {listed(pairs, 5)}.",
                                    dict(images=len(same))))
    return train, val, bad, warnings


def identical(train: Tensors, val: Tensors) -> list[tuple[int, int]]:
    """(validation item, training item) pairs whose decoded pixels are identical, as dataset indices."""
    seen = {d: i for d, i in zip(train.digests, train.index)}
    return [(i, seen[d]) for d, i in zip(val.digests, val.index) if d in seen]


# ---------------------------------------------------------------------------------------------- batches



def augment(x: torch.Tensor, preset: str, generator: torch.Generator) -> torch.Tensor:
    """Random flips, scale/shift/rotation and brightness/contrast on a float batch (B, 3, H, W) in [0, 1].

    One affine grid_sample for the whole batch replaces per-image PIL crops and rotations.
    """
    if preset == "none":
        return x
    b = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
    strength = 1.0 if preset == "standard" else 0.5
    scale = 1.0 - strength * 0.25 * rand(b)  # zoom in by up to 25 %
    angle = (rand(b) - 0.5) * 2 * math.radians(30 * strength)
    shift = (rand(b, 2) - 0.5) * 2 * 0.1 * strength
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if preset == "standard":
        brightness = 1.0 + (rand(b, 1, 1, 1) - 0.5) * 0.4
        contrast = 1.0 + (rand(b, 1, 1, 1) - 0.5) * 0.4
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * brightness
    return x.clamp_(0.0, 1.0) if preset == "standard" else x  # bilinear samples of [0, 1] stay in [0, 1]


def augmentation_preview(data: LabelledImages, preset: str, size: int, n: int = 4, copies: int = 3, seed: int = 0):
    """`n` training images, each shown as decoded and then as `copies` augmented variants, exactly as the
    training loop augments them. Returns [(uint8 H x W x 3 array, caption)]."""
    if preset not in AUGMENTATIONS:
        raise UserError(f"Augmentation must be one of {', '.join(AUGMENTATIONS)} (got {preset!r}).")
    train, _ = holdout(data, seed=seed)
    picks = np.random.default_rng(seed).choice(train, size=min(n, len(train)), replace=False)
    images, _ = decode(data, picks.tolist(), size)
    originals = images.x.float().div(255.0)
    generator = torch.Generator().manual_seed(seed)
    variants = [augment(originals.clone(), preset, generator) for _ in range(copies)]
    out = []
    for i, item in enumerate(images.index):
        name = labelled.caption(data, item)
        for k, batch in enumerate([originals, *variants]):
            array = (batch[i] * 255).round().byte().permute(1, 2, 0).numpy()
            out.append((array, f"{name}: original" if k == 0 else f"{name}: {preset} #{k}"))
    return out


class Normalizer:
    """uint8 batch -> float batch normalised with the model's own mean/std, optionally channels_last."""

    def __init__(self, mean, std, channels_last: bool = False) -> None:
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x * (1 / std) - mean / std in one pass (uint8 also scaled by 1/255): 3x faster than three tensor ops
        scale = 1.0 / (self.std * 255.0) if x.dtype == torch.uint8 else 1.0 / self.std
        x = torch.addcmul(-self.mean / self.std, x, scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """Downscale a float batch for progressive resizing (antialiased, so small sizes are not aliased)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False):
    """Index tensors for each batch of a dataset of n items."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
