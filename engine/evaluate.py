"""Metrics from predictions: accuracy, per-class accuracy, the confusion matrix."""
from __future__ import annotations

import torch


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are the actual class, columns the predicted class."""
    index = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor, class_names: list[str]) -> dict[str, float | None]:
    """Recall of each class on the given split; None for a class with no items there."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    totals = cm.sum(1)
    return {
        name: (float(cm[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(class_names)
    }
