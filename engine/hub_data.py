"""Hugging Face Hub image datasets (and local copies of Hub dataset repos) as LabelledImages.

`datasets.load_dataset_builder` resolves the id (data files only: dataset scripts are refused by `datasets`
itself, and no remote code ever runs). The image column is the one with an `Image` feature; the label column
a `ClassLabel`, or strings / whole numbers encoded to classes; the user may name either. A label column of lists
(of ClassLabels, strings or whole numbers) gives multi-label data: each image's list is its set of labels. The
dataset's own train/validation(/test) splits are kept.

Big datasets: with `max_per_class` the splits are streamed and reading stops once every class has enough
(nothing else is downloaded); without it a dataset larger than MAX_DOWNLOAD_MB is refused with a message
that suggests the cap. Images stay encoded until decoding: streamed rows keep their bytes, downloaded ones
are read from the memory-mapped Arrow cache on demand.
"""
from __future__ import annotations

import bisect
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from engine import hub
from engine.errors import UserError
from engine.labelled import SKIPPED, SPLIT_NAMES, SPLITS, DataWarning, LabelledImages, first_per_class, own_splits, validate

MAX_DOWNLOAD_MB = int(os.environ.get("SNAPFIT_MAX_HUB_DOWNLOAD_MB", "2048"))
# A streamed read that fails is retried by huggingface_hub (5 times, 23 s in all), and datasets retries that whole
# read again, 20 times 5 s apart by default: a lost connection would keep someone waiting about 9 minutes. Once is
# enough here (about 25 s in all). datasets reads these two settings at each read (its maintainers' advice:
# huggingface/datasets#6172); a stream that cannot be opened is retried the same way.
STREAM_RETRIES, STREAM_RETRY_WAIT_S = 1, 1
LABEL_NAMES = ("label", "labels", "fine_label", "class", "classes", "category", "target", "y")
NOT_LABELS = ("id", "idx", "index", "file", "path", "url", "name", "caption", "text", "description", "prompt", "title")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # with hub: a legacy id without an owner is allowed too
INT_DTYPES = {f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)} | {"bool"}


def is_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source))


def is_repo_folder(path: Path) -> bool:
    """A local copy of a Hub dataset repo (parquet or arrow files), rather than a folder of class folders."""
    return path.is_dir() and any(next(path.glob(pattern), None) for pattern in
                                 ("*.parquet", "*/*.parquet", "*/*/*.parquet", "*.arrow", "*/*.arrow", "*/*/*.arrow"))


def offline_message(repo: str) -> str:
    return (f"Offline: the Hugging Face Hub cannot be reached, so the dataset '{repo}' cannot be downloaded (and no "
            "copy of it is cached here). Use a folder or .zip of class folders, or builtin:shapes.")


def lost_message(repo: str) -> str:
    return (f"The connection to the Hugging Face Hub was lost while downloading the dataset '{repo}'. Check your "
            "internet connection and try again.")


# ---------------------------------------------------------------------------------------------- columns


def find_image_column(features: dict, wanted: str | None = None) -> str:
    from datasets import Image

    names = [k for k, f in features.items() if isinstance(f, Image)]
    if wanted:
        if wanted not in features:
            raise UserError(f"There is no column '{wanted}'. Columns: {describe(features)}.")
        if wanted not in names:
            raise UserError(f"Column '{wanted}' holds {kind(features[wanted])}, not images. Columns: {describe(features)}.")
        return wanted
    if not names:
        raise UserError(f"This dataset has no image column. Columns: {describe(features)}.")
    return names[0]


def find_label_column(features: dict, wanted: str | None = None, image_col: str | None = None) -> str:
    """The column of class labels: named by the user, else a ClassLabel, else a list of ClassLabels (multi-label),
    else a string/integer column (or list of them) with a label-like name. Regression targets (decimals) are refused."""
    if wanted:
        if wanted not in features:
            raise UserError(f"There is no column '{wanted}'. Columns: {describe(features)}.")
        check_label_feature(wanted, features[wanted])
        return wanted
    candidates = [k for k in features if k != image_col]
    ranked = sorted(candidates, key=lambda k: LABEL_NAMES.index(k.lower()) if k.lower() in LABEL_NAMES else len(LABEL_NAMES))
    for k in ranked:  # a ClassLabel first (preferring the usual names), then a plain column with a usual name
        if kind(features[k]) == "class labels":
            return k
    for k in ranked:
        if kind(label_list(features[k])) == "class labels":
            return k
    for k in ranked:
        if k.lower() in LABEL_NAMES:
            check_label_feature(k, features[k])
            return k
    plain = [k for k in candidates if kind(features[k]) in ("text", "whole numbers") and not any(w in k.lower() for w in NOT_LABELS)]
    if len(plain) == 1:  # the only column that can hold labels (load_hub checks it does look like classes)
        return plain[0]
    raise UserError(f"This dataset has no label column Snapfit can use (class labels, or text / whole-number "
                    f"labels). Columns: {describe(features)}. Name the label column if it has another name.")


