"""Folders and zips of images, in the layouts public datasets use.

    root/cats/*.jpg, root/dogs/*.jpg                     classes are the folders
    root/wrapper/cats/..., root/wrapper/dogs/...         one wrapping folder (how most zips are made)
    root/train/cats/..., root/val/cats/..., root/test/.. the source's own split (val, valid, validation, dev)
    root/labels.csv, root/any/folders/*.jpg              several labels per image (engine/label_csv.py); the CSV
                                                         wins over folder names (also inside one wrapping folder)

Hidden files, `__MACOSX/` and `.DS_Store` are ignored; other files that are not images are skipped and
counted; image files whose header cannot be read, or that are too large, are skipped and listed by name.
"""
from __future__ import annotations

import csv
import io
import os
import stat
import unicodedata
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image

from engine.errors import UserError
from engine.images import IMAGE_SUFFIXES, problem
from engine.label_csv import CSV_NAME, format_labels, load_label_csv
from engine.labelled import LIST_LIMIT, SKIPPED, SPLIT_NAMES, DataWarning, LabelledImages, listed, own_splits, validate

MAX_ZIP_FILES = 100_000
MAX_ZIP_BYTES = 8 * 1024**3  # uncompressed total; zipfile never writes more than the sizes declared in the zip
JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini", "@eaDir"}


def ignored(name: str) -> bool:
    """Hidden files and folders, and the debris of macOS, Windows and NAS zips."""
    return name.startswith(".") or name in JUNK_NAMES


def _subdirs(folder: Path) -> list[Path]:
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and not ignored(d.name)]


def _files(folder: Path) -> list[Path]:
    """Visible files under `folder`, at any depth, in a stable order (symlinked folders are not followed)."""
    out = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not ignored(d))
        out += [Path(top) / n for n in sorted(names) if not ignored(n)]
    return out


def _unwrap(root: Path) -> Path:
    """Descend through single wrapping folders that hold nothing else (a lone class folder is not unwrapped)."""
    while True:
        subdirs = _subdirs(root)
        loose = any(f.is_file() and not ignored(f.name) for f in root.iterdir())
        if len(subdirs) != 1 or loose or not _subdirs(subdirs[0]):
            return root
        root = subdirs[0]


def _layout(root: Path) -> dict[str | None, Path]:
    """{split name: folder of class folders}; {None: root} when the folders are the classes themselves."""
    subdirs = _subdirs(root)
    names = [SPLIT_NAMES.get(d.name.lower()) for d in subdirs]
    if subdirs and all(names) and "train" in names:
        return {d.name: d for d in subdirs}
    return {None: root}


