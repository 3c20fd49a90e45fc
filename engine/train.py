"""Training: `fit()` turns labelled images and a TrainConfig (engine/config.py) into a model folder, yielding events.

Strategies (one `strategy` option):
  head         frozen backbone: embed every image once, then train the classifier on cached features;
               epochs after the embedding pass cost milliseconds.
  finetune     fastai's recipe: `freeze_epochs` head-only epochs (on cached features here), then all layers
               with discriminative learning rates (stem at lr/lr_mult ... head at lr, geometric), one-cycle.
  full         one-cycle on all parameters (the default from scratch).
  progressive  one more layer group is unfrozen from the top at every epoch.
Layer groups come from timm's `group_matcher`; frozen groups keep their BatchNorm statistics frozen.

A run is a list of phases (`plan`), each with its own optimiser and one-cycle schedule. Every optimiser step,
on images, on cached features, or in the LR finder, is `train_step`; the learning rate of a step is a pure
function of its index in the phase (`one_cycle`). Where the run stands lives in one `RunState`
(engine/checkpoint.py), which a checkpoint saves and resume restores.

Multi-label data (decoded targets N x labels, multi-hot) trains the same way with sigmoid outputs and binary
cross-entropy; its score is the validation mAP instead of the accuracy: the best epoch, early stopping and the
decision thresholds saved with the model (engine/multilabel.py) follow it.

The model folder holds the best epoch (highest validation score). A run that fails after an epoch ended
still writes that epoch, yields SavedBeforeFailure, and then raises the error that ended it (in one process:
under torchrun saving needs all of them, and the failure may be that one is gone).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy

from engine import checkpoint as checkpoint_lib
from engine import data as data_lib
from engine import distributed, models, multilabel, onnx_embed, small_conv
from engine.checkpoint import RunState
from engine.config import DEFAULT_RECIPE, HEAD_LR, RECIPES, STRATEGIES, TrainConfig  # noqa: F401 (API)
from engine.errors import UserError
from engine.evaluate import confusion_matrix, per_class_accuracy
from engine.events import EpochEnd, Finished, Log, Paused, SavedBeforeFailure, Started, Step, Stopped
from engine.export import save_model_folder
from engine.stopping import StopToken

log = logging.getLogger("snapfit.train")


def preflight(cfg: TrainConfig) -> TrainConfig:
    """Everything that can be checked before any image is decoded: values, model name, weight source."""
    cfg.checked()
    models.check_name(cfg.model)
    if cfg.weights == "pretrained":
        models.check_pretrained_reachable(cfg.model)
    return cfg


# ---------------------------------------------------------------------------------------------- setup


@dataclass
class Decoded:
    """A dataset with its validation images held out, decoded once at one size; reusable across LR finding and
    training runs."""

    class_names: list[str]
    train: data_lib.Tensors
    val: data_lib.Tensors
    img_size: int
    skipped: list[str]
    warnings: list[str] = field(default_factory=list)
    data_info: dict = field(default_factory=dict)  # source, holdout and fingerprint, written to metrics.json


def decode_once(data: data_lib.LabelledImages, img_size: int, val_fraction: float = 0.2, seed: int = 0, progress=None,
                memory_budget_mb: int | None = None) -> Decoded:
    """Hold out the validation images and decode both parts once at `img_size`: what every run and LR test of
    this dataset at this size reuses."""
    train_idx, val_idx = data_lib.holdout(data, val_fraction, seed)
    if not val_idx:
        raise UserError("Too few images for a validation split: give every class at least 2 images.")
    train, val, bad, warnings = data_lib.decode_train_val(data, train_idx, val_idx, img_size, progress, memory_budget_mb)
    info = dict(source=data.source, load=data.origin, holdout=data_lib.holdout_description(data, val_fraction, seed),
                fingerprint=data_lib.fingerprint(data, train.index + val.index))
    return Decoded(list(data.class_names), train, val, img_size, bad, warnings, info)


def ensure_decoded(data: data_lib.LabelledImages | Decoded, cfg: TrainConfig):
    """Decode labelled images once at cfg's size, saying so; a Decoded dataset passes through.

    A generator returning the Decoded data: callers write `decoded = yield from ensure_decoded(...)`.
    """
    if isinstance(data, Decoded):
        return data
    yield Log(f"Decoding {len(data)} images once at {cfg.img_size} px")
    return decode_once(data, cfg.img_size, cfg.val_fraction, cfg.seed, memory_budget_mb=cfg.memory_budget_mb)


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


class Learner:
    """Everything one run shares: model, layer groups, data on the device, preprocessing, precision, generators."""

    def __init__(self, decoded: Decoded, cfg: TrainConfig, model=None, report=None) -> None:
        self.cfg, self.decoded = cfg, decoded
        self.device = device_for()
        if model is None:
            model, report = models.create(cfg.model, len(decoded.class_names), cfg.weights, cfg.drop_rate, cfg.drop_path_rate,
                                          decoded.img_size)
        self.model, self.report = model.to(self.device), report
        distributed.broadcast_state(self.model)  # under torchrun: every process starts from rank 0's weights
        for size in {decoded.img_size, _epoch_size(cfg, decoded.img_size, 1, cfg.epochs)}:  # progressive resizing starts smaller
            models.check_input_size(self.model, cfg.model, size)
        self.bf16 = use_bf16(cfg, self.device)
        self.channels_last = models.prefers_channels_last(self.model, self.bf16) if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            small_conv.speed_up(self.model)
        self.groups = models.layer_groups(self.model)
        self.data_config = models.data_config(self.model, decoded.img_size)
        self.normalize = data_lib.Normalizer(self.data_config["mean"], self.data_config["std"], self.channels_last)
        self.normalize.mean, self.normalize.std = self.normalize.mean.to(self.device), self.normalize.std.to(self.device)
        self.train_x, self.train_y = decoded.train.x.to(self.device), decoded.train.y.to(self.device)
        self.val_x, self.val_y = decoded.val.x.to(self.device), decoded.val.y.to(self.device)
        self.last_val_logits: torch.Tensor | None = None  # from the latest validation pass
        self.generator = torch.Generator().manual_seed(cfg.seed)  # shuffling: the same order on every process
        self.aug_generator = self.generator  # augmentation: different on every process
        if distributed.active():
            self.aug_generator = torch.Generator().manual_seed(cfg.seed + 1 + distributed.rank())
            torch.manual_seed(cfg.seed + 1 + distributed.rank())  # dropout, drop path, mixup: per process too
        self.num_classes = len(decoded.class_names)
        self.multi_label = decoded.train.y.ndim == 2  # multi-hot targets: sigmoid outputs, BCE, scored by mAP
        self.optimizer_in_use: torch.optim.Optimizer | None = None  # the running phase's: what a checkpoint saves

    def autocast(self):
        return autocast(self.bf16, self.device)

    def group_lrs(self, lr: float, discriminative: bool) -> list[float]:
        """Peak LR per layer group: equal, or geometric from lr/lr_mult (stem) to lr (head), as fastai's slice()."""
        n = len(self.groups)
        if not discriminative or n == 1:
            return [lr] * n
        return [float(lr / self.cfg.lr_mult * self.cfg.lr_mult ** (i / (n - 1))) for i in range(n)]

    def optimizer(self, lrs: list[float], params_of=None) -> torch.optim.AdamW:
        """AdamW, one pair of param groups per layer group: no weight decay on biases and norms. Each group keeps its
        peak LR as `peak_lr`: the schedule (set_lrs) scales it."""
        groups = []
        for group, lr in zip(params_of or self.groups, lrs):
            decay = [p for p in group if p.ndim > 1]
            no_decay = [p for p in group if p.ndim <= 1]
            groups += [dict(params=decay, lr=lr, peak_lr=lr, weight_decay=self.cfg.weight_decay),
                       dict(params=no_decay, lr=lr, peak_lr=lr, weight_decay=0.0)]
        # fused: one kernel for all parameters instead of a loop of small ops per parameter
        return torch.optim.AdamW([g for g in groups if g["params"]], fused=self._fused_ok())

    def _fused_ok(self) -> bool:
        return all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in self.model.parameters())

    @torch.no_grad()
    def embed(self, x_uint8: torch.Tensor, batch_size: int = 128, backbone=None) -> torch.Tensor:
        """Pooled backbone features (B, num_features), computed in eval mode so they are exact and reusable;
        through `backbone` (an onnx_embed.OnnxBackbone of this model) when given. Under torchrun each process
        embeds its share and every process gets all of them."""
        return distributed.run_sharded(lambda x: self._embed(x, batch_size, backbone), x_uint8)

    def _embed(self, x_uint8: torch.Tensor, batch_size: int, backbone) -> torch.Tensor:
        self.model.eval()
        out = []
        for idx in data_lib.batches(len(x_uint8), batch_size, shuffle=False):
            x = self.normalize(x_uint8[idx])
            if backbone is not None:
                out.append(backbone(x))
                continue
            with self.autocast():
                feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
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
    """A run of epochs sharing one optimiser and one one-cycle schedule."""

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