def check_label_feature(name: str, feature) -> None:
    what = kind(feature)
    if what in ("class labels", "text", "whole numbers"):
        return
    if what == "decimal numbers":
        raise UserError(f"Column '{name}' holds decimal numbers (a regression target), not classes: Snapfit trains "
                        "classifiers. Pick a column of class labels.")
    if what == "lists":
        inner = kind(label_list(feature))
        if inner in ("class labels", "text", "whole numbers"):
            return  # several labels per image (multi-label)
        raise UserError(f"Column '{name}' holds lists of {inner}, not lists of labels (class labels, text or whole "
                        "numbers). Pick a column of labels.")
    raise UserError(f"Column '{name}' holds {what}, not class labels.")


def label_list(feature):
    """The feature of a list column's items (None for a column that is not a list)."""
    from datasets import LargeList, List, Sequence

    if isinstance(feature, list):
        return feature[0] if feature else None
    return feature.feature if isinstance(feature, (List, LargeList, Sequence)) else None


def kind(feature) -> str:
    """A plain-words name for a column's type."""
    from datasets import ClassLabel, Image, LargeList, List, Sequence, Value

    if isinstance(feature, ClassLabel):
        return "class labels"
    if isinstance(feature, Image):
        return "images"
    if isinstance(feature, (List, LargeList, Sequence, list)):
        return "lists"
    if isinstance(feature, Value):
        if feature.dtype in ("string", "large_string"):
            return "text"
        if feature.dtype in INT_DTYPES:
            return "whole numbers"
        if feature.dtype.startswith(("float", "double", "decimal")):
            return "decimal numbers"
        return feature.dtype
    if isinstance(feature, dict):
        return "records"
    return type(feature).__name__


def describe(features: dict) -> str:
    return ", ".join(f"{k} ({kind(f)})" for k, f in features.items())


# ---------------------------------------------------------------------------------------------- loading


