"""Multi-label scores: average precision per label, their mean (mAP, the score a multi-label run keeps its best
epoch by), and the decision thresholds chosen on validation that turn probabilities into labels.

Inputs are probabilities or logits (N x labels; AP only depends on the order of the scores) and 0/1 targets of
the same shape. torch only: no scikit-learn dependency for a few lines of sorting.
"""
from __future__ import annotations

import torch

# A label gets its own threshold only with at least this many positive validation images: with fewer, the
# best-F1 cut is set by one or two images and is mostly noise, so the global threshold serves it instead.
MIN_POSITIVES_PER_LABEL = 5
DEFAULT_THRESHOLD = 0.5


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    """Per label: the mean of the precision at the rank of each positive, scores in decreasing order (the
    non-interpolated AP of scikit-learn's average_precision_score, ties broken by input order). None for a label
    without positives, where AP is undefined."""
    scores, targets = scores.float(), targets.float()
    out = []
    for label in range(scores.shape[1]):
        order = scores[:, label].argsort(descending=True, stable=True)
        hits = targets[order, label]
        positives = hits.sum()
        if positives == 0:
            out.append(None)
            continue
        precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
        out.append(float((precision * hits).sum() / positives))
    return out


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean AP over the labels that have positives (0.0 when none has)."""
    aps = [ap for ap in average_precision(scores, targets) if ap is not None]
    return sum(aps) / len(aps) if aps else 0.0


def best_f1_threshold(probs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of `probs >= threshold` over all labels pooled (1-D or N x labels inputs).
    The threshold sits half-way between the chosen cut's score and the next lower one, so it does not hinge on
    a single image's exact probability."""
    p, t = probs.flatten().float(), targets.flatten().float()
    if t.sum() == 0:
        return DEFAULT_THRESHOLD, 0.0
    order = p.argsort(descending=True, stable=True)
    p, t = p[order], t[order]
    tp = t.cumsum(0)
    f1 = 2 * tp / (torch.arange(1, len(t) + 1) + t.sum())  # F1 when the top k are called positive
    last = torch.ones_like(p, dtype=torch.bool)
    last[:-1] = p[1:] < p[:-1]  # a cut only between different scores
    f1 = torch.where(last, f1, torch.zeros_like(f1))
    k = int(f1.argmax())
    below = float(p[k + 1]) if k + 1 < len(p) else 0.0
    return (float(p[k]) + below) / 2, float(f1[k])


def choose_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Decision thresholds chosen on validation to maximise F1: one per label where the label has at least
    MIN_POSITIVES_PER_LABEL positive images, the global (all labels pooled) threshold for the others.

    Returns dict(kind="per_label" | "global", values=[one per label], global_=float, own=[indices of the labels
    with a threshold of their own]); kind is "global" when no label had enough positives for its own."""
    global_, _ = best_f1_threshold(probs, targets)
    values, own = [], []
    for label in range(probs.shape[1]):
        if targets[:, label].sum() >= MIN_POSITIVES_PER_LABEL:
            values.append(best_f1_threshold(probs[:, label], targets[:, label])[0])
            own.append(label)
        else:
            values.append(global_)
    return dict(kind="per_label" if own else "global", values=values, global_=global_, own=own)


def decide(probs: torch.Tensor, thresholds) -> torch.Tensor:
    """Which labels each image gets: probs >= its label's threshold (bool, N x labels)."""
    return probs >= torch.as_tensor(thresholds, dtype=probs.dtype)
