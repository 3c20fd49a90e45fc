"""`labels.csv`: several labels per image (multi-label data), read from a folder or an unpacked zip.

Two forms, told apart by the header (image paths are relative to the CSV; images may sit in any subfolder):

    image,labels                        image,cat,dog,emu
    a.jpg,cat dog                       a.jpg,1,1,0
    pets/b.jpg,emu;dog                  pets/b.jpg,0,1,1
    c.jpg,                              c.jpg,0,0,0        (an image with none of the labels)

In the first, labels are separated by spaces, or by `;` (then a label may hold spaces). The second has one 0/1
column per label. Rows are numbered as a spreadsheet numbers them (the header is row 1).
"""
from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path, PurePosixPath

from engine.errors import UserError
from engine.images import IMAGE_SUFFIXES, problem
from engine.labelled import LIST_LIMIT, SKIPPED, DataWarning, LabelledImages, listed

CSV_NAME = "labels.csv"
IMAGE_COLUMNS = ("image", "filename", "file", "path")  # the first one found names the images
LIST_COLUMNS = ("labels", "label", "tags")  # a column of label lists; otherwise every other column is one label
ONES, ZEROS = {"1", "1.0", "true"}, {"0", "0.0", "false"}


def load_label_csv(csv_path: Path, files: list[Path], progress=None) -> tuple[LabelledImages, dict[str, list[str]]]:
    """The images and label sets `csv_path` names, with the files under its folder (`files`, at any depth) to
    look them up in. Returns the (unvalidated) multi-label dataset and the files skipped, by why."""
    folder = csv_path.parent
    header, rows = _read_rows(csv_path)
    image_col, label_cols = _columns(header)
    flags = not (len(label_cols) == 1 and header[label_cols[0]].lower() in LIST_COLUMNS)  # one 0/1 column per label
    on_disk = {_key(f.relative_to(folder).as_posix()): f for f in files}
    named, seen = [], {}  # named: (row number, relative path, label names)
    for number, row in rows:
        if len(row) != len(header):
            raise UserError(f"{CSV_NAME} row {number} has {len(row)} columns; the header has {len(header)}: "
                            f"{', '.join(header)}.")
        path = _image_path(row[image_col], number)
        if path in seen:
            raise UserError(f"{CSV_NAME} rows {seen[path]} and {number} both name {path}: give each image one row.")
        seen[path] = number
        names = _flag_labels(row, label_cols, header, number) if flags else _list_labels(row[label_cols[0]])
        named.append((number, path, names))
    if not named:
        raise UserError(f"{CSV_NAME} names no images: add one row per image under the header.")
    missing = [f"row {n}: {p}" for n, p, _ in named if p not in on_disk]
    if len(missing) == len(named):
        raise UserError(f"None of the {len(named)} images named in {CSV_NAME} exist (paths are relative to the folder "
                        f"holding {CSV_NAME}): {listed(missing, 5)}.")
    skipped: dict[str, list[str]] = {"not images": [], "unreadable": [], "too large": []}
    kept = []
    for k, (_, path, names) in enumerate(named):
        if progress and k % 256 == 0:
            progress(k, len(named), "checking files")
        if path not in on_disk:
            continue
        f = on_disk[path]
        why = "not images" if f.suffix.lower() not in IMAGE_SUFFIXES else problem(f)
        if why:
            skipped[why if why == "not images" else "too large" if why.startswith("too large") else "unreadable"].append(path)
        else:
            kept.append((f, names))
    if all(not names for _, names in kept):
        raise UserError(f"Every image in {CSV_NAME} has an empty label set: give each image its labels.")
    data = _dataset(kept, folder)
    declared = {_key(header[k]) for k in label_cols} if flags else {n for _, _, labels in named for n in labels}
    _warn(data, named, missing, on_disk, csv_path, skipped)
    absent = sorted(declared - set(data.class_names))
    if absent:
        data.warnings.append(DataWarning(SKIPPED, f"Labels on no usable image, left out: {listed(absent)}.",
                                         dict(labels=len(absent))))
    return data, skipped