def load_hub(repo: str, *, config: str | None = None, split: str | None = None, image_column: str | None = None,
             label_column: str | None = None, max_per_class: int | None = None, progress=None) -> LabelledImages:
    """A Hub dataset id (`owner/name`), or the path of a local copy of a Hub dataset repo."""
    local = bool(repo) and Path(repo).is_dir()
    if not local and not HUB_NAME.match(repo):
        raise UserError(f"'{repo}' is not a Hub dataset id: give it as owner/name (e.g. hub:someone/cats).")
    if max_per_class is not None and (not isinstance(max_per_class, int) or max_per_class < 1):
        raise UserError(f"Images per class must be a whole number of at least 1 (got {max_per_class}).")
    builder = _builder(repo, config, local)
    if max_per_class is None and not local:
        _check_size(builder, repo)
    parts = _open_splits(builder, repo, split, streaming=max_per_class is not None)
    with _plain_errors(repo, downloading=True):  # a stream without a schema reads its first row here
        features = _features(next(iter(parts.values())))
    img_col = find_image_column(features, image_column)
    lab_col = find_label_column(features, label_column, img_col)
    reader = _read_streamed if max_per_class is not None else _read_downloaded
    rows = {name: reader(repo, name, ds, img_col, lab_col, features[lab_col], _cap(max_per_class, name, len(parts)), progress)
            for name, ds in parts.items()}
    data = _assemble(repo, rows, features[lab_col])
    if label_column is None and kind(features[lab_col]) not in ("class labels", "lists") and \
            len(data.class_names) > max(2, len(data) // 2):
        raise UserError(f"Column '{lab_col}' has {len(data.class_names)} different values for {len(data)} images: it does "
                        f"not look like class labels. Name the label column. Columns: {describe(features)}.")
    data.origin = dict(source=repo if local else f"hub:{repo}", config=config, split=split, image_column=img_col,
                       label_column=lab_col, max_per_class=max_per_class)
    return validate(data)


def _builder(repo: str, config: str | None, local: bool):
    import datasets

    if not local and not hub.is_offline() and not hub.probe():
        raise UserError(offline_message(repo))  # fail in a second instead of after 23 s of retries
    datasets.config.STREAMING_READ_MAX_RETRIES = datasets.config.STREAMING_OPEN_MAX_RETRIES = STREAM_RETRIES
    datasets.config.STREAMING_READ_RETRY_INTERVAL = datasets.config.STREAMING_OPEN_RETRY_INTERVAL = STREAM_RETRY_WAIT_S
    with _plain_errors(repo, config):
        return datasets.load_dataset_builder(repo, name=config)


@contextmanager
def _plain_errors(repo: str, config: str | None = None, downloading: bool = False):
    """Every failure of the block becomes one plain line (see _user_error); unknown kinds pass unchanged.
    `downloading`: the Hub answered a moment ago, so a network failure now means the connection broke."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted out by _user_error
        error = _user_error(repo, config, exc, downloading)
        if error is exc:
            raise
        raise error from exc


def _user_error(repo: str, config: str | None, exc: Exception, downloading: bool = False) -> Exception:
    """One line that says what went wrong and what to do, for the ways `datasets` fails to resolve or download
    a dataset (or `exc` itself, for a kind not known here)."""
    from datasets.exceptions import DataFilesNotFoundError, DatasetNotFoundError
    from huggingface_hub.utils import httpx as hub_httpx

    text = " ".join(str(exc).split()) or type(exc).__name__
    failure = hub.connection_failure(exc)
    if failure == "lost" or (failure and downloading):
        return UserError(lost_message(repo))
    if failure:
        return UserError(offline_message(repo))
    if isinstance(exc, DatasetNotFoundError) and "gated" in text:
        return UserError(f"Dataset '{repo}' is gated: accept its conditions on huggingface.co, then set HF_TOKEN.")
    if isinstance(exc, DatasetNotFoundError):
        return UserError(f"Dataset '{repo}' was not found on the Hub, or it is private: check the id (owner/name), "
                         "or set HF_TOKEN if it is yours.")
    if isinstance(exc, DataFilesNotFoundError) or type(exc).__name__ == "EmptyDatasetError":
        return UserError(f"Dataset '{repo}' has no data files Snapfit can read (parquet, arrow or image files).")
    if isinstance(exc, RuntimeError) and "scripts are no longer supported" in text:
        return UserError(f"Dataset '{repo}' needs a loading script, which is never run: pick a dataset stored as data "
                         "files (most image datasets on the Hub are).")
    if isinstance(exc, ValueError) and ("config" in text.lower() or "split" in text.lower()):
        return UserError(f"Dataset '{repo}': {_clean(text)}" + (f" (config asked for: {config})" if config else ""))
    if isinstance(exc, (OSError, ValueError, RuntimeError, hub_httpx.HTTPError)):
        return UserError(f"Could not load dataset '{repo}': {_clean(text)}")
    return exc


def _clean(text: str) -> str:
    return text if len(text) <= 300 else text[:300] + "..."


def _check_size(builder, repo: str) -> None:
    size = builder.info.download_size or builder.info.dataset_size
    if size and size > MAX_DOWNLOAD_MB * 1024**2:
        raise UserError(f"Dataset '{repo}' is {size / 1024**3:.1f} GB, over the {MAX_DOWNLOAD_MB / 1024:.1f} GB download "
                        "limit: give a number of images per class (max_per_class, e.g. 200) to stream only those.")


def _open_splits(builder, repo: str, split: str | None, streaming: bool) -> dict:
    """{split name: Dataset or IterableDataset}: the one asked for, or all of them."""
    with _plain_errors(repo, downloading=True):
        if streaming:
            parts = builder.as_streaming_dataset(split=split)
        else:
            builder.download_and_prepare()
            parts = builder.as_dataset(split=split)
    parts = {split: parts} if split is not None else dict(parts)
    order = ["train", "validation", "test"]  # keep a stable, familiar order
    return dict(sorted(parts.items(), key=lambda kv: order.index(SPLIT_NAMES.get(kv[0].lower(), "")) if
                       SPLIT_NAMES.get(kv[0].lower(), "") in order else len(order)))


def _features(ds) -> dict:
    features = ds.features
    if features is None:  # a stream whose files carry no schema: read the first row to learn it
        features = ds._resolve_features().features
    return features


def _cap(max_per_class: int | None, name: str, n_parts: int) -> int | None:
    """The cap applies to the training split; the others keep a quarter as many (at least 2) per class."""
    if max_per_class is None or n_parts == 1 or SPLIT_NAMES.get(name.lower()) == "train":
        return max_per_class
    return max(2, math.ceil(max_per_class / 4))


def _label_reader(feature):
    """raw value -> hashable class key, or None for a row without a label (ClassLabel -1 marks those). A list
    column gives a tuple of keys (its labels, sorted; empty for an image with none of them)."""
    from datasets import ClassLabel

    if label_list(feature) is not None:
        one = _label_reader(label_list(feature))
        return lambda v: None if v is None else tuple(sorted({one(x) for x in v} - {None}, key=_order))
    if isinstance(feature, ClassLabel):
        return lambda v: None if v is None or v < 0 else feature.int2str(int(v))
    return lambda v: None if v is None else unicodedata.normalize("NFC", v) if isinstance(v, str) else v


def _order(key):
    """Label keys in order: numbers in numeric order, before text."""
    return isinstance(key, str), key


def _room(key, counts: dict, cap: int) -> bool:
    """Whether a streamed row is still wanted: its class (or one of its labels) has fewer than `cap` images."""
    return any(counts.get(k, 0) < cap for k in key) if isinstance(key, tuple) else counts.get(key, 0) < cap


def _read_downloaded(repo, name, ds, img_col, lab_col, feature, cap, progress):
    """(label keys, images, item names) of a downloaded split; images stay in the Arrow cache until decoded."""
    from datasets import Image

    ds = ds.select_columns([img_col, lab_col]).cast_column(img_col, Image(decode=False))
    read = _label_reader(feature)
    keys = [read(v) for v in ds[lab_col]]
    rows = [r for r, k in enumerate(keys) if k is not None]
    if cap is not None:
        rows = first_per_class(rows, keys, cap)
    if progress:
        progress(len(keys), len(keys), f"reading {name}")
    return [keys[r] for r in rows], ArrowImages(ds, img_col, rows), [f"{name} row {r}" for r in rows], len(keys) - len(rows)


def _read_streamed(repo, name, ds, img_col, lab_col, feature, cap, progress):
    """Stream a split, keeping the first `cap` images of each class; stop as soon as every class has them."""
    from datasets import ClassLabel, Image

    ds = ds.select_columns([img_col, lab_col]).cast_column(img_col, Image(decode=False))
    read = _label_reader(feature)
    class_feature = label_list(feature) or feature
    n_classes = class_feature.num_classes if isinstance(class_feature, ClassLabel) else None
    keys, images, names, counts, unlabelled = [], [], [], {}, 0
    with _plain_errors(repo, downloading=True):  # a connection dropped mid-stream is one plain message too
        for r, row in enumerate(ds):
            if progress and r % 256 == 0:
                progress(r, None, f"reading {name}")
            key, item = read(row[lab_col]), _item(row[img_col])
            if key is None or item is None:
                unlabelled += 1
            elif _room(key, counts, cap):
                for k in key if isinstance(key, tuple) else (key,):
                    counts[k] = counts.get(k, 0) + 1
                keys.append(key), images.append(item), names.append(f"{name} row {r}")
            if n_classes and len(counts) == n_classes and all(c >= cap for c in counts.values()):
                break  # every class is full: read no further
    return keys, images, names, unlabelled


def _item(cell):
    """Encoded bytes, or a local path, of an Image cell read with decode=False."""
    if not cell:
        return None
    if cell.get("bytes"):
        return cell["bytes"]
    path = cell.get("path")
    return path if path and os.path.isfile(path) else None


class ArrowImages(Sequence):
    """The images of some rows of a downloaded split, read one by one from the memory-mapped Arrow cache: a
    large dataset costs no memory until it is decoded."""

    def __init__(self, ds, column: str, rows: list[int]) -> None:
        self.ds, self.column, self.rows = ds, column, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return _item(self.ds[self.rows[i]][self.column])


class Concat(Sequence):
    """Several sequences read as one (the splits of a dataset, one after the other)."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.starts = [0]
        for p in parts:
            self.starts.append(self.starts[-1] + len(p))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k][i - self.starts[k]]


