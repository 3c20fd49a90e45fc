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
import torch.nn.functional as F

from engine import data as data_lib
from engine import models
from engine.errors import UserError
from engine.events import Log, LRFinished, LRStep
from engine.stopping import StopToken
from engine.train import Session, TrainConfig, ensure_prepared, plan, preflight

VIT_NOTE = "Note: for Vision Transformers, range-test suggestions often run high; try a value a few times lower."


def find(
    data,
    cfg: TrainConfig,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    stop: StopToken | None = None,
    session: Session | None = None,
    stop_div: bool = True,
) -> Iterator:
    """Run the range test, yielding LRStep events, then one LRFinished with the curve and suggestions.

    `stop_div` (fastai's name): end the test once the smoothed loss exceeds 4x its minimum.
    """
    cfg = preflight(cfg)
    check_range(start_lr, end_lr, num_steps)
    stop = stop or StopToken()
    t0 = time.perf_counter()
    if session is None:
        prepared = yield from ensure_prepared(data, cfg)
        session = Session(prepared, cfg)
    saved = _snapshot(session.model)
    try:
        lrs, losses = yield from _range_test(session, cfg, start_lr, end_lr, num_steps, stop, stop_div)
    finally:
        _restore(session.model, saved)
    smoothed = smooth(losses)
    suggestions, message = suggest(lrs, smoothed, num_steps)
    if "vit" in cfg.model.lower() or "eva" in cfg.model.lower():
        message = (message + " " + VIT_NOTE).strip()
    yield LRFinished(lrs, losses, smoothed, suggestions, message, stop.stopped, time.perf_counter() - t0)


def check_range(start_lr: float, end_lr: float, num_steps: int) -> None:
    if not (_finite(start_lr) and _finite(end_lr) and 0 < start_lr < end_lr):
        raise UserError(f"The start LR must be positive and below the end LR (got {start_lr} to {end_lr}).")
    if not (isinstance(num_steps, int) and 10 <= num_steps <= 1000):
        raise UserError(f"The range test needs 10 to 1000 steps (got {num_steps}).")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


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


def _range_test(session: Session, cfg: TrainConfig, start_lr: float, end_lr: float, num_steps: int, stop: StopToken,
                stop_div: bool):
    phase = plan(cfg)[0]
    model = session.model
    if phase.on_features:
        yield Log("Embedding the images once with the frozen backbone")
        feats = session.embed(session.train_x)
        params = [list(model.get_classifier().parameters())]
        scales = [1.0]
    else:
        models.set_trainable(model, session.groups, min(cfg.freeze_layers, len(session.groups) - 1))
        params = session.groups
        scales = session.group_lrs(1.0, phase.discriminative)  # relative LR of each group
    # a throwaway optimizer: the range test must not leave any optimizer state behind
    optimizer = session.optimizer([start_lr * s for s in scales], params_of=params)
    group_scales = _match_groups(optimizer, params, scales)
    lrs, losses = [], []
    gamma = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    batch_iter = _endless_batches(len(session.train_y), cfg.batch_size, session.generator)
    best, avg = math.inf, 0.0
    for i in range(num_steps):
        lr = start_lr * gamma**i
        for group, scale in zip(optimizer.param_groups, group_scales):
            group["lr"] = lr * scale
        idx = next(batch_iter)
        loss = _step(session, model, optimizer, idx, feats if phase.on_features else None, cfg)
        lrs.append(lr)
        losses.append(loss)
        avg = 0.98 * avg + 0.02 * loss if math.isfinite(loss) else math.inf
        smoothed = avg / (1 - 0.98 ** (i + 1))
        yield LRStep(i + 1, num_steps, lr, loss, smoothed)
        best = min(best, smoothed)
        if stop.stopped or (stop_div and (not math.isfinite(smoothed) or smoothed > 4 * best)):
            break  # diverged: the rest of the curve says nothing new
    return lrs, losses


def _match_groups(optimizer, params, scales) -> list[float]:
    """The scale of each optimizer param group (Session.optimizer makes up to two per layer group)."""
    owner = {id(p): s for group, s in zip(params, scales) for p in group}
    return [owner[id(g["params"][0])] for g in optimizer.param_groups]


def _endless_batches(n: int, batch_size: int, generator: torch.Generator):
    while True:
        yield from data_lib.batches(n, min(batch_size, n), True, generator)


def _step(session: Session, model, optimizer, idx, feats, cfg: TrainConfig) -> float:
    y = session.train_y[idx]
    if feats is not None:
        head = model.get_classifier()
        head.train()
        logits = head(feats[idx])
    else:
        models.train_mode(model, cfg.resolved_freeze_bn())
        x = data_lib.augment(session.train_x[idx].float().div_(255.0), cfg.augment, session.generator)
        with session.autocast():
            logits = model(session.normalize(x))
    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        optimizer.step()
    return float(loss.item())


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
