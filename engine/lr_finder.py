"""Learning-rate range test: raise the LR exponentially, record the loss, suggest an LR; weights restored.

The test uses the same strategy and parameter groups as training (for `head` and the frozen phase of
`finetune`, the classifier on cached features, so it takes seconds). Suggestions follow fastai's
definitions, computed on the curve trimmed as fastai trims it (the first tenth of the planned steps, the last
five points):
  valley   the middle of the longest stretch where the loss keeps falling (fastai's default)
  steep    where the loss falls fastest
  minimum  the LR at the lowest loss, divided by 10
  slide    the last LR before the slope flattens, walking back from the end
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from engine.config import FinderConfig
from engine.events import LRFinished, LRStep
from engine.stopping import StopToken
from engine.train import Learner, OnFeatures, OnImages, TrainConfig, ensure_decoded, epoch_batches, plan, preflight, set_lrs, train_step

VIT_NOTE = "Note: for Vision Transformers, range-test suggestions often run high; try a value a few times lower."


def find(
    data,
    cfg: TrainConfig,
    finder: FinderConfig | None = None,
    stop: StopToken | None = None,
    learner: Learner | None = None,
) -> Iterator:
    """Run the range test, yielding LRStep events, then one LRFinished with the curve and suggestions."""
    cfg, finder = preflight(cfg), (finder or FinderConfig()).checked()
    stop = stop or StopToken()
    t0 = time.perf_counter()
    if learner is None:
        decoded = yield from ensure_decoded(data, cfg)
        learner = Learner(decoded, cfg)
    saved = _snapshot(learner.model)
    try:
        lrs, losses = yield from _range_test(learner, finder, stop)
    finally:
        _restore(learner.model, saved)
    smoothed = smooth(losses)
    suggestions, message = suggest(lrs, smoothed, finder.num_steps)
    if "vit" in cfg.model.lower() or "eva" in cfg.model.lower():
        message = (message + " " + VIT_NOTE).strip()
    yield LRFinished(lrs, losses, smoothed, suggestions, message, stop.stopped, time.perf_counter() - t0)


def _snapshot(model: torch.nn.Module) -> dict:
    """Weights, BatchNorm buffers and requires_grad flags, so the model leaves exactly as it came."""
    return dict(
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        grad={n: p.requires_grad for n, p in model.named_parameters()},
        training=model.training,
    )


def _restore(model: torch.nn.Module, saved: dict) -> None:
    model.load_state_dict(saved["state"])
    for n, p in model.named_parameters():
        p.requires_grad_(saved["grad"][n])
        p.grad = None
    model.train(saved["training"])


def _range_test(learner: Learner, finder: FinderConfig, stop: StopToken):
    """fastai's lr_find is a fit with a callback; here it is training's own step (train.train_step) on the first
    phase of the run, with an exponentially rising LR instead of the one-cycle schedule, one batch per step."""
    phase = plan(learner.cfg)[0]
    source = (yield from OnFeatures.embedded(learner)) if phase.on_features else OnImages(learner, phase)
    source.begin_epoch(1)
    # a throwaway optimiser whose peak LRs are the groups' relative scales: the test must leave no state behind
    optimizer = source.optimizer(1.0)
    lrs, losses = [], []
    gamma = (finder.end_lr / finder.start_lr) ** (1.0 / (finder.num_steps - 1))
    batch_iter = _endless_batches(learner, source.mixing)
    best, avg = math.inf, 0.0
    for i in range(finder.num_steps):
        lr = finder.start_lr * gamma**i
        set_lrs(optimizer, lr)
        loss = train_step(optimizer, [next(batch_iter)], source.loss_of, source.no_sync, source.after_backward)
        lrs.append(lr)
        losses.append(loss)
        avg = 0.98 * avg + 0.02 * loss if math.isfinite(loss) else math.inf
        smoothed = avg / (1 - 0.98 ** (i + 1))
        yield LRStep(i + 1, finder.num_steps, lr, loss, smoothed)
        best = min(best, smoothed)
        if stop.stopped or (finder.stop_div and (not math.isfinite(smoothed) or smoothed > 4 * best)):
            break  # diverged: the rest of the curve says nothing new
    return lrs, losses


def _endless_batches(learner: Learner, mixing: bool):
    while True:
        yield from epoch_batches(learner, len(learner.train_y), mixing, learner.generator)


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """Debiased exponential moving average (as in Adam), so early points are not dragged towards zero."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss if math.isfinite(loss) else math.inf
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest(lrs: list[float], losses: list[float], num_steps: int | None = None) -> tuple[dict[str, float], str]:
    """fastai's four suggestions on the trimmed curve; an empty dict and a reason when the curve can't tell.

    `num_steps`: the steps planned (fastai trims a tenth of those, even when the test stopped early).
    """
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    if finite:
        lrs, losses = lrs[: finite[-1] + 1], losses[: finite[-1] + 1]
    n = len(losses)
    lo, hi = (num_steps or n) // 10, n - 5
    if hi - lo < 8:
        return {}, f"The curve is too short ({n} points) to suggest a learning rate: run more steps or widen the LR range."
    lrs_t, losses_t = np.asarray(lrs[lo:hi]), np.asarray(losses[lo:hi])
    spread = (losses_t.max() - losses_t.min()) / max(abs(losses_t.mean()), 1e-12)
    if spread < 0.01:
        return {}, "The loss hardly changed over the whole range: widen the LR range or check that the model can learn."
    grads = np.gradient(losses_t, np.log10(lrs_t))
    return (
        dict(
            valley=_valley(lrs_t, losses_t),
            steep=float(lrs_t[int(np.argmin(grads))]),
            minimum=float(lrs_t[int(np.argmin(losses_t))] / 10),
            slide=_slide(lrs_t, losses_t),
        ),
        "",
    )


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Longest decreasing subsequence of the loss; suggest a point 1/2 of the way into it (fastai)."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def _slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """Walk back from the end until the slope stops changing (fastai's `slide`)."""
    grads = np.gradient(losses)
    r, left = -1, -1 - lr_diff
    local_min = lrs[left] if len(lrs) > lr_diff else lrs[0]
    while left >= -len(losses) and abs(grads[r] - grads[left]) > thresh:
        local_min = lrs[left]
        r, left = r - 1, left - 1
    return float(local_min)