def _assemble(repo: str, rows: dict, feature) -> LabelledImages:
    """One LabelledImages from the rows of every split, with the splits recorded."""
    from datasets import ClassLabel

    multi = label_list(feature) is not None
    class_feature = label_list(feature) if multi else feature
    all_keys = {k for keys, *_ in rows.values() for key in keys for k in (key if multi else (key,))}
    if isinstance(class_feature, ClassLabel):
        names = [n for n in class_feature.names if n in all_keys]  # the dataset's own class order
    else:
        names = sorted(all_keys, key=_order)  # numbers in numeric order
    index = {k: i for i, k in enumerate(names)}
    encode = (lambda key: tuple(sorted(index[k] for k in key))) if multi else index.__getitem__
    labels, images, item_names, parts, warnings = [], [], [], {}, []
    for name, (keys, imgs, row_names, unlabelled) in rows.items():
        if not keys:
            warnings.append(DataWarning(SPLITS, f"The {name} split has no labelled images; it is not used."))
            continue
        parts[name] = list(range(len(labels), len(labels) + len(keys)))
        labels += [encode(k) for k in keys]
        images.append(imgs)
        item_names += row_names
        if unlabelled:
            warnings.append(DataWarning(SKIPPED, f"Skipped {unlabelled} rows of the {name} split without a label or an "
                                        "image.", dict(rows=unlabelled)))
    data = LabelledImages([str(n) for n in names], Concat(images), labels, source=f"hub:{repo}", item_names=item_names,
                          multi_label=multi)
    data.splits, notes = own_splits(parts)
    data.warnings += warnings + notes
    return data
