"""Multi-label scores: average precision per label, their mean (mAP, the score a multi-label run keeps its best
epoch by), the decision thresholds chosen on validation that turn probabilities into labels, and `summarize` /
`evaluate`: every metric of a labelled split (F1 at the thresholds, per-label table, precision-recall curves, the
images behind false positives and false negatives).

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


PR_POINTS = 100  # points kept per precision-recall curve: enough to plot, small enough for metrics.json


def precision_recall_curve(scores: torch.Tensor, hits: torch.Tensor, points: int = PR_POINTS) -> dict | None:
    """One label's precision and recall when everything scoring at least `threshold` is called positive, at each
    distinct score from the highest down (at most `points` of them, evenly spread; the ends always kept). None
    for a label without positives, where recall is undefined."""
    hits = hits.float()
    if hits.sum() == 0:
        return None
    order = scores.argsort(descending=True, stable=True)
    scores, hits = scores[order].float(), hits[order]
    tp = hits.cumsum(0)
    cut = torch.ones_like(scores, dtype=torch.bool)
    cut[:-1] = scores[1:] < scores[:-1]  # a cut only between different scores
    at = cut.nonzero().flatten()
    if len(at) > points:
        at = at[torch.linspace(0, len(at) - 1, points).round().long()]
    precision, recall = tp[at] / (at + 1), tp[at] / hits.sum()
    return dict(threshold=scores[at].tolist(), precision=precision.tolist(), recall=recall.tolist())


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _mistakes(mask: torch.Tensor, probs: torch.Tensor, descending: bool, top: int) -> list[dict]:
    """The images where `mask` holds, most confident first: (index, probability of the label)."""
    index = mask.nonzero().flatten()
    order = probs[index].argsort(descending=descending, stable=True)[:top]
    return [dict(index=int(index[k]), p=float(probs[index[k]])) for k in order]


def summarize(targets, probs, label_names: list[str], thresholds, top: int = 16) -> dict:
    """Every metric of a labelled split from the predicted probabilities (N x labels) and 0/1 targets.

    mAP (over labels with positives); micro F1 (all decisions pooled) and macro F1 (the mean over labels present or
    predicted: elsewhere F1 is 0/0) at `thresholds`; per label precision, recall, F1, AP, support and threshold
    (None where undefined); a precision-recall curve per label (None without positives); and per label the false
    positives (highest probability first) and false negatives (lowest first), at most `top` of each, as dataset
    positions with the label's probability."""
    probs, targets = torch.as_tensor(probs).float(), torch.as_tensor(targets).float()
    if probs.shape != targets.shape or probs.shape[1] != len(label_names) or len(thresholds) != len(label_names):
        raise ValueError(f"probs {tuple(probs.shape)}, targets {tuple(targets.shape)}, {len(label_names)} label names "
                         f"and {len(thresholds)} thresholds do not match")
    predicted, truth = decide(probs, thresholds), targets > 0.5
    tp, fp, fn = (predicted & truth).sum(0), (predicted & ~truth).sum(0), (~predicted & truth).sum(0)
    aps = average_precision(probs, targets)
    rows, curves, mistakes = [], {}, {}
    for c, name in enumerate(label_names):
        t, f_p, f_n = int(tp[c]), int(fp[c]), int(fn[c])
        rows.append(dict(name=name, precision=_ratio(t, t + f_p), recall=_ratio(t, t + f_n),
                         f1=_ratio(2 * t, 2 * t + f_p + f_n), ap=aps[c], support=t + f_n, threshold=float(thresholds[c]),
                         tp=t, fp=f_p, fn=f_n))
        curves[name] = precision_recall_curve(probs[:, c], targets[:, c])
        mistakes[name] = dict(false_positives=_mistakes(predicted[:, c] & ~truth[:, c], probs[:, c], True, top),
                              false_negatives=_mistakes(~predicted[:, c] & truth[:, c], probs[:, c], False, top))
    f1s = [r["f1"] for r in rows if r["f1"] is not None]
    pooled = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return dict(
        multi_label=True,
        map=mean_average_precision(probs, targets),
        micro_f1=_ratio(2 * pooled[0], 2 * pooled[0] + pooled[1] + pooled[2]) or 0.0,
        macro_f1=sum(f1s) / len(f1s) if f1s else 0.0,
        num_images=len(probs),
        label_names=list(label_names),
        thresholds=[float(t) for t in thresholds],
        per_label=rows,
        pr_curves=curves,
        mistakes=mistakes,
        predictions=[[c for c in range(len(label_names)) if row[c]] for row in predicted.tolist()],
    )


def targets_by_name(dataset, indices, label_names: list[str]) -> torch.Tensor:
    """Multi-hot targets (items x `label_names`) of a LabelledImages' items, its labels matched to the names: a name
    the data lacks is absent from every image, a data label not among the names is left out. Single-label data
    gives each item its one class."""
    column = {c: label_names.index(name) for c, name in enumerate(dataset.class_names) if name in label_names}
    targets = torch.zeros(len(indices), len(label_names))
    for row, i in enumerate(indices):
        item = dataset.labels[i]
        for c in item if dataset.multi_label else (item,):
            if c in column:
                targets[row, column[c]] = 1.0
    return targets


def evaluate(predictor, images: list, targets, label_names: list[str] | None = None, thresholds=None,
             batch_size: int = 64, top: int = 16) -> dict:
    """Run a multi-label `predictor` over images with multi-hot `targets` (N x the predictor's labels) and
    summarize, at the predictor's own thresholds unless others are given."""
    probs = torch.cat([predictor.probabilities(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    names = label_names or predictor.class_names
    return summarize(targets, probs, names, thresholds if thresholds is not None else predictor.thresholds, top)
