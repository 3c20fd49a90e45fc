"""Training: `fit()` turns labelled images and a TrainConfig into a model folder, yielding events as it goes.

Strategies (one `strategy` parameter):
  head         frozen backbone: embed every image once, then train the classifier on cached features;
               epochs after the embedding pass cost milliseconds.
  finetune     fastai's recipe: `freeze_epochs` head-only epochs (on cached features here), then all layers
               with discriminative learning rates (stem at lr/lr_mult ... head at lr, geometric), one-cycle.
  full         one-cycle on all parameters (the default from scratch).
  progressive  one more layer group is unfrozen from the top at every epoch.
Layer groups come from timm's `group_matcher`; frozen groups keep their BatchNorm statistics frozen.

The model folder holds the best epoch (highest validation accuracy). A run that fails after an epoch ended
still writes that epoch, yields SavedBeforeFailure, and then raises the error that ended it (in one process:
under torchrun saving needs all of them, and the failure may be that one is gone).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from engine import checkpoint as checkpoint_lib
from engine import data as data_lib
from engine import distributed, models, small_conv
from engine.errors import UserError
from engine.evaluate import confusion_matrix, per_class_accuracy
from engine.events import EpochEnd, Finished, Log, Paused, SavedBeforeFailure, Started, Step, Stopped
from engine.export import save_model_folder
from engine.stopping import StopToken

STRATEGIES = ("head", "finetune", "full", "progressive")
log = logging.getLogger("snapfit.train")

# A linear head on cached features learns best with a much higher LR than fine-tuning (sign-digits, 20 photos per
# class, tf_efficientnet_lite0 at 224 px, 30 epochs: 2e-3 68 %, 1e-2 88 %, 3e-2 90 %, 1e-1 72 %).
HEAD_LR = 3e-2

# Named starting points; the app's Train tab offers them and the CLI's --recipe takes their names. A recipe gives
# only the values that differ from TrainConfig's defaults. Measured in benchmarks/pretrained_recipes.py (README).
RECIPES = {
    # ImageNet EfficientNet-Lite0 (built in, engine/embedded.py), frozen; a linear head on its 224 px features.
    # About a minute on 2 CPU cores for 2,000 photos, seconds for 200.
    "quick": dict(model="tf_efficientnet_lite0.in1k", weights="pretrained", strategy="head", epochs=30, img_size=224,
                  batch_size=32),
    # The same head first, then the whole network fine-tuned with its BatchNorm statistics kept (about 10 minutes).
    "best": dict(model="tf_efficientnet_lite0.in1k", weights="pretrained", strategy="finetune", freeze_epochs=30,
                 epochs=3, lr=2e-4, lr_mult=1.0, img_size=224, batch_size=32),
    # A small ResNet from scratch at 48 px: on the built-in shapes about 97 % validation accuracy in ~14 s on
    # 2 CPU cores (tests/engine/test_train.py asserts the accuracy). For demos and tests, not for photos.
    "scratch": dict(model="resnet10t.c3_in1k", weights="scratch", epochs=12, lr=1e-2, batch_size=64, img_size=48),
}
DEFAULT_RECIPE = "quick"
SCRATCH_RECIPE = RECIPES["scratch"]


@dataclass
class TrainConfig:
    model: str = "resnet18"
    weights: str = "scratch"  # "pretrained" | "scratch" | path to a weights file or model folder
    strategy: str = "auto"  # one of STRATEGIES; "auto": finetune with loaded weights, full from scratch
    epochs: int = 5
    lr: float | None = None  # peak LR of the head (of every layer for `full`); None = resolved_lr()
    head_lr: float | None = None  # peak LR of finetune's head-only epochs on cached features; None = HEAD_LR
    batch_size: int = 64
    img_size: int = 64
    val_fraction: float = 0.2
    augment: str = "none"  # none | light | standard; short runs learn faster without (benchmarks/vs_fastai.py)
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    mixup: float = 0.0  # timm Mixup alpha; 0 = off
    cutmix: float = 0.0  # timm CutMix alpha; 0 = off
    progressive_resize: bool = False  # start at half size, finish at img_size
    freeze_epochs: int = 1  # finetune: head-only epochs before unfreezing
    freeze_layers: int = 0  # first K layer groups stay frozen throughout
    freeze_bn: bool | None = None  # BatchNorm statistics stay as loaded; None = with loaded weights (see models.train_mode)
    lr_mult: float = 100.0  # discriminative LRs: stem at lr / lr_mult
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    patience: int = 0  # early stopping on validation loss; 0 = off
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    accum_steps: int = 1
    bf16: bool | None = None  # None = where the hardware supports it
    channels_last: bool | None = None  # None = with bf16 (faster there; in fp32 on a CPU it is slower)
    seed: int = 0
    memory_budget_mb: int | None = None  # decoded images kept in memory; beyond, decoded per batch. None: engine.data default

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
        return cls(**values).checked()

    def resolved_strategy(self) -> str:
        if self.strategy == "auto":
            return "full" if self.weights in ("scratch", "", None) else "finetune"
        return self.strategy

    def resolved_lr(self) -> float:
        """The LR to use: the one given, else 1e-2 from scratch (measured best for short scratch runs, see
        benchmarks/vs_fastai.py), HEAD_LR for a head on cached features, or fastai fine_tune's 2e-3 with loaded
        weights."""
        if self.lr is not None:
            return self.lr
        if self.weights in ("scratch", "", None):
            return 1e-2
        return HEAD_LR if self.resolved_strategy() == "head" else 2e-3

    def resolved_head_lr(self) -> float:
        return HEAD_LR if self.head_lr is None else self.head_lr

    def resolved_freeze_bn(self) -> bool:
        return self.weights not in ("scratch", "", None) if self.freeze_bn is None else self.freeze_bn

    def checked(self) -> TrainConfig:
        """Raise a UserError naming the first bad value and the range that would work."""
        rules = [
            (self.strategy in STRATEGIES + ("auto",), f"strategy must be one of {', '.join(STRATEGIES)} (got {self.strategy!r})"),
            (_is_int(self.epochs) and 1 <= self.epochs <= 1000, f"epochs must be a whole number from 1 to 1000 (got {self.epochs})"),
            (self.lr is None or (_is_num(self.lr) and 1e-8 <= self.lr <= 10), f"learning rate must be between 1e-8 and 10 (got {self.lr})"),
            (self.head_lr is None or (_is_num(self.head_lr) and 1e-8 <= self.head_lr <= 10),
             f"head learning rate must be between 1e-8 and 10 (got {self.head_lr})"),
            (_is_int(self.batch_size) and 2 <= self.batch_size <= 4096, f"batch size must be from 2 to 4096 (got {self.batch_size})"),
            (_is_int(self.img_size) and 16 <= self.img_size <= 1024, f"image size must be from 16 to 1024 px (got {self.img_size})"),
            (_is_num(self.val_fraction) and 0.01 <= self.val_fraction <= 0.9, f"validation fraction must be 0.01-0.9 (got {self.val_fraction})"),
            (self.augment in data_lib.AUGMENTATIONS, f"augmentation must be one of {', '.join(data_lib.AUGMENTATIONS)}"),
            (_is_num(self.weight_decay) and 0 <= self.weight_decay <= 1, "weight decay must be between 0 and 1"),
            (_is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (_is_num(self.mixup) and _is_num(self.cutmix) and self.mixup >= 0 and self.cutmix >= 0, "mixup/cutmix must be >= 0"),
            (_is_int(self.freeze_epochs) and self.freeze_epochs >= 0, "freeze epochs must be >= 0"),
            (_is_int(self.freeze_layers) and self.freeze_layers >= 0, "freeze layers must be >= 0"),
            (_is_num(self.lr_mult) and self.lr_mult >= 1, "discriminative LR ratio (lr_mult) must be >= 1"),
            (_is_num(self.drop_rate) and 0 <= self.drop_rate < 1, "drop rate must be in [0, 1)"),
            (_is_num(self.drop_path_rate) and 0 <= self.drop_path_rate < 1, "drop path rate must be in [0, 1)"),
            (_is_int(self.patience) and self.patience >= 0, "patience must be >= 0"),
            (_is_num(self.grad_clip) and self.grad_clip >= 0, "gradient clipping must be >= 0"),
            (_is_int(self.accum_steps) and 1 <= self.accum_steps <= 256, "gradient accumulation steps must be 1-256"),
            (self.memory_budget_mb is None or (_is_int(self.memory_budget_mb) and self.memory_budget_mb >= 0),
             "memory budget must be a whole number of MB (0: decode every batch)"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserError(message[0].upper() + message[1:] + ".")
        return self


def preflight(cfg: TrainConfig) -> TrainConfig:
    """Everything that can be checked before any image is decoded: values, model name, weight source."""
    cfg.checked()
    models.check_name(cfg.model)
    if cfg.weights == "pretrained":
        models.check_pretrained_reachable(cfg.model)
    return cfg


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------- setup


@dataclass
class Prepared:
    """A split dataset decoded once at one size; reusable across LR finding and training runs."""

    class_names: list[str]
    train: data_lib.Tensors
    val: data_lib.Tensors
    img_size: int
    skipped: list[str]
    warnings: list[str] = field(default_factory=list)
    data_info: dict = field(default_factory=dict)  # source and split, written to metrics.json to make them again


def prepare(data: data_lib.LabelledImages, img_size: int, val_fraction: float = 0.2, seed: int = 0, progress=None,
            memory_budget_mb: int | None = None) -> Prepared:
    train_idx, val_idx = data_lib.split_dataset(data, val_fraction, seed)
    if not val_idx:
        raise UserError("Too few images for a validation split: give every class at least 2 images.")
    train, val, bad, warnings = data_lib.decode_split(data, train_idx, val_idx, img_size, progress, memory_budget_mb)
    info = dict(source=data.source, load=data.origin, split=data_lib.split_description(data, val_fraction, seed))
    return Prepared(list(data.class_names), train, val, img_size, bad, warnings, info)


def ensure_prepared(data: data_lib.LabelledImages | Prepared, cfg: TrainConfig):
    """Decode labelled images once at cfg's size, saying so; a Prepared dataset passes through.

    A generator returning the Prepared data: callers write `prepared = yield from ensure_prepared(...)`.
    """
    if isinstance(data, Prepared):
        return data
    yield Log(f"Decoding {len(data)} images once at {cfg.img_size} px")
    return prepare(data, cfg.img_size, cfg.val_fraction, cfg.seed, memory_budget_mb=cfg.memory_budget_mb)


def device_for() -> torch.device:
    return distributed.device_of_this_process()


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.bf16 is not None:
        return cfg.bf16
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast(enabled: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


class Session:
    """Everything one run shares: model, layer groups, data on the device, preprocessing, precision."""

    def __init__(self, prepared: Prepared, cfg: TrainConfig, model=None, report=None) -> None:
        self.cfg, self.prepared = cfg, prepared
        self.device = device_for()
        if model is None:
            model, report = models.create(cfg.model, len(prepared.class_names), cfg.weights, cfg.drop_rate, cfg.drop_path_rate,
                                          prepared.img_size)
        self.model, self.report = model.to(self.device), report
        distributed.broadcast_state(self.model)  # under torchrun: every process starts from rank 0's weights
        for size in {prepared.img_size, _epoch_size(cfg, prepared.img_size, 1, cfg.epochs)}:  # progressive resizing starts smaller
            models.check_input_size(self.model, cfg.model, size)
        self.bf16 = use_bf16(cfg, self.device)
        self.channels_last = models.prefers_channels_last(self.model, self.bf16) if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            small_conv.speed_up(self.model)
        self.groups = models.layer_groups(self.model)
        self.data_config = models.data_config(self.model, prepared.img_size)
        self.normalize = data_lib.Normalizer(self.data_config["mean"], self.data_config["std"], self.channels_last)
        self.normalize.mean, self.normalize.std = self.normalize.mean.to(self.device), self.normalize.std.to(self.device)
        self.train_x, self.train_y = prepared.train.x.to(self.device), prepared.train.y.to(self.device)
        self.val_x, self.val_y = prepared.val.x.to(self.device), prepared.val.y.to(self.device)
        self.last_val_logits: torch.Tensor | None = None  # from the latest validation pass
        self.generator = torch.Generator().manual_seed(cfg.seed)  # shuffling: the same order on every process
        self.aug_generator = self.generator  # augmentation: different on every process
        if distributed.active():
            self.aug_generator = torch.Generator().manual_seed(cfg.seed + 1 + distributed.rank())
            torch.manual_seed(cfg.seed + 1 + distributed.rank())  # dropout, drop path, mixup: per process too
        self.num_classes = len(prepared.class_names)
        self.phase_state = None  # (optimizer, scheduler) of the phase running: what a checkpoint saves

    def autocast(self):
        return autocast(self.bf16, self.device)

    def group_lrs(self, lr: float, discriminative: bool) -> list[float]:
        """Peak LR per layer group: equal, or geometric from lr/lr_mult (stem) to lr (head), as fastai's slice()."""
        n = len(self.groups)
        if not discriminative or n == 1:
            return [lr] * n
        return [float(lr / self.cfg.lr_mult * self.cfg.lr_mult ** (i / (n - 1))) for i in range(n)]

    def optimizer(self, lrs: list[float], params_of=None) -> torch.optim.AdamW:
        """AdamW, one pair of param groups per layer group: no weight decay on biases and norms."""
        groups = []
        for group, lr in zip(params_of or self.groups, lrs):
            decay = [p for p in group if p.ndim > 1]
            no_decay = [p for p in group if p.ndim <= 1]
            groups += [dict(params=decay, lr=lr, weight_decay=self.cfg.weight_decay), dict(params=no_decay, lr=lr, weight_decay=0.0)]
        # fused: one kernel for all parameters instead of a loop of small ops per parameter
        return torch.optim.AdamW([g for g in groups if g["params"]], fused=self._fused_ok())

    def _fused_ok(self) -> bool:
        return all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in self.model.parameters())

    @torch.no_grad()
    def embed(self, x_uint8: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Pooled backbone features (B, num_features), computed in eval mode so they are exact and reusable.
        Under torchrun each process embeds its share and every process gets all of them."""
        return distributed.run_sharded(lambda x: self._embed(x, batch_size), x_uint8)

    def _embed(self, x_uint8: torch.Tensor, batch_size: int) -> torch.Tensor:
        self.model.eval()
        out = []
        for idx in data_lib.batches(len(x_uint8), batch_size, shuffle=False):
            with self.autocast():
                feats = self.model.forward_head(self.model.forward_features(self.normalize(x_uint8[idx])), pre_logits=True)
            out.append(feats.float())
        return torch.cat(out)

    @torch.no_grad()
    def predict_val(self, features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for the validation set, from images or (head strategy) cached features. Under torchrun each
        process predicts its share and every process gets all the logits, each image exactly once."""
        on_features = features is not None
        return distributed.run_sharded(lambda x: self._predict(x, on_features), features if on_features else self.val_x)

    def _predict(self, source: torch.Tensor, on_features: bool) -> torch.Tensor:
        self.model.eval()
        out = []
        for idx in data_lib.batches(len(source), 256, shuffle=False):
            with self.autocast():
                if on_features:
                    logits = self.model.get_classifier()(source[idx])
                else:
                    logits = self.model(self.normalize(source[idx]))
            out.append(logits.float())
        return torch.cat(out)


# ---------------------------------------------------------------------------------------------- phases


@dataclass
class Phase:
    """A run of epochs sharing one optimizer and one one-cycle schedule."""

    epochs: int
    on_features: bool  # train the classifier on cached features
    discriminative: bool
    lr: float
    unfreeze: str  # "head" | "all" | "progressive"


def plan(cfg: TrainConfig) -> list[Phase]:
    strategy, lr = cfg.resolved_strategy(), cfg.resolved_lr()
    if strategy == "head":
        return [Phase(cfg.epochs, True, False, lr, "head")]
    if strategy == "finetune":
        frozen = [Phase(cfg.freeze_epochs, True, False, cfg.resolved_head_lr(), "head")] if cfg.freeze_epochs else []
        # fastai halves the base LR once the body is unfrozen
        return frozen + [Phase(cfg.epochs, False, True, lr / 2, "all")]
    if strategy == "progressive":
        return [Phase(cfg.epochs, False, True, lr, "progressive")]
    return [Phase(cfg.epochs, False, False, lr, "all")]


class _Tracker:
    """Keeps the best epoch's weights (highest val accuracy, then lowest val loss) and early-stopping state."""

    def __init__(self, patience: int) -> None:
        self.best_key, self.best_state, self.best_epoch = None, None, 0
        self.best_logits = None  # the best epoch's validation logits: saving needs no validation pass of its own
        self.best_loss, self.bad_epochs, self.patience = math.inf, 0, patience
        self.history: list[dict] = []

    def update(self, model, epoch_end: EpochEnd, val_logits: torch.Tensor | None = None) -> None:
        self.history.append(asdict(epoch_end))
        key = (epoch_end.val_acc, -epoch_end.val_loss)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch_end.epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best_logits = val_logits
        if epoch_end.val_loss < self.best_loss - 1e-4:
            self.best_loss, self.bad_epochs = epoch_end.val_loss, 0
        else:
            self.bad_epochs += 1

    @property
    def should_stop_early(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def fit(
    data: data_lib.LabelledImages | Prepared,
    cfg: TrainConfig,
    out_dir: str,
    stop: StopToken | None = None,
    checkpoint: str | None = None,
    time_budget: float | None = None,
) -> Iterator:
    """Train, yielding events; write the best epoch to `out_dir` as a model folder. See module docstring.

    With `checkpoint`, the run resumes from that file when it exists, and with `time_budget` (seconds) it
    ends early at the last epoch boundary that fits the budget, saving its state there and yielding Paused;
    call again with the same arguments to go on (engine/checkpoint.py).
    """
    cfg = preflight(cfg)
    if checkpoint and distributed.active():
        raise UserError("Resumable chunks (checkpoint=) are for one process; under torchrun the run is not cut up.")
    stop = distributed.shared(stop or StopToken())  # under torchrun every process stops at the same step
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # timm's Mixup draws from numpy's global generator
    data = yield from ensure_prepared(data, cfg)
    distributed.check_sizes(len(data.train), len(data.val))
    for warning in data.warnings:
        yield Log(warning)
    session = Session(data, cfg)
    yield Log(f"{cfg.model}: {session.report.describe()}")
    phases = plan(cfg)
    tracker, epoch, step, first_phase, done_in_phase, resumed = _Tracker(cfg.patience), 0, 0, 0, 0, None
    if checkpoint and Path(checkpoint).is_file():
        resumed = checkpoint_lib.load(checkpoint)
        first_phase, done_in_phase, epoch, step = resumed.phase, resumed.epochs_in_phase, resumed.epoch, resumed.step
        t0 -= resumed.seconds
        _restore(session, tracker, resumed)
        yield Log(f"Resumed after epoch {epoch} from {Path(checkpoint).name}")
    else:
        steps_per_epoch = _steps_per_epoch(distributed.shard_len(len(data.train)), cfg)
        total_epochs = sum(p.epochs for p in phases)
        yield Started(total_epochs, steps_per_epoch, total_epochs * steps_per_epoch, len(data.train), len(data.val),
                      cfg.model, cfg.resolved_strategy(), _describe_device(session))
    t_call, slowest_epoch = time.perf_counter(), 0.0
    try:
        for p in range(first_phase, len(phases)):
            phase, skip = phases[p], done_in_phase if p == first_phase else 0
            runner = _run_features if phase.on_features else _run_images
            for event in runner(session, phase, epoch - skip, step, stop, skip, resumed if p == first_phase else None):
                if isinstance(event, EpochEnd):
                    tracker.update(session.model, event, session.last_val_logits)
                    epoch, skip, slowest_epoch = event.epoch, skip + 1, max(slowest_epoch, event.seconds)
                elif isinstance(event, Step):
                    step = event.step
                yield event
                if stop.stopped or tracker.should_stop_early:
                    break
                more = skip < phase.epochs or p + 1 < len(phases)
                if isinstance(event, EpochEnd) and more and _out_of_time(time_budget, t_call, slowest_epoch):
                    next_phase, done = (p, skip) if skip < phase.epochs else (p + 1, 0)
                    yield _pause(session, tracker, next_phase, done, epoch, step, t0, checkpoint, out_dir)
                    return
            if stop.stopped or tracker.should_stop_early:
                break
    except Exception:
        saved = _save_after_failure(session, tracker, cfg, out_dir, time.perf_counter() - t0)
        if saved is not None:
            yield saved
        raise
    if tracker.should_stop_early and not stop.stopped:
        yield Log(f"Early stopping: validation loss has not improved for {cfg.patience} epochs")
    if tracker.best_state is None:  # stopped before the first epoch ended: keep what we have
        tracker.update(session.model, _validate(session, 0, math.nan, 0.0, t0, None), session.last_val_logits)
    model_dir = _save(session, tracker, cfg, out_dir, time.perf_counter() - t0)
    if checkpoint:
        Path(checkpoint).unlink(missing_ok=True)  # the run is over: nothing to resume
    seconds = time.perf_counter() - t0
    if stop.stopped:
        yield Stopped(str(model_dir), epoch, seconds)
    else:
        yield Finished(str(model_dir), tracker.best_epoch, tracker.best_key[0], seconds)


def _save_after_failure(session: Session, tracker: _Tracker, cfg: TrainConfig, out_dir: str,
                        seconds: float) -> SavedBeforeFailure | None:
    """A crash mid-run still leaves the best epoch so far on disk. Saving may fail too (the same lack of
    memory, say): then nothing is saved, and the error that ended the run is the one reported."""
    if tracker.best_state is None or distributed.active():  # saving needs every process, and one may be gone
        return None
    try:
        model_dir = _save(session, tracker, cfg, out_dir, seconds)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the original error
        log.warning("could not save the best epoch after the run failed: %s", exc)
        return None
    return SavedBeforeFailure(str(model_dir), tracker.best_epoch, tracker.best_key[0])


def _pause(session: Session, tracker: _Tracker, phase: int, done: int, epoch: int, step: int, t0: float,
           checkpoint: str, out_dir: str) -> Paused:
    """End this chunk: save the run's state to resume from, and the best epoch so far as a model folder."""
    checkpoint_lib.save(_state(session, tracker, phase, done, epoch, step, time.perf_counter() - t0), checkpoint)
    model_dir = _save(session, tracker, session.cfg, out_dir, time.perf_counter() - t0)
    return Paused(str(model_dir), str(checkpoint), epoch, time.perf_counter() - t0)


def _out_of_time(budget: float | None, t_call: float, slowest_epoch: float) -> bool:
    """Would one more epoch (as slow as the slowest so far, plus a margin for saving) overrun the budget?"""
    return budget is not None and time.perf_counter() - t_call + 1.2 * slowest_epoch + 2.0 > budget


def _state(session: Session, tracker: _Tracker, phase: int, done: int, epoch: int, step: int, seconds: float):
    """The run after `done` epochs of phase `phase` (0: at its start, where no optimizer state carries over)."""
    optimizer, scheduler = session.phase_state
    return checkpoint_lib.RunState(
        phase=phase, epochs_in_phase=done, epoch=epoch, step=step, seconds=seconds, model=session.model.state_dict(),
        tracker=vars(tracker).copy(), rng=checkpoint_lib.rng_state(session),
        optimizer=optimizer.state_dict() if done else None, scheduler=scheduler.state_dict() if done else None)


def _restore(session: Session, tracker: _Tracker, state) -> None:
    session.model.load_state_dict(state.model)
    vars(tracker).update(state.tracker)
    tracker.best_key = tuple(tracker.best_key) if tracker.best_key is not None else None
    checkpoint_lib.restore_rng(session, state.rng)


def _resume_phase(optimizer, scheduler, resumed) -> None:
    """Put a half-done phase's optimizer and schedule back where the checkpoint left them."""
    if resumed is not None and resumed.optimizer is not None:
        optimizer.load_state_dict(resumed.optimizer)
        scheduler.load_state_dict(resumed.scheduler)


def _describe_device(session: Session) -> str:
    text = f"{session.device.type}{' bf16' if session.bf16 else ''}"
    if distributed.active():
        text += f", {distributed.world_size()} processes ({distributed.backend()})"
    return text


def _epoch_batches(session: Session, n: int, drop_last: bool = False) -> list[torch.Tensor]:
    """This process's batches of one epoch: all processes draw the same shuffled order (same generator and
    seed) and each takes its share (alone: all of it, batched exactly as data_lib.batches would)."""
    mine = distributed.shard_order(torch.randperm(n, generator=session.generator))
    return [mine[idx] for idx in data_lib.batches(len(mine), session.cfg.batch_size, False, drop_last=drop_last)]


def _steps_per_epoch(n_train: int, cfg: TrainConfig) -> int:
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    n_batches = n_train // cfg.batch_size if mixing and n_train >= cfg.batch_size else math.ceil(n_train / cfg.batch_size)
    return max(1, math.ceil(n_batches / cfg.accum_steps))


def _one_cycle(optimizer, total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    # fastai's defaults: 25 % warm-up, start at max/25, anneal to max/1e5 (cosine); momentum 0.95 -> 0.85
    max_lrs = [g["lr"] for g in optimizer.param_groups]
    total_steps = max(1, total_steps)
    # torch's OneCycleLR divides by zero when the warm-up is exactly one step (4 steps at 25 %): warm up 30 % then
    pct_start = 0.3 if 0.25 * total_steps == 1 else 0.25
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=pct_start, div_factor=25.0,
        final_div_factor=1e5 / 25.0, base_momentum=0.85, max_momentum=0.95,
    )


def _loss_fn(cfg: TrainConfig, num_classes: int):
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixer = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing, num_classes=num_classes)
        soft = SoftTargetCrossEntropy()
        return mixer, lambda logits, y: soft(logits.float(), y)
    return None, lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)