def _read_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped) and the rows with their numbers (blank rows left out, but counted)."""
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        raise UserError(f"{CSV_NAME} is not UTF-8 text (byte {exc.start} cannot be read): save it as CSV UTF-8.") from exc
    first = text.split("\n", 1)[0]
    # a spreadsheet set to another locale may separate columns with ';' or tabs: take the one that finds `image`
    delimiter = next((d for d in (",", "\t", ";") if set(_clean(c) for c in first.split(d)) & set(IMAGE_COLUMNS)), ",")
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not records:
        raise UserError(f"{CSV_NAME} is empty: its first row must be a header such as image,labels.")
    header = [c.strip() for c in records[0]]
    return header, [(n, [c.strip() for c in r]) for n, r in enumerate(records[1:], start=2) if any(c.strip() for c in r)]


def _clean(cell: str) -> str:
    return cell.strip().strip('"').strip().lower()


def _columns(header: list[str]) -> tuple[int, list[int]]:
    """(the image column, the label columns) of a header."""
    lower = [c.lower() for c in header]
    image_col = next((lower.index(n) for n in IMAGE_COLUMNS if n in lower), None)
    if image_col is None:
        raise UserError(f"{CSV_NAME} has no 'image' column. Its header: {', '.join(header) or '(empty)'}. The first row "
                        "must be a header such as image,labels (or image,cat,dog,... with one 0/1 column per label).")
    listing = next((lower.index(n) for n in LIST_COLUMNS if n in lower), None)
    if listing is not None:
        return image_col, [listing]
    label_cols = [k for k in range(len(header)) if k != image_col]
    if not label_cols:
        raise UserError(f"{CSV_NAME} has no label column. Its header: {', '.join(header)}. Add a 'labels' column, or "
                        "one 0/1 column per label.")
    empty = [k + 1 for k in label_cols if not header[k]]
    if empty:
        raise UserError(f"{CSV_NAME}: header column {empty[0]} has no name; name every label column.")
    twice = sorted({_key(header[k]) for k in label_cols if [_key(header[j]) for j in label_cols].count(_key(header[k])) > 1})
    if twice:
        raise UserError(f"{CSV_NAME}: the header names the label{'s' if len(twice) > 1 else ''} {', '.join(twice)} twice.")
    return image_col, label_cols


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", text)  # macOS stores names decomposed; spreadsheets write them composed


def _image_path(cell: str, number: int) -> str:
    """A row's image path, relative to the CSV's folder, in / form; refused when empty or leading outside it."""
    if not cell:
        raise UserError(f"{CSV_NAME} row {number} has no image path.")
    path = cell.replace("\\", "/")
    parts = PurePosixPath(path).parts
    if path.startswith("/") or (parts and parts[0].endswith(":")) or ".." in parts:
        raise UserError(f"{CSV_NAME} row {number}: '{cell}' leads outside the folder; give paths relative to "
                        f"the folder holding {CSV_NAME}.")
    return _key(PurePosixPath(*[p for p in parts if p != "."]).as_posix())


def _list_labels(cell: str) -> set[str]:
    """Labels separated by ';' (then a label may hold spaces) or else by spaces."""
    parts = cell.split(";") if ";" in cell else cell.split()
    return {_key(p.strip()) for p in parts if p.strip()}


def format_labels(names: list[str]) -> str:
    """A labels cell that `_list_labels` reads back as `names`: spaces between them, or ';' when one holds a space."""
    if not any(" " in n for n in names):
        return " ".join(names)
    return ";".join(names) + (";" if len(names) == 1 else "")


def _flag_labels(row: list[str], label_cols: list[int], header: list[str], number: int) -> set[str]:
    names = set()
    for k in label_cols:
        value = row[k].lower()
        if value in ONES:
            names.add(_key(header[k]))
        elif value not in ZEROS:
            raise UserError(f"{CSV_NAME} row {number}, column '{header[k]}': '{row[k]}' is not 0 or 1. Each label "
                            "column holds 1 (the image shows it) or 0.")
    return names


def _dataset(kept: list[tuple[Path, set[str]]], folder: Path) -> LabelledImages:
    names = sorted({n for _, labels in kept for n in labels})
    index = {n: c for c, n in enumerate(names)}
    return LabelledImages(names, [str(f) for f, _ in kept], [tuple(sorted(index[n] for n in labels)) for _, labels in kept],
                          source=str(folder), folder=str(folder), multi_label=True)


def _warn(data: LabelledImages, named, missing, on_disk, csv_path: Path, skipped) -> None:
    """Rows naming no file, and images the CSV leaves out: skipped, and said (with a few names)."""
    if missing:
        data.warnings.append(DataWarning(SKIPPED, f"Skipped {len(missing)} rows of {CSV_NAME} naming images that do not "
                                         f"exist: {listed(missing, 5)}.", dict(rows=len(missing)), missing[:LIST_LIMIT]))
    listed_paths = {p for _, p, _ in named}
    left_out = sorted(p for p, f in on_disk.items()
                      if p not in listed_paths and f.suffix.lower() in IMAGE_SUFFIXES and f != csv_path)
    if left_out:
        data.warnings.append(DataWarning(SKIPPED, f"Skipped {len(left_out)} images that {CSV_NAME} does not list: "
                                         f"{listed(left_out, 5)}.", dict(files=len(left_out)), left_out[:LIST_LIMIT]))
    data.skipped += left_out
