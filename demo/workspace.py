"""Per-browser-session state, kept on the server and keyed by an unguessable id the browser holds.

`gr.State` is deep-copied per session and lost on reload, so it only carries the key; the heavy objects
(the dataset, its decoded tensors, the predictor) live here. The key is also kept in `gr.BrowserState`
so a reloaded page finds its workspace, and its running job, again. Each workspace has its own folder:
sessions never share data, models or files.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from engine.data import LabelledImages, load_builtin
from engine.predict import Predictor
from engine.train import Prepared, TrainConfig, ensure_prepared, prepare


@dataclass
class Workspace:
    key: str
    folder: Path
    dataset: LabelledImages | None = None
    prepared: dict = field(default_factory=dict)  # (img_size, val_fraction, seed) -> Prepared: see decoded()
    model_dir: Path | None = None
    predictor: Predictor | None = None
    train_settings: dict | None = None  # the Train tab's values of the latest run, restored after a reload
    model_split: tuple[float, int] = (0.2, 0)  # (val_fraction, seed) the model was trained with: its validation images
    evaluation: dict | None = None  # the latest evaluation, with its images (see demo/tabs/evaluate.py)
    lr_result: tuple | None = None  # (model, strategy, LRFinished) of the latest complete LR finder run
    touched: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_dataset(self, dataset: LabelledImages) -> None:
        with self.lock:
            self.dataset, self.prepared, self.evaluation = dataset, {}, None

    def dataset_or_builtin(self) -> LabelledImages:
        """The chosen dataset, or the built-in shapes when none was chosen (the app's default)."""
        if self.dataset is None:
            self.set_dataset(load_builtin())
        return self.dataset

    def decoded(self, cfg: TrainConfig):
        """The dataset decoded at cfg's size: once per session, reused by every later run (a generator, as
        engine.train.ensure_prepared: `prepared = yield from ws.decoded(cfg)`)."""
        key = prepared_key(cfg)
        if key not in self.prepared:
            self.prepared[key] = yield from ensure_prepared(self.dataset_or_builtin(), cfg)
        return self.prepared[key]

    def decode_now(self, cfg: TrainConfig, progress=None) -> Prepared:
        """Decode the dataset for cfg at once, reporting progress (the Data tab does it right after a load, to
        find unreadable and duplicated images); a run with the same size and split then starts without decoding."""
        key = prepared_key(cfg)
        if key not in self.prepared:
            self.prepared[key] = prepare(self.dataset_or_builtin(), cfg.img_size, cfg.val_fraction, cfg.seed,
                                         progress=progress, memory_budget_mb=cfg.memory_budget_mb)
        return self.prepared[key]

    def set_model(self, model_dir: str | Path, split: tuple[float, int] = (0.2, 0)) -> None:
        with self.lock:
            self.model_dir, self.predictor, self.model_split, self.evaluation = Path(model_dir), None, split, None

    def get_predictor(self) -> Predictor | None:
        with self.lock:
            if self.predictor is None and self.model_dir is not None:
                self.predictor = Predictor.from_folder(self.model_dir)
            return self.predictor


def prepared_key(cfg: TrainConfig) -> tuple:
    """What a decoded dataset depends on: a run with other values decodes again."""
    return cfg.img_size, cfg.val_fraction, cfg.seed


class Workspaces:
    def __init__(self, root: str | Path | None = None) -> None:
        root = root or os.environ.get("SNAPFIT_HOME") or Path(tempfile.gettempdir()) / "snapfit"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._items: dict[str, Workspace] = {}
        self._lock = threading.Lock()

    def get(self, key: str | None) -> Workspace:
        """The workspace for `key`, or a new one when the key is unknown (new session, or a restarted server)."""
        with self._lock:
            ws = self._items.get(key) if isinstance(key, str) else None
            if ws is None:
                key = uuid.uuid4().hex
                folder = self.root / key
                folder.mkdir(parents=True, exist_ok=True)
                ws = self._items[key] = Workspace(key, folder)
            ws.touched = time.time()
            return ws

    def known(self, key) -> bool:
        return isinstance(key, str) and key in self._items

    def drop(self, key: str) -> None:
        with self._lock:
            ws = self._items.pop(key, None)
        if ws:
            shutil.rmtree(ws.folder, ignore_errors=True)