def _validate(session: Session, epoch: int, train_loss: float, lr: float, t_epoch: float, features) -> EpochEnd:
    logits = session.last_val_logits = session.predict_val(features)
    val_loss = F.cross_entropy(logits, session.val_y).item()
    val_acc = (logits.argmax(1) == session.val_y).float().mean().item()
    val_loss, val_acc = distributed.from_main([val_loss, val_acc])  # identical decisions on every process
    return EpochEnd(epoch, train_loss, val_loss, val_acc, time.perf_counter() - t_epoch, lr)


def _run_features(session: Session, phase: Phase, epoch0: int, step0: int, stop: StopToken, done: int = 0, resumed=None):
    """Head-only epochs on features computed once: the backbone never runs again after the embedding pass."""
    cfg, model = session.cfg, session.model
    models.set_trainable(model, session.groups, len(session.groups) - 1)
    yield Log(f"Embedding {len(session.train_x) + len(session.val_x)} images once with the frozen backbone")
    t = time.perf_counter()
    train_f, val_f = session.embed(session.train_x), session.embed(session.val_x)
    yield Log(f"Embedded in {time.perf_counter() - t:.1f} s; training the head on cached features")
    head = model.get_classifier()
    optimizer = session.optimizer([phase.lr], params_of=[list(head.parameters())])
    steps = phase.epochs * _steps_per_epoch(distributed.shard_len(len(train_f)), cfg)
    scheduler = _one_cycle(optimizer, steps)
    _resume_phase(optimizer, scheduler, resumed)
    session.phase_state = optimizer, scheduler
    _, loss_fn = _loss_fn(TrainConfig(label_smoothing=cfg.label_smoothing), session.num_classes)  # no mixup on features
    step = step0
    for e in range(done + 1, phase.epochs + 1):
        t_epoch, losses = time.perf_counter(), []
        head.train()
        for idx in _epoch_batches(session, len(train_f)):
            t_step = time.perf_counter()
            loss = loss_fn(head(train_f[idx]), session.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(head.parameters())
            optimizer.step()
            scheduler.step()
            step, losses = step + 1, losses + [loss.item()]
            yield Step(step, epoch0 + e, losses[-1], optimizer.param_groups[0]["lr"], _speed(len(idx), t_step))
            if stop.stopped:
                break
        yield _validate(session, epoch0 + e, distributed.mean(float(np.mean(losses))), optimizer.param_groups[0]["lr"], t_epoch, val_f)
        if stop.stopped:
            return


def _run_images(session: Session, phase: Phase, epoch0: int, step0: int, stop: StopToken, done: int = 0, resumed=None):
    """Epochs through the whole network on augmented image batches."""
    cfg, model = session.cfg, session.model
    n_groups = len(session.groups)
    lrs = session.group_lrs(phase.lr, phase.discriminative)
    models.set_trainable(model, session.groups, 0)  # the optimizer must see every parameter it may ever train
    model.zero_grad(set_to_none=True)  # a head-only phase before this one leaves its last gradients behind
    optimizer = session.optimizer(lrs)
    steps_per_epoch = _steps_per_epoch(distributed.shard_len(len(session.train_x)), cfg)
    scheduler = _one_cycle(optimizer, phase.epochs * steps_per_epoch)
    _resume_phase(optimizer, scheduler, resumed)
    session.phase_state = optimizer, scheduler
    mixer, loss_fn = _loss_fn(cfg, session.num_classes)
    step, net, wrapped_from = step0, model, None
    for e in range(done + 1, phase.epochs + 1):
        first = _first_trainable(phase, e, n_groups, cfg.freeze_layers)
        models.set_trainable(model, session.groups, first)
        models.train_mode(model, cfg.resolved_freeze_bn())
        if distributed.active() and first != wrapped_from:  # DDP reduces the parameters trainable when it wraps
            net, wrapped_from = None, first  # drop the old wrapper (and its gradient hooks) first
            net = distributed.wrap(model)
        size = _epoch_size(cfg, session.prepared.img_size, e, phase.epochs)
        t_epoch, losses = time.perf_counter(), []
        batches = _epoch_batches(session, len(session.train_x), drop_last=mixer is not None)
        for i, idx in enumerate(batches):
            t_step = time.perf_counter()
            x = data_lib.augment(session.train_x[idx].float().div_(255.0), cfg.augment, session.aug_generator)
            x, y = data_lib.resize_batch(x, size), session.train_y[idx]
            if mixer is not None:
                x, y = mixer(x, y)
            accumulate = (i + 1) % cfg.accum_steps != 0 and i + 1 != len(batches)
            with distributed.no_sync(net) if accumulate else contextlib.nullcontext():  # all-reduce once per step
                with session.autocast():
                    loss = loss_fn(net(session.normalize(x)), y)
                (loss / cfg.accum_steps).backward()
            losses.append(loss.item())
            if accumulate:
                continue
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler.last_epoch + 1 < scheduler.total_steps:
                scheduler.step()
            step += 1
            yield Step(step, epoch0 + e, losses[-1], optimizer.param_groups[-1]["lr"], _speed(len(idx), t_step))
            if stop.stopped:
                break
        train_loss = distributed.mean(float(np.mean(losses)))
        if not math.isfinite(train_loss):
            raise UserError("Training diverged (the loss became NaN or infinite): lower the learning rate and try again.")
        distributed.sync_buffers(model)
        yield _validate(session, epoch0 + e, train_loss, optimizer.param_groups[-1]["lr"], t_epoch, None)
        if stop.stopped:
            return


def _speed(batch: int, t_step: float) -> float:
    """Images per second over all processes (each ran a batch of this size in about the same time)."""
    return batch * distributed.world_size() / (time.perf_counter() - t_step)


def _first_trainable(phase: Phase, epoch: int, n_groups: int, freeze_layers: int) -> int:
    """Index of the first trainable layer group this epoch (groups before it are frozen)."""
    if phase.unfreeze == "head":
        return n_groups - 1
    if phase.unfreeze == "progressive":
        return max(freeze_layers, n_groups - 1 - epoch)
    return min(freeze_layers, n_groups - 1)


def _epoch_size(cfg: TrainConfig, full: int, epoch: int, epochs: int) -> int:
    """Progressive resizing: half size first, full size for the last epoch, linear between (multiples of 8)."""
    if not cfg.progressive_resize or epochs == 1:
        return full
    start = max(16, full // 2)
    size = start + (full - start) * (epoch - 1) / (epochs - 1)
    return min(full, int(round(size / 8) * 8)) if epoch < epochs else full


def _save(session: Session, tracker: _Tracker, cfg: TrainConfig, out_dir: str, seconds: float):
    last_sha256 = distributed.state_hash(session.model.state_dict()) if distributed.active() else None
    session.model.load_state_dict(tracker.best_state)
    # the logits of the validation pass that made this epoch the best (a checkpoint keeps them with the tracker),
    # so a run whose images became unreadable can still be saved, and no run pays for a second pass
    logits = tracker.best_logits if tracker.best_logits is not None else session.predict_val()
    preds = logits.argmax(1).cpu()
    y = session.val_y.cpu()
    names = session.prepared.class_names
    metrics = dict(
        best_epoch=tracker.best_epoch,
        val_accuracy=float((preds == y).float().mean()),
        val_loss=float(F.cross_entropy(logits, session.val_y)),
        history=tracker.history,
        per_class_accuracy=per_class_accuracy(y, preds, names),
        confusion_matrix=confusion_matrix(y, preds, len(names)).tolist(),
        class_names=names,
        hyperparameters=asdict(cfg) | dict(strategy=cfg.resolved_strategy(), lr=cfg.resolved_lr(), bf16=session.bf16,
                                            head_lr=cfg.resolved_head_lr(), freeze_bn=cfg.resolved_freeze_bn(),
                                            channels_last=session.channels_last),
        weights=session.report.describe(),
        data=session.prepared.data_info,
        num_train=len(session.train_y),
        num_val=len(session.val_y),
        seconds=round(seconds, 2),
        device=session.device.type,
        threads=torch.get_num_threads(),
        pid=os.getpid(),
    )
    if distributed.active():
        metrics["distributed"] = dict(
            processes=distributed.world_size(), backend=distributed.backend(), batch_size_per_process=cfg.batch_size,
            global_batch_size=cfg.batch_size * distributed.world_size(),
            # per rank: its weights after the last step, and the best epoch's weights (those saved), all identical
            last_sha256=distributed.gather_strings(last_sha256),
            saved_sha256=distributed.gather_strings(distributed.state_hash(session.model.state_dict())),
        )
    # under torchrun only rank 0 writes; the others end once the folder is there
    model_dir = save_model_folder(session.model, out_dir, names, session.data_config, metrics, models.size_args(session.model)) \
        if distributed.is_main() else Path(out_dir)
    distributed.barrier()
    return model_dir