# ---------------------------------------------------------------------------------------------- the schedule

# fastai's one-cycle defaults: 25 % warm-up from max/25, cosine annealing to max/1e5; momentum (Adam's beta1)
# from 0.95 down to 0.85 and back.
WARMUP, DIV, FINAL_DIV, MOMENTUM = 0.25, 25.0, 1e5, (0.95, 0.85)


def one_cycle(step: int, total: int) -> tuple[float, float]:
    """(LR as a fraction of the peak, momentum) at optimiser step `step` (0-based) of `total`: torch's OneCycleLR
    (cosine, two phases) as a pure function of the step, so resuming needs no scheduler state and a step past
    the end keeps the last value instead of failing."""
    step = min(max(step, 0), total - 1)
    warm_end = WARMUP * total - 1  # as OneCycleLR counts: the last step of the warm-up
    if step <= warm_end and warm_end > 0:
        pct, (lr0, lr1), (m0, m1) = step / warm_end, (1 / DIV, 1.0), MOMENTUM
    else:  # a warm-up shorter than a step (4 steps or fewer) is skipped: torch's OneCycleLR divides by zero there
        pct = (step - warm_end) / (total - 1 - warm_end) if total - 1 > warm_end else 1.0
        (lr0, lr1), (m0, m1) = (1.0, 1 / FINAL_DIV), MOMENTUM[::-1]
    cos = math.cos(math.pi * pct) + 1
    return lr1 + (lr0 - lr1) / 2 * cos, m1 + (m0 - m1) / 2 * cos


