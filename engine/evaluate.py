"""Metrics from predictions: accuracy, per-class precision/recall/F1, the confusion matrix, top losses and the
most-confused class pairs. `evaluate()` runs a Predictor over labelled images and gathers all of them.
Single-label only: a multi-label model's metrics are engine.multilabel's summarize() and evaluate()."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.errors import UserError


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are the actual class, columns the predicted class."""
    index = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor, class_names: list[str]) -> dict[str, float | None]:
    """Recall of each class on the given split; None for a class with no items there."""
    scores = per_class_scores(confusion_matrix(y_true, y_pred, len(class_names)), class_names)
    return {row["name"]: row["recall"] for row in scores}


def per_class_scores(cm: torch.Tensor, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of every class (None where a ratio has nothing to divide by)."""
    rows = []
    for i, name in enumerate(class_names):
        tp, actual, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        precision = tp / predicted if predicted else None
        recall = tp / actual if actual else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if actual else None)
        rows.append(dict(name=name, precision=precision, recall=recall, f1=f1, support=actual))
    return rows


def most_confused(cm: torch.Tensor, class_names: list[str], limit: int = 10) -> list[dict]:
    """Off-diagonal cells, largest first: (actual, predicted, count), as fastai's most_confused."""
    pairs = [(int(cm[a, p]), a, p) for a in range(len(class_names)) for p in range(len(class_names)) if a != p and cm[a, p]]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [dict(actual=class_names[a], predicted=class_names[p], count=n) for n, a, p in pairs[:limit]]


def summarize(y_true: torch.Tensor, probs: torch.Tensor, class_names: list[str], top_losses: int = 16) -> dict:
    """Every metric of a labelled split from the predicted probabilities (N x classes)."""
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    losses = F.nll_loss(probs.clamp_min(1e-12).log(), y_true, reduction="none")
    order = losses.argsort(descending=True)[:top_losses].tolist()
    return dict(
        accuracy=float((y_pred == y_true).float().mean()),
        num_images=len(y_true),
        per_class=per_class_scores(cm, class_names),
        confusion_matrix=cm.tolist(),
        class_names=list(class_names),
        most_confused=most_confused(cm, class_names),
        predictions=y_pred.tolist(),  # per image, in input order: what the confusion matrix counts
        top_losses=[dict(index=i, actual=class_names[int(y_true[i])], predicted=class_names[int(y_pred[i])],
                         p_actual=float(probs[i, y_true[i]]), loss=float(losses[i])) for i in order],
    )


def items_of_known_classes(dataset, indices, class_names: list[str]) -> list[int]:
    """The items (of `indices` into a LabelledImages) whose class the model knows; a clear error when none is."""
    known = [i for i in indices if dataset.class_names[dataset.labels[i]] in class_names]
    if not known:
        raise UserError(f"None of the dataset's classes ({', '.join(dataset.class_names)}) are classes of this model.")
    return known


def evaluate(predictor, images: list, labels: list[int], class_names: list[str], batch_size: int = 64) -> dict:
    """Run `predictor` over labelled images whose labels index `class_names` (the predictor's own classes)."""
    probs = torch.cat([predictor.probabilities(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    return summarize(torch.as_tensor(labels, dtype=torch.long), probs, class_names)
