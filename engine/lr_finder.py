"""Learning-rate range test: raise the LR exponentially, record the loss, suggest an LR; weights restored.

The test uses the same strategy and parameter groups as training (for `head` and the frozen phase of
`finetune`, the classifier on cached features, so it takes seconds). Suggestions follow fastai's
definitions, computed on the curve trimmed as fastai trims it (the first tenth of the planned steps, the last
five points):
  valley   the middle of the longest stretch where the loss keeps falling (fastai's default)
  steep    where the loss falls fastest
  minimum  the LR at the lowest loss, divided by 10
  slide    the last LR before the slope flattens, walking back from the end

How many steps: by default a quarter of the steps the training run with the same settings takes, 20 to 100
(engine.config.auto_steps): a test longer than the run it prepares wastes more than it saves. Whether to trust the suggestions
(`caution`): a curve too short for its smoothing, one whose batch-to-batch noise is as large as its fall, or one
that ends still falling gives a number that is mostly chance; the caller then keeps the LR it had.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from engine.config import FinderConfig, auto_steps
from engine.events import LRFinished, LRStarted, LRStep
from engine.stopping import StopToken
from engine.train import Learner, OnFeatures, OnImages, TrainConfig, ensure_decoded, epoch_batches, plan, preflight, set_lrs, total_steps, train_step

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
    training = total_steps(learner, plan(learner.cfg))
    num_steps = finder.num_steps or auto_steps(training)
    yield LRStarted(num_steps, training, finder.num_steps is None, learner.cfg.resolved_lr())
    saved = _snapshot(learner.model)
    try:
        lrs, losses = yield from _range_test(learner, finder, num_steps, stop)
    finally:
        _restore(learner.model, saved)
    smoothed = smooth(losses)
    suggestions, message = suggest(lrs, smoothed, num_steps)
    if "vit" in cfg.model.lower() or "eva" in cfg.model.lower():
        message = (message + " " + VIT_NOTE).strip()
    doubt = caution(lrs, losses, smoothed, num_steps, training) if suggestions else ""
    yield LRFinished(lrs, losses, smoothed, suggestions, message, stop.stopped, time.perf_counter() - t0, doubt)


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


def _range_test(learner: Learner, finder: FinderConfig, num_steps: int, stop: StopToken):
    """fastai's lr_find is a fit with a callback; here it is training's own step (train.train_step) on the first
    phase of the run, with an exponentially rising LR instead of the one-cycle schedule, one batch per step."""
    phase = plan(learner.cfg)[0]
    source = (yield from OnFeatures.embedded(learner)) if phase.on_features else OnImages(learner, phase)
    source.begin_epoch(1)
    # a throwaway optimiser whose peak LRs are the groups' relative scales: the test must leave no state behind
    optimizer = source.optimizer(1.0)
    lrs, losses = [], []
    gamma = (finder.end_lr / finder.start_lr) ** (1.0 / (num_steps - 1))
    batch_iter = _endless_batches(learner, source.mixing)
    best, avg, t0 = math.inf, 0.0, time.perf_counter()
    for i in range(num_steps):
        lr = finder.start_lr * gamma**i
        set_lrs(optimizer, lr)
        loss = train_step(optimizer, [next(batch_iter)], source.loss_of, source.no_sync, source.after_backward)
        lrs.append(lr)
        losses.append(loss)
        avg = 0.98 * avg + 0.02 * loss if math.isfinite(loss) else math.inf
        smoothed = avg / (1 - 0.98 ** (i + 1))
        yield LRStep(i + 1, num_steps, lr, loss, smoothed, time.perf_counter() - t0)
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



# The smoothing (beta 0.98) averages over about 1 / (1 - 0.98) = 50 steps: a shorter curve is mostly the average of
# its own start, and its suggestions lag the loss by half the range.
TRUSTED_STEPS = 50
# The smoothed loss must fall by at least this many times the batch-to-batch noise of the raw loss.
TRUSTED_FALL = 2.0


def caution(lrs: list[float], losses: list[float], smoothed: list[float], planned: int, training_steps: int | None = None) -> str:
    """Why the suggestions of this curve should not be trusted, in plain words; "" when the curve is clear.

    Four ways a curve misleads (the first that applies is named): too few steps for the smoothing; a test longer
    than the training it prepares (on a tiny dataset it trains the model more than the run will, so its loss falls
    with the epochs, not the LR); a loss still falling when the test ended (the best LR is beyond the range); and a
    fall no larger than the batch-to-batch noise (no clear descent: the valley is where the noise put it).
    `planned`: the steps the test was to take; `training_steps`: those of the training run.
    """
    ran = next((i for i, v in enumerate(smoothed) if not math.isfinite(v)), len(smoothed))
    if ran < TRUSTED_STEPS:
        return (f"the curve has only {ran} steps, and its smoothing averages over about {TRUSTED_STEPS}: a curve this "
                f"short cannot place a learning rate.")
    if training_steps and len(lrs) > training_steps:
        return (f"the test ran {len(lrs)} steps, more than the {training_steps} steps of the training run: on this "
                f"little data its loss falls because it trains the model more than the run will, whatever the LR.")
    raw, s = np.asarray(losses[:ran], dtype=float), np.asarray(smoothed[:ran], dtype=float)
    lo = planned // 10  # as suggest() trims the start
    i_min = lo + int(np.argmin(s[lo:]))
    if i_min >= ran - max(3, ran // 20) and ran == len(lrs):
        return (f"the loss was still falling when the test ended (at {lrs[ran - 1]:.1e}): the best rate may be beyond "
                f"the range tested; raise the end LR or run more steps.")
    fall = float(s[lo : i_min + 1].max() - s[i_min])
    noise = float(1.4826 * np.median(np.abs(np.diff(raw[lo:]))) / math.sqrt(2))  # the raw loss's spread per batch (robust)
    if fall < TRUSTED_FALL * noise:
        return (f"the smoothed loss fell by only {fall:.3g}, while the loss jumps by about {noise:.3g} from one batch to "
                f"the next: the curve shows no clear descent, so where its valley lies is mostly chance.")
    return ""
