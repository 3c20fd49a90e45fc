"""Figures (matplotlib, off-screen) shared by the CLI, the app and model cards: the LR finder's curve and the
confusion matrix."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # not pyplot: its registry would keep every figure a server draws alive

MARKERS = {"valley": "o", "steep": "s", "minimum": "^", "slide": "D"}


def lr_curve(lrs, losses, smoothed, suggestions: dict):
    """Loss against learning rate on a log axis, raw and smoothed, with a marker per suggestion."""
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    if lrs:
        ax.plot(lrs, losses, color="#bbbbbb", linewidth=1, label="loss")
        ax.plot(lrs, smoothed, color="#1f77b4", linewidth=2, label="smoothed loss")
        for name, lr in suggestions.items():
            ax.plot([lr], [_interp(lr, lrs, smoothed)], MARKERS.get(name, "o"), markersize=9, label=f"{name}: {lr:.2e}")
        finite = [v for v in smoothed if np.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 4 * min(finite)) * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def confusion(cm, class_names: list[str]):
    """The confusion matrix as a heat map with the count in every cell (rows: actual, columns: predicted)."""
    cm = np.asarray(cm)
    n = len(class_names)
    side = min(12, 2.5 + 0.5 * n)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    if n <= 30:  # beyond that the numbers would not fit in the cells
        for a in range(n):
            for p in range(n):
                ax.text(p, a, int(cm[a, p]), ha="center", va="center", color="white" if cm[a, p] > cm.max() / 2 else "black")
    fig.tight_layout()
    return fig


def _interp(lr, lrs, values):
    return float(np.interp(np.log10(lr), np.log10(lrs), values))
