"""Data: sources -> labelled images -> stratified split -> uint8 tensors decoded once -> batches.

Sources: `builtin:shapes`, a folder of class subfolders, or a .zip of one. Every image is decoded once,
converted to RGB whatever its mode, square-cropped and resized to the working size, and kept as uint8 in
memory (a 64 px image costs 12 KB). Augmentation then runs on whole batches of tensors, which is far
cheaper than per-image PIL transforms (benchmarks/).
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from engine import sample
from engine.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 50_000_000  # beyond this we refuse an image as a likely decompression bomb
MAX_ZIP_FILES = 100_000
MAX_ZIP_BYTES = 8 * 1024**3
BUILTIN = "builtin:shapes"


@dataclass
class LabelledImages:
    """A dataset before decoding: class names, and per item an image (PIL or path) and a label index."""

    class_names: list[str]
    images: list  # PIL.Image.Image | str path
    labels: list[int]
    source: str
    skipped: list[str] = field(default_factory=list)  # files that are not images or could not be read
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


# ---------------------------------------------------------------------------------------------- sources


def load(source: str) -> LabelledImages:
    """Load `builtin:shapes`, a folder of class subfolders, or a .zip holding one."""
    source = (source or "").strip()
    if not source or source in (BUILTIN, "builtin"):
        return load_builtin()
    if source.startswith("hub:"):
        raise UserError("Hub datasets are not supported yet: download the dataset as a folder or zip.")
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return load_folder(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return load_zip(path)
    raise UserError(f"'{source}' is not a folder, a .zip or {BUILTIN}. Give a folder with one subfolder per class.")


def load_builtin(n_per_class: int = 150, seed: int = 0) -> LabelledImages:
    images, labels = sample.generate(n_per_class=n_per_class, seed=seed)
    return LabelledImages(list(sample.CLASSES), images, labels, source=BUILTIN)


def _visible(path: Path) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def load_folder(root: Path) -> LabelledImages:
    """Classes are the subfolders of `root` (or of its single subfolder, a common zip layout)."""
    root = Path(root)
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d.relative_to(root))]
    if len(subdirs) == 1 and not any(f.is_file() for f in subdirs[0].iterdir() if _visible(f.relative_to(root))):
        return load_folder(subdirs[0])  # a single wrapping folder: descend into it
    images, labels, skipped, names = [], [], [], []
    for d in subdirs:
        files = [f for f in sorted(d.rglob("*")) if f.is_file() and _visible(f.relative_to(root))]
        good = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [str(f.relative_to(root)) for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        if good:
            names.append(d.name)
            images += [str(f) for f in good]
            labels += [len(names) - 1] * len(good)
    data = LabelledImages(names, images, labels, source=str(root), skipped=skipped)
    return validate(data)


def validate(data: LabelledImages) -> LabelledImages:
    if not data.labels:
        raise UserError("No images found. Put images in one subfolder per class (e.g. cats/, dogs/).")
    if len(data.class_names) < 2:
        raise UserError(f"Found only one class ({data.class_names[0]}): a classifier needs at least 2 subfolders.")
    small = [name for name, n in data.counts().items() if n < 2]
    if small:
        data.warnings.append(f"Classes with fewer than 2 images are kept out of validation: {', '.join(small)}.")
    if data.skipped:
        data.warnings.append(f"Skipped {len(data.skipped)} files that are not images.")
    return data


def safe_extract(zip_path: Path, dest: Path) -> Path:
    """Extract a zip, refusing path traversal, absolute paths, symlinks and size bombs."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{Path(zip_path).name} is not a valid zip file.") from exc
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise UserError(f"The zip holds {len(members)} entries; the limit is {MAX_ZIP_FILES}.")
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise UserError(f"The zip would unpack to more than {MAX_ZIP_BYTES // 1024**3} GB; refused.")
        dest = Path(dest).resolve()
        for m in members:
            target = (dest / m.filename).resolve()
            if m.filename.startswith(("/", "\\")) or ".." in Path(m.filename).parts or not target.is_relative_to(dest):
                raise UserError(f"The zip contains an unsafe path ({m.filename}); refused.")
            if stat.S_ISLNK(m.external_attr >> 16):
                raise UserError(f"The zip contains a symbolic link ({m.filename}); refused.")
        zf.extractall(dest)
    return dest


def load_zip(zip_path: Path, dest: Path | None = None) -> LabelledImages:
    dest = Path(dest) if dest else Path(zip_path).with_suffix("")
    data = load_folder(safe_extract(zip_path, dest))
    data.source = str(zip_path)
    return data


# ---------------------------------------------------------------------------------------------- images


def open_rgb(image) -> Image.Image:
    """Open a path or PIL image as upright RGB: EXIF rotation, first GIF frame, alpha on white, 16-bit scaled."""
    img = image if isinstance(image, Image.Image) else Image.open(image)
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise UserError(f"Image too large ({img.width}x{img.height}); the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels.")
    img.seek(0) if getattr(img, "is_animated", False) else None
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def to_square(image, size: int) -> np.ndarray:
    """Decode, center-crop to a square and resize to size x size: uint8 (size, size, 3)."""
    if not isinstance(image, Image.Image):
        image = Image.open(image)
        if image.format == "JPEG":
            image.draft("RGB", (size * 2, size * 2))  # let libjpeg decode at reduced scale: big photos decode ~4-8x faster
    img = open_rgb(image)
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)
    return np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays


@dataclass
class Tensors:
    """Decoded images (uint8, N x 3 x S x S) and labels (int64, N)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def decode(data: LabelledImages, indices, size: int, progress=None) -> tuple[Tensors, list[str]]:
    """Decode the given items once. Unreadable images are skipped and their names returned."""
    arrays, labels, bad = [], [], []
    indices = list(indices)
    for n, i in enumerate(indices):
        try:
            arrays.append(to_square(data.images[i], size))
            labels.append(data.labels[i])
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, UserError):
            bad.append(data.images[i] if isinstance(data.images[i], str) else f"item {i}")
        if progress and (n % 64 == 0 or n == len(indices) - 1):
            progress(n + 1, len(indices))
    if not arrays:
        raise UserError("None of the images could be read.")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return Tensors(x, torch.tensor(labels, dtype=torch.int64)), bad


# ---------------------------------------------------------------------------------------------- split


def split(labels: list[int], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Stratified split: about val_fraction of each class goes to validation (at least one, never all)."""
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


# ---------------------------------------------------------------------------------------------- batches

AUGMENTATIONS = ("none", "light", "standard")


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
    return x.clamp_(0.0, 1.0)


def augmentation_preview(data: LabelledImages, preset: str, size: int, n: int = 4, copies: int = 3, seed: int = 0):
    """`n` training images, each shown as decoded and then as `copies` augmented variants, exactly as the
    training loop augments them. Returns [(uint8 H x W x 3 array, caption)]."""
    if preset not in AUGMENTATIONS:
        raise UserError(f"Augmentation must be one of {', '.join(AUGMENTATIONS)} (got {preset!r}).")
    train, _ = split(data.labels, seed=seed)
    picks = np.random.default_rng(seed).choice(train, size=min(n, len(train)), replace=False)
    images, _ = decode(data, picks.tolist(), size)
    originals = images.x.float().div(255.0)
    generator = torch.Generator().manual_seed(seed)
    variants = [augment(originals.clone(), preset, generator) for _ in range(copies)]
    out = []
    for i, label in enumerate(images.y.tolist()):
        name = data.class_names[label]
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
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self.mean) / self.std
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
