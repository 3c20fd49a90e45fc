"""Per-browser-session state, kept on the server and keyed by an unguessable id the browser holds.

`gr.State` is deep-copied per session and lost on reload, so it only carries the key; the heavy objects
(the dataset, its decoded tensors, the predictor) live here. The key is also kept in `gr.BrowserState`
so a reloaded page finds its workspace, and its running job, again. Each workspace has its own folder:
sessions never share data, models or files.

A workspace nobody has used for `ttl` seconds (SNAPFIT_SESSION_TTL, default 4 hours) is dropped with its
folder by `sweep()`, unless a job of its session is still queued or running: disk and memory stay bounded
however many sessions come and go. The clock is injectable so tests need not wait.
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.data import LabelledImages, load_builtin
from engine.predict import Predictor
from engine.train import Decoded, TrainConfig, decode_once, ensure_decoded

log = logging.getLogger("snapfit.workspace")
DEFAULT_TTL = 4 * 3600.0  # seconds a session's files outlive its last use
KEY = re.compile(r"[0-9a-f]{32}")  # a workspace key (uuid4().hex), also its folder's name
MAX_RUNS = 10  # runs a session keeps with their model folders; beyond, the oldest not in use goes


def ttl_from_env() -> float:
    """SNAPFIT_SESSION_TTL in seconds; a bad value falls back to the default rather than crash the app."""
    raw = os.environ.get("SNAPFIT_SESSION_TTL", "").strip()
    try:
        ttl = float(raw) if raw else DEFAULT_TTL
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError
    except ValueError:
        log.warning("SNAPFIT_SESSION_TTL=%r is not a positive number of seconds; using %d", raw, DEFAULT_TTL)
        ttl = DEFAULT_TTL
    return ttl


@dataclass
class Workspace:
    key: str
    folder: Path
    dataset: LabelledImages | None = None
    decode_cache: dict = field(default_factory=dict)  # (img_size, val_fraction, seed) -> Decoded: see decoded()
    model_dir: Path | None = None
    predictor: Predictor | None = None
    train_settings: dict | None = None  # the Train tab's values of the latest run, restored after a reload
    model_split: tuple[float, int] = (0.2, 0)  # (val_fraction, seed) the model was trained with: its validation images
    evaluation: dict | None = None  # the latest evaluation, with its images (see demo/actions.py)
    lr_result: tuple | None = None  # (model, strategy, LRFinished) of the latest complete LR finder run
    runs: list = field(default_factory=list)  # this session's trainings that saved a model: see add_run()
    runs_started: int = 0  # runs numbered so far: a run keeps its number when older ones are dropped
    data_versions: dict = field(default_factory=dict)  # data fingerprint -> version number, in order of first use
    runs_chosen: list = field(default_factory=list)  # the runs whose curves the Train tab overlays (their folder names)
    first_model_job: str | None = None  # the job id of the Data tab's "first model" run, re-attached after a reload
    weights_file: Path | None = None  # a weights file uploaded on the Train tab: its Weights choice "your file"
    last_run: tuple | None = None  # (TrainConfig, model folder, label) of the latest training: what Resume goes on with
    cleaning: object | None = None  # the Clean tab's view of the dataset and the changes chosen (demo/handlers/clean.py)
    capture: object | None = None  # the Capture tab's pictures and live model (demo/handlers/capture.py)
    touched: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_dataset(self, dataset: LabelledImages) -> None:
        with self.lock:
            self.dataset, self.decode_cache, self.evaluation = dataset, {}, None

    def dataset_or_builtin(self) -> LabelledImages:
        """The chosen dataset, or the built-in shapes when none was chosen (the app's default)."""
        if self.dataset is None:
            self.set_dataset(load_builtin())
        return self.dataset

    def decoded(self, cfg: TrainConfig):
        """The dataset decoded at cfg's size: once per session, reused by every later run (a generator, as
        engine.train.ensure_decoded: `decoded = yield from ws.decoded(cfg)`)."""
        key = decoded_key(cfg)
        if key not in self.decode_cache:
            self.decode_cache[key] = yield from ensure_decoded(self.dataset_or_builtin(), cfg)
        return self.decode_cache[key]

    def decode_now(self, cfg: TrainConfig, progress=None) -> Decoded:
        """Decode the dataset for cfg at once, reporting progress (the Data tab does it right after a load, to
        find unreadable and duplicated images); a run with the same size and split then starts without decoding."""
        key = decoded_key(cfg)
        if key not in self.decode_cache:
            self.decode_cache[key] = decode_once(self.dataset_or_builtin(), cfg.img_size, cfg.val_fraction, cfg.seed,
                                         progress=progress, memory_budget_mb=cfg.memory_budget_mb)
        return self.decode_cache[key]

    def set_model(self, model_dir: str | Path, split: tuple[float, int] = (0.2, 0), predictor: Predictor | None = None) -> None:
        """Use this model folder from now on (`predictor`: already loaded from it, if the caller has one)."""
        with self.lock:
            self.model_dir, self.predictor, self.model_split, self.evaluation = Path(model_dir), predictor, split, None

    def add_run(self, run: dict) -> None:
        """Remember a training that saved a model (label, model, img_size, val_acc, seconds, status, model_dir, data
        fingerprint...: demo/actions.py, run_record): the Train tab lists them side by side. A run that saved several
        times (a stopped or failed one) is listed once. Beyond MAX_RUNS the oldest run goes with its folder, unless
        it is the model in use."""
        with self.lock:
            earlier = next((r for r in self.runs if r["model_dir"] == run["model_dir"]), None)
            if earlier is None:
                self.runs_started += 1
                self.runs_chosen.append(Path(run["model_dir"]).name)  # a new run joins the overlaid curves
            run = dict(run, number=earlier["number"] if earlier else self.runs_started)
            if run.get("data"):
                self.data_versions.setdefault(run["data"], len(self.data_versions) + 1)
            self.runs = [r for r in self.runs if r is not earlier] + [run]
            in_use = str(self.model_dir)
            dropped = []
            while len(self.runs) > MAX_RUNS:
                oldest = next(r for r in self.runs if r["model_dir"] != in_use)
                self.runs.remove(oldest)
                dropped.append(oldest["model_dir"])
            self.runs_chosen = [c for c in self.runs_chosen if c not in {Path(d).name for d in dropped}]
        for folder in dropped:  # outside the lock: a slow disk holds up no other request of the session
            shutil.rmtree(folder, ignore_errors=True)
            Path(f"{folder}.zip").unlink(missing_ok=True)

    def run_named(self, name: str) -> dict | None:
        """The run whose model folder has this name (what the page's choices hold: never a server path)."""
        return next((r for r in self.runs if Path(r["model_dir"]).name == name), None)

    def get_predictor(self) -> Predictor | None:
        with self.lock:
            if self.predictor is None and self.model_dir is not None:
                self.predictor = Predictor.from_folder(self.model_dir)
            return self.predictor


def decoded_key(cfg: TrainConfig) -> tuple:
    """What a decoded dataset depends on: a run with other values decodes again."""
    return cfg.img_size, cfg.val_fraction, cfg.seed


class Workspaces:
    def __init__(self, root: str | Path | None = None, ttl: float | None = None, clock: Callable[[], float] = time.time) -> None:
        root = root or os.environ.get("SNAPFIT_HOME") or Path(tempfile.gettempdir()) / "snapfit"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl_from_env() if ttl is None else float(ttl)
        self.clock = clock
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
            ws.touched = self.clock()
            return ws

    def known(self, key) -> bool:
        return isinstance(key, str) and key in self._items

    def drop(self, key: str) -> None:
        with self._lock:
            ws = self._items.pop(key, None)
        if ws:
            shutil.rmtree(ws.folder, ignore_errors=True)

    def sweep(self, last_active: Callable[[str], float | None] = lambda key: None) -> list[str]:
        """Drop workspaces idle for more than `ttl`, and folders under `root` that no workspace owns (left by an
        earlier server run) once they are that old. Returns the dropped keys.

        `last_active(key)`: when the session's last job ended, math.inf while one is queued or running (the
        JobManager's `last_active`), None without jobs. A session is idle from the later of its last request
        and its last job's end, so a long training run keeps its files however long it takes.
        """
        now, dropped = self.clock(), []
        with self._lock:  # get() touches under the same lock, so a workspace in use is never taken away
            for key, ws in list(self._items.items()):
                if now - max(ws.touched, last_active(key) or 0.0) > self.ttl:
                    dropped.append(self._items.pop(key))
            owned = set(self._items)
        for ws in dropped:
            shutil.rmtree(ws.folder, ignore_errors=True)
        for folder in self.root.iterdir():  # only folders named like a workspace: SNAPFIT_HOME may hold other things
            if KEY.fullmatch(folder.name) and folder.is_dir() and folder.name not in owned and _age(folder, now) > self.ttl:
                shutil.rmtree(folder, ignore_errors=True)
        if dropped:
            log.info("dropped %d idle workspace(s); %d remain", len(dropped), len(owned))
        return [ws.key for ws in dropped]


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