def load_folder(root: Path, split: str | None = None, progress=None) -> LabelledImages:
    """Classes are the subfolders of `root` (see the module docstring for the layouts understood).

    `split` keeps one of the source's own splits (e.g. "train" or "val"); the training split is then stratified.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder.")
    csv_path = _label_csv(root)
    if csv_path is not None:
        return _load_csv_folder(csv_path, split, progress)
    root = _unwrap(root)
    layout = _layout(root)
    if split is not None:
        layout = _one_split(layout, split, root)
    entries = []  # (split or None, class name, file)
    skipped: dict[str, list[str]] = {"not images": [], "unreadable": [], "too large": [], "outside class folders": []}
    for split_name, folder in layout.items():
        skipped["outside class folders"] += [str(f.relative_to(root)) for f in folder.iterdir() if f.is_file() and not ignored(f.name)]
        for class_dir in _subdirs(folder):
            name = unicodedata.normalize("NFC", class_dir.name)  # macOS zips store names decomposed
            entries += [(split_name, name, f) for f in _files(class_dir)]
    names, images, labels, parts = sorted({e[1] for e in entries}), [], [], {}
    for n, (split_name, name, f) in enumerate(entries):
        if progress and n % 256 == 0:
            progress(n, len(entries), "checking files")
        rel = str(f.relative_to(root))
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            skipped["not images"].append(rel)
            continue
        why = problem(f)
        if why:
            skipped["too large" if why.startswith("too large") else "unreadable"].append(rel)
            continue
        parts.setdefault(split_name, []).append(len(images))
        images.append(str(f))
        labels.append(names.index(name))
    used = sorted(set(labels))  # classes whose folders held no usable image are dropped
    remap = {old: new for new, old in enumerate(used)}
    data = LabelledImages([names[c] for c in used], images, [remap[y] for y in labels], source=str(root), folder=str(root),
                          skipped=[f for files in skipped.values() for f in files])
    if None not in layout:
        data.splits, notes = own_splits(parts)
        data.warnings += notes
    _warn_skipped(data, skipped)
    return validate(data)


def _label_csv(root: Path) -> Path | None:
    """A labels.csv at the top of `root`, or of the single wrapping folders around its contents."""
    while not (root / CSV_NAME).is_file():
        subdirs = _subdirs(root)
        if len(subdirs) != 1 or any(f.is_file() and not ignored(f.name) for f in root.iterdir()):
            return None
        root = subdirs[0]
    return root / CSV_NAME


def _load_csv_folder(csv_path: Path, split: str | None, progress) -> LabelledImages:
    if split is not None:
        raise UserError(f"'{csv_path.parent.name}' is labelled by {CSV_NAME}, which has no splits: there is no split "
                        f"'{split}' to pick.")
    data, skipped = load_label_csv(csv_path, _files(csv_path.parent), progress)
    data.skipped += [f for files in skipped.values() for f in files]
    _warn_skipped(data, {"outside class folders": [], **skipped})
    return validate(data)


def _one_split(layout: dict, split: str, root: Path) -> dict:
    if None in layout:
        raise UserError(f"'{root.name}' has no train/val/test folders, so there is no split '{split}' to pick.")
    wanted = SPLIT_NAMES.get(split.lower(), split.lower())
    chosen = {name: d for name, d in layout.items() if SPLIT_NAMES[name.lower()] == wanted}
    if not chosen:
        raise UserError(f"'{root.name}' has no split '{split}'. Its splits: {', '.join(layout)}.")
    return chosen


def _warn_skipped(data: LabelledImages, skipped: dict[str, list[str]]) -> None:
    def warn(files: list[str], message: str, named: bool = True) -> None:
        data.warnings.append(DataWarning(SKIPPED, message, dict(files=len(files)), files[:LIST_LIMIT] if named else ()))

    if skipped["not images"]:
        warn(skipped["not images"], f"Skipped {len(skipped['not images'])} files that are not images.", named=False)
    if skipped["outside class folders"]:
        warn(skipped["outside class folders"], f"Skipped {len(skipped['outside class folders'])} files that are not in a "
             f"class folder: {listed(skipped['outside class folders'])}.")
    if skipped["unreadable"]:
        warn(skipped["unreadable"], f"Skipped {len(skipped['unreadable'])} unreadable images: {listed(skipped['unreadable'])}.")
    if skipped["too large"]:
        warn(skipped["too large"], f"Refused {len(skipped['too large'])} images too large to decode safely (possible "
             f"decompression bombs): {listed(skipped['too large'])}.")


# ---------------------------------------------------------------------------------------------- zips


def _check_member(m: zipfile.ZipInfo, dest: Path) -> None:
    name = m.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and parts[0].endswith(":")) or \
            not (dest / name).resolve().is_relative_to(dest):
        raise UserError(f"The zip contains an unsafe path ({name}); refused.")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise UserError(f"The zip contains a symbolic link ({name}); refused.")


def safe_extract(zip_path: Path, dest: Path) -> Path:
    """Extract a zip, refusing path traversal, absolute paths, symlinks and size bombs before writing anything.

    Hidden files and `__MACOSX/` are not extracted.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{Path(zip_path).name} is not a valid zip file.") from exc
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise UserError(f"The zip holds {len(members)} entries; the limit is {MAX_ZIP_FILES}.")
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise UserError(f"The zip would unpack to {_size(total)}; the limit is {_size(MAX_ZIP_BYTES)}. Refused.")
        dest = Path(dest).resolve()
        for m in members:
            _check_member(m, dest)
        dest.mkdir(parents=True, exist_ok=True)
        keep = [m for m in members if not any(ignored(p) for p in PurePosixPath(m.filename).parts)]
        try:
            for m in keep:
                zf.extract(m, dest)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a corrupt member (bad CRC, truncated data)
            raise UserError(f"{Path(zip_path).name} is damaged ({exc}); make the zip again.") from exc
    return dest


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def load_zip(zip_path: Path, dest: Path | None = None, split: str | None = None, progress=None) -> LabelledImages:
    """A zip of one of the folder layouts, extracted to `dest` (default: next to the zip, without .zip)."""
    dest = Path(dest) if dest else Path(zip_path).with_suffix("")
    data = load_folder(safe_extract(zip_path, dest), split=split, progress=progress)
    data.source = str(zip_path)
    return data


FORMAT_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def write_zip(data: LabelledImages, path: str | Path) -> Path:
    """A dataset as a .zip of one folder per class (class/0001.jpg, ...): the layout `load_zip` reads back. Each
    picture keeps its own bytes (a file's, or an encoded image's); a decoded image in memory is written as PNG."""
    counts: dict[str, int] = {}
    path = Path(path)
    if data.multi_label:
        return _write_csv_zip(data, path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # pictures are compressed already
        for image, label in zip(data.images, data.labels):
            name = data.class_names[label]
            counts[name] = counts.get(name, 0) + 1
            raw, suffix = _encoded(image)
            zf.writestr(f"{name}/{counts[name]:04d}{suffix}", raw)
    return path


def _write_csv_zip(data: LabelledImages, path: Path) -> Path:
    """Multi-label data as images/0001.jpg, ... and a labels.csv naming each one's labels."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["image", "labels"])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for n, (image, label) in enumerate(zip(data.images, data.labels), start=1):
            raw, suffix = _encoded(image)
            zf.writestr(f"images/{n:04d}{suffix}", raw)
            writer.writerow([f"images/{n:04d}{suffix}", format_labels([data.class_names[c] for c in label])])
        zf.writestr(CSV_NAME, rows.getvalue())
    return path


def _encoded(image) -> tuple[bytes, str]:
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes(), Path(image).suffix.lower()
    if isinstance(image, (bytes, bytearray)):
        with Image.open(io.BytesIO(image)) as img:
            return bytes(image), FORMAT_SUFFIXES.get(img.format, ".img")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue(), ".png"