def set_lrs(optimizer: torch.optim.Optimizer, factor: float, momentum: float | None = None) -> None:
    """Every param group at `factor` times its peak LR (Learner.optimizer keeps the peak in the group)."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
        if momentum is not None:
            group["betas"] = (momentum, group["betas"][1])


# ---------------------------------------------------------------------------------------------- steps


def epoch_batches(learner: Learner, n: int, mixing: bool, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """This process's batches of one epoch. All processes draw the same shuffled order (same generator and seed)
    and each takes its share (alone: all of it, batched exactly as data_lib.batches would). With mixup or cutmix
    only full batches are kept (fewer images than a batch: all of them as one), cut to an even size: timm's Mixup
    mixes each image with its mirror in the batch. A last batch of one image joins the one before: BatchNorm
    cannot train on a single image."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    mine = distributed.shard_order(order)
    batches = [mine[idx] for idx in data_lib.batches(len(mine), learner.cfg.batch_size, False, drop_last=mixing)]
    if mixing:
        batches = [b[: len(b) // 2 * 2] for b in batches if len(b) >= 2]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def steps_of(batches: list, accum_steps: int) -> list[list]:
    """Batches grouped into optimiser steps: `accum_steps` batches each, the last step takes what is left."""
    return [batches[i:i + accum_steps] for i in range(0, len(batches), accum_steps)]


def train_step(optimizer: torch.optim.Optimizer, micro_batches: list[torch.Tensor], loss_of: Callable,
               no_sync: Callable = contextlib.nullcontext, after_backward: Callable | None = None,
               grad_clip: float = 0.0, params=None) -> float:
    """One optimiser step over one or more batches whose gradients add up (gradient accumulation), each weighted
    by its size. Under torchrun, gradients are reduced once, on the last batch (`no_sync` for the others, or
    `after_backward` where there is no DDP wrapper). Returns the mean loss."""
    total, loss_sum = sum(len(idx) for idx in micro_batches), 0.0
    for k, idx in enumerate(micro_batches):
        last = k == len(micro_batches) - 1
        with contextlib.nullcontext() if last else no_sync():
            loss = loss_of(idx)
            (loss * (len(idx) / total)).backward()
        loss_sum += loss.item() * len(idx)
    if after_backward is not None:
        after_backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / total


class OnFeatures:
    """What a head-only phase trains on: the backbone's features, computed once (the backbone never runs again)."""

    mixing = False  # mixing features is not what mixup means

    def __init__(self, learner: Learner, features: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.learner, (self.train_f, self.val_f) = learner, features
        self.head = learner.model.get_classifier()
        self.params = list(self.head.parameters())
        self.loss_fn = plain_loss(learner.cfg, learner.multi_label)

    @classmethod
    def embedded(cls, learner: Learner):
        """Embed the training and validation images once, saying so (`source = yield from OnFeatures.embedded(...)`)."""
        models.set_trainable(learner.model, learner.groups, len(learner.groups) - 1)
        n, backbone = len(learner.train_x) + len(learner.val_x), None
        if onnx_embed.worth_it(n, learner.bf16, learner.device):
            t = time.perf_counter()
            backbone = onnx_embed.build(learner.model, learner.decoded.img_size)
            if backbone is not None:
                yield Log(f"Backbone exported to ONNX Runtime in {time.perf_counter() - t:.1f} s: without bf16 on this "
                          f"CPU it embeds about twice as fast as PyTorch")
        yield Log(f"Embedding {n} images once with the frozen backbone")
        t = time.perf_counter()
        features = learner.embed(learner.train_x, backbone=backbone), learner.embed(learner.val_x, backbone=backbone)
        yield Log(f"Embedded in {time.perf_counter() - t:.1f} s; training the head on cached features")
        return cls(learner, features)

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        return self.learner.optimizer([lr], params_of=[self.params])

    def begin_epoch(self, epoch_in_phase: int) -> None:
        self.head.train()

    def loss_of(self, idx: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.head(self.train_f[idx]), self.learner.train_y[idx])

    def no_sync(self):
        return contextlib.nullcontext()

    def after_backward(self) -> None:
        distributed.average_gradients(self.params)

    def validation_features(self) -> torch.Tensor:
        return self.val_f


class OnImages:
    """What a phase through the network trains on: augmented (resized, mixed) image batches."""

    def __init__(self, learner: Learner, phase: Phase) -> None:
        self.learner, self.phase, cfg = learner, phase, learner.cfg
        self.model, self.net, self.wrapped_from = learner.model, learner.model, None
        self.params = list(learner.model.parameters())
        self.mixer, self.loss_fn = _loss_fn(cfg, learner.num_classes, learner.multi_label)
        self.mixing = self.mixer is not None
        self.size = learner.decoded.img_size
        models.set_trainable(self.model, learner.groups, 0)  # the optimiser must see every parameter it may ever train
        self.model.zero_grad(set_to_none=True)  # a head-only phase before this one leaves its last gradients behind

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        return self.learner.optimizer(self.learner.group_lrs(lr, self.phase.discriminative))

    def begin_epoch(self, epoch_in_phase: int) -> None:
        learner, cfg = self.learner, self.learner.cfg
        first = _first_trainable(self.phase, epoch_in_phase, len(learner.groups), cfg.freeze_layers)
        models.set_trainable(self.model, learner.groups, first)
        models.train_mode(self.model, cfg.resolved_freeze_bn())
        if distributed.active() and first != self.wrapped_from:  # DDP reduces the parameters trainable when it wraps
            self.net, self.wrapped_from = None, first  # drop the old wrapper (and its gradient hooks) first
            self.net = distributed.wrap(self.model)
        self.size = _epoch_size(cfg, learner.decoded.img_size, epoch_in_phase, self.phase.epochs)

    def loss_of(self, idx: torch.Tensor) -> torch.Tensor:
        learner = self.learner
        x = data_lib.augment(learner.train_x[idx].float().div_(255.0), learner.cfg.augment, learner.aug_generator)
        x, y = data_lib.resize_batch(x, self.size), learner.train_y[idx]
        if self.mixer is not None:
            x, y = self.mixer(x, y)
        with learner.autocast():
            return self.loss_fn(self.net(learner.normalize(x)), y)

    def no_sync(self):
        return distributed.no_sync(self.net)

    after_backward = None

    def validation_features(self) -> None:
        return None


def plain_loss(cfg: TrainConfig, multi_label: bool) -> Callable:
    """The loss of unmixed batches: cross-entropy on class indices, or for multi-label targets binary cross-entropy
    on the logits. Label smoothing for multi-label moves every target towards 0.5 (targets * (1 - s) + s / 2), as
    timm's multi-label Mixup does: each label is its own yes/no question, so its two answers share the smoothing;
    spreading s over all labels, as single-label smoothing does, would push every absent label up by s / labels."""
    if multi_label:
        bce = BinaryCrossEntropy(smoothing=cfg.label_smoothing, smooth_dense=True)
        return lambda logits, y: bce(logits.float(), y)
    return lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)


def _loss_fn(cfg: TrainConfig, num_classes: int, multi_label: bool = False):
    """(mixer or None, loss of a batch's logits and its targets as the mixer leaves them)."""
    if cfg.mixup > 0 or cfg.cutmix > 0:
        # timm's Mixup mixes multi-hot rows by lambda (and smooths them towards 0.5) when told they are multi-label
        mixer = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                      num_classes=num_classes, multi_label=multi_label)
        soft = BinaryCrossEntropy(smoothing=0.0) if multi_label else SoftTargetCrossEntropy()  # targets come smoothed
        return mixer, lambda logits, y: soft(logits.float(), y)
    return None, plain_loss(cfg, multi_label)


def steps_per_epoch(learner: Learner, mixing: bool) -> int:
    """Optimiser steps in one epoch: counted on the very batches the loop runs."""
    return len(steps_of(epoch_batches(learner, len(learner.train_y), mixing), learner.cfg.accum_steps))


# ---------------------------------------------------------------------------------------------- the run


def fit(
    data: data_lib.LabelledImages | Decoded,
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
    data = yield from ensure_decoded(data, cfg)
    distributed.check_sizes(len(data.train), len(data.val))
    for warning in data.warnings:
        yield Log(str(warning))
    learner = Learner(data, cfg)
    yield Log(f"{cfg.model}: {learner.report.describe()}")
    phases, state = plan(cfg), RunState(stop_on_score=learner.multi_label)
    config, identity = asdict(cfg), checkpoint_lib.data_identity(data)
    if checkpoint and Path(checkpoint).is_file():
        state = checkpoint_lib.load(checkpoint)
        checkpoint_lib.check_resumable(state, config, identity, checkpoint)
        learner.model.load_state_dict(state.model)
        checkpoint_lib.restore_rng(learner, state.rng)
        t0 -= state.seconds
        yield Log(f"Resumed after epoch {state.epoch} from {Path(checkpoint).name}")
    else:
        yield _started(learner, phases, data)
    state.config, state.data = config, identity
    clock = _Clock(time_budget)
    try:
        while state.phase < len(phases):
            phase = phases[state.phase]
            for event in _run_phase(learner, phase, state, stop):
                yield event
                if not isinstance(event, EpochEnd) or stop.stopped or state.stops_early(cfg.patience):
                    continue
                more = state.epochs_in_phase < phase.epochs or state.phase + 1 < len(phases)
                if more and clock.no_time_for_another(event.seconds):
                    yield _pause(learner, state, phase, checkpoint, out_dir, t0)
                    return
                if more and checkpoint and clock.checkpoint_due():
                    _save_checkpoint(learner, state, phase, checkpoint, t0)
            if stop.stopped or state.stops_early(cfg.patience):
                break
            state.next_phase()
    except Exception:
        saved = _save_after_failure(learner, state, out_dir, time.perf_counter() - t0)
        if saved is not None:
            yield saved
        raise
    if state.stops_early(cfg.patience) and not stop.stopped:
        watched = "mAP" if state.stop_on_score else "loss"
        yield Log(f"Early stopping: validation {watched} has not improved for {cfg.patience} epochs")
    if state.best_weights is None:  # stopped before the first epoch ended: keep what we have
        state.record_epoch(_validate(learner, 0, math.nan, 0.0, t0, None), learner.model, learner.last_val_logits)
    model_dir = _save(learner, state, out_dir, time.perf_counter() - t0)
    if checkpoint and not stop.stopped:
        Path(checkpoint).unlink(missing_ok=True)  # the run is over: nothing to resume (a stopped one may go on)
    seconds = time.perf_counter() - t0
    if stop.stopped:
        yield Stopped(str(model_dir), state.epoch, seconds)
    else:
        yield Finished(str(model_dir), state.best_epoch, state.best_val_acc, seconds, _metric(learner))


def _run_phase(learner: Learner, phase: Phase, state: RunState, stop: StopToken):
    """The phase's remaining epochs, yielding Step and EpochEnd events; `state` follows every step."""
    source = (yield from OnFeatures.embedded(learner)) if phase.on_features else OnImages(learner, phase)
    optimizer = source.optimizer(phase.lr)
    if state.optimizer is not None:  # resuming half-way through this phase
        optimizer.load_state_dict(state.optimizer)
    learner.optimizer_in_use = optimizer
    total = phase.epochs * steps_per_epoch(learner, source.mixing)
    if total == 0:
        raise UserError("Mixup and CutMix need at least 2 training images: add images, or set mixup and cutmix to 0.")
    while state.epochs_in_phase < phase.epochs:
        t_epoch, losses = time.perf_counter(), []
        source.begin_epoch(state.epochs_in_phase + 1)
        batches = epoch_batches(learner, len(learner.train_y), source.mixing, learner.generator)
        for micro_batches in steps_of(batches, learner.cfg.accum_steps):
            t_step = time.perf_counter()
            set_lrs(optimizer, *one_cycle(state.phase_step, total))
            lr = optimizer.param_groups[-1]["lr"]
            loss = train_step(optimizer, micro_batches, source.loss_of, source.no_sync, source.after_backward,
                              learner.cfg.grad_clip, source.params)
            state.step, state.phase_step = state.step + 1, state.phase_step + 1
            losses.append(loss)
            yield Step(state.step, state.epoch + 1, loss, lr, _speed(sum(map(len, micro_batches)), t_step))
            if stop.stopped:
                break
        train_loss = distributed.mean(float(np.mean(losses)))
        if not math.isfinite(train_loss):
            raise UserError("Training diverged (the loss became NaN or infinite): lower the learning rate and try again.")
        if not phase.on_features:
            distributed.sync_buffers(learner.model)
        end = _validate(learner, state.epoch + 1, train_loss, lr, t_epoch, source.validation_features())
        state.record_epoch(end, learner.model, learner.last_val_logits)
        yield end
        if stop.stopped or state.stops_early(learner.cfg.patience):
            return


def epoch_steps(learner: Learner, phases: list[Phase]) -> list[int]:
    """Optimiser steps in one epoch of each phase."""
    mixing = learner.cfg.mixup > 0 or learner.cfg.cutmix > 0
    return [steps_per_epoch(learner, mixing and not p.on_features) for p in phases]  # OnFeatures never mixes


def total_steps(learner: Learner, phases: list[Phase]) -> int:
    """Optimiser steps of the whole run."""
    return sum(p.epochs * n for p, n in zip(phases, epoch_steps(learner, phases)))


def _started(learner: Learner, phases: list[Phase], data: Decoded) -> Started:
    total_epochs = sum(p.epochs for p in phases)
    return Started(total_epochs, epoch_steps(learner, phases)[-1], total_steps(learner, phases), len(data.train),
                   len(data.val), learner.cfg.model, learner.cfg.resolved_strategy(), _describe_device(learner),
                   _metric(learner))


def _metric(learner: Learner) -> str:
    """What a run's score (EpochEnd.val_acc) is."""
    return "mAP" if learner.multi_label else "accuracy"


class _Clock:
    """Whether another epoch fits the time budget of this call (a ZeroGPU chunk)."""

    def __init__(self, budget: float | None) -> None:
        self.budget, self.start, self.slowest = budget, time.perf_counter(), 0.0
        self.saved = self.start

    def checkpoint_due(self) -> bool:
        """Has a checkpoint's worth of training (checkpoint.EVERY seconds) passed since the last one?"""
        if time.perf_counter() - self.saved < checkpoint_lib.EVERY:
            return False
        self.saved = time.perf_counter()
        return True

    def no_time_for_another(self, epoch_seconds: float) -> bool:
        """Would one more epoch (as slow as the slowest so far, plus a margin for saving) overrun the budget?"""
        self.slowest = max(self.slowest, epoch_seconds)
        return self.budget is not None and time.perf_counter() - self.start + 1.2 * self.slowest + 2.0 > self.budget


def _pause(learner: Learner, state: RunState, phase: Phase, checkpoint: str, out_dir: str, t0: float) -> Paused:
    """End this chunk: save the run's state to resume from, and the best epoch so far as a model folder."""
    saved = _save_checkpoint(learner, state, phase, checkpoint, t0)
    model_dir = _save(learner, state, out_dir, saved.seconds)
    return Paused(str(model_dir), str(checkpoint), state.epoch, saved.seconds)


def _save_checkpoint(learner: Learner, state: RunState, phase: Phase, checkpoint: str, t0: float) -> RunState:
    """Save the run as it stands at this epoch's end, to go on from exactly there; the running state is untouched."""
    saved = replace(state)
    if saved.epochs_in_phase >= phase.epochs:
        saved.next_phase()  # the phase is done: going on starts the next one afresh
    else:
        saved.optimizer = learner.optimizer_in_use.state_dict()
    saved.model, saved.rng = learner.model.state_dict(), checkpoint_lib.rng_state(learner)
    saved.seconds = time.perf_counter() - t0
    checkpoint_lib.save(saved, checkpoint)
    return saved


def _save_after_failure(learner: Learner, state: RunState, out_dir: str, seconds: float) -> SavedBeforeFailure | None:
    """A crash mid-run still leaves the best epoch so far on disk. Saving may fail too (the same lack of
    memory, say): then nothing is saved, and the error that ended the run is the one reported."""
    if state.best_weights is None or distributed.active():  # saving needs every process, and one may be gone
        return None
    try:
        model_dir = _save(learner, state, out_dir, seconds)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the original error
        log.warning("could not save the best epoch after the run failed: %s", exc)
        return None
    return SavedBeforeFailure(str(model_dir), state.best_epoch, state.best_val_acc, _metric(learner))


def _describe_device(learner: Learner) -> str:
    text = f"{learner.device.type}{' bf16' if learner.bf16 else ''}"
    if distributed.active():
        text += f", {distributed.world_size()} processes ({distributed.backend()})"
    return text


def _validate(learner: Learner, epoch: int, train_loss: float, lr: float, t_epoch: float, features) -> EpochEnd:
    """Validation loss and score (accuracy; mAP for multi-label) of the model as it stands."""
    logits = learner.last_val_logits = learner.predict_val(features)
    if learner.multi_label:
        val_loss = F.binary_cross_entropy_with_logits(logits, learner.val_y).item()
        val_acc = multilabel.mean_average_precision(logits.sigmoid().cpu(), learner.val_y.cpu())
    else:
        val_loss = F.cross_entropy(logits, learner.val_y).item()
        val_acc = (logits.argmax(1) == learner.val_y).float().mean().item()
    val_loss, val_acc = distributed.from_main([val_loss, val_acc])  # identical decisions on every process
    return EpochEnd(epoch, train_loss, val_loss, val_acc, time.perf_counter() - t_epoch, lr, _metric(learner))


def _speed(batch: int, t_step: float) -> float:
    """Images per second over all processes (each ran a batch of this size in about the same time)."""
    return batch * distributed.world_size() / (time.perf_counter() - t_step)


def _first_trainable(phase: Phase, epoch: int, n_groups: int, freeze_layers: int) -> int:
    """Index of the first trainable layer group this epoch (groups before it are frozen)."""
    if phase.unfreeze == "head":
        return n_groups - 1
    if phase.unfreeze == "progressive":
        return min(max(freeze_layers, n_groups - 1 - epoch), n_groups - 1)
    return min(freeze_layers, n_groups - 1)


def _epoch_size(cfg: TrainConfig, full: int, epoch: int, epochs: int) -> int:
    """Progressive resizing: half size first, full size for the last epoch, linear between (multiples of 8)."""
    if not cfg.progressive_resize or epochs == 1:
        return full
    start = max(16, full // 2)
    size = start + (full - start) * (epoch - 1) / (epochs - 1)
    return min(full, int(round(size / 8) * 8)) if epoch < epochs else full


def _save(learner: Learner, state: RunState, out_dir: str, seconds: float):
    cfg = learner.cfg
    last_sha256 = distributed.state_hash(learner.model.state_dict()) if distributed.active() else None
    learner.model.load_state_dict(state.best_weights)
    # the logits of the validation pass that made this epoch the best (a checkpoint keeps them in the run state),
    # so a run whose images became unreadable can still be saved, and no run pays for a second pass
    logits = state.best_logits if state.best_logits is not None else learner.predict_val()
    names = learner.decoded.class_names
    scores, labelling = _multi_label_scores(logits, learner.val_y, names) if learner.multi_label else \
        _single_label_scores(logits, learner.val_y, names)
    metrics = dict(
        best_epoch=state.best_epoch,
        **scores,
        history=state.history,
        class_names=names,
        hyperparameters=asdict(cfg) | dict(strategy=cfg.resolved_strategy(), lr=cfg.resolved_lr(), bf16=learner.bf16,
                                            head_lr=cfg.resolved_head_lr(), freeze_bn=cfg.resolved_freeze_bn(),
                                            channels_last=learner.channels_last),
        weights=learner.report.describe(),
        data=learner.decoded.data_info,
        num_train=len(learner.train_y),
        num_val=len(learner.val_y),
        seconds=round(seconds, 2),
        device=learner.device.type,
        threads=torch.get_num_threads(),
        pid=os.getpid(),
    )
    if distributed.active():
        metrics["distributed"] = dict(
            processes=distributed.world_size(), backend=distributed.backend(), batch_size_per_process=cfg.batch_size,
            global_batch_size=cfg.batch_size * distributed.world_size(),
            # per rank: its weights after the last step, and the best epoch's weights (those saved), all identical
            last_sha256=distributed.gather_strings(last_sha256),
            saved_sha256=distributed.gather_strings(distributed.state_hash(learner.model.state_dict())),
        )
    # under torchrun only rank 0 writes; the others end once the folder is there
    model_dir = save_model_folder(learner.model, out_dir, names, learner.data_config, metrics, models.size_args(learner.model),
                                  **labelling) if distributed.is_main() else Path(out_dir)
    distributed.barrier()
    return model_dir


def _single_label_scores(logits: torch.Tensor, y: torch.Tensor, names: list[str]) -> tuple[dict, dict]:
    """metrics.json's scores of a single-label run's best epoch (and no extra model folder settings)."""
    preds, y_cpu = logits.argmax(1).cpu(), y.cpu()
    return dict(val_accuracy=float((preds == y_cpu).float().mean()), val_loss=float(F.cross_entropy(logits, y)),
                per_class_accuracy=per_class_accuracy(y_cpu, preds, names),
                confusion_matrix=confusion_matrix(y_cpu, preds, len(names)).tolist()), {}


def _multi_label_scores(logits: torch.Tensor, y: torch.Tensor, names: list[str]) -> tuple[dict, dict]:
    """metrics.json's scores of a multi-label run's best epoch, and the model folder's decision thresholds, chosen
    on these validation probabilities (engine.multilabel.choose_thresholds). No accuracy per class or confusion
    matrix: with several labels per image they mean nothing."""
    probs, y_cpu = logits.float().sigmoid().cpu(), y.cpu()
    thresholds = multilabel.choose_thresholds(probs, y_cpu)
    summary = multilabel.summarize(y_cpu, probs, names, thresholds["values"])
    scores = dict(multi_label=True, val_map=summary["map"],
                  val_loss=float(F.binary_cross_entropy_with_logits(logits.float(), y)),
                  thresholds=thresholds["values"], threshold_kind=thresholds["kind"],
                  per_label_ap={row["name"]: row["ap"] for row in summary["per_label"]},
                  multilabel={k: v for k, v in summary.items() if k not in ("predictions", "mistakes")})  # per image: bulky
    return scores, dict(multi_label=True, thresholds=thresholds["values"], threshold_kind=thresholds["kind"])
