"""Figures and tables drawn from engine results (matplotlib, rendered off-screen)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def lr_curve(lrs, losses, smoothed, suggestions: dict):
    """Loss against learning rate on a log axis, raw and smoothed, with a marker per suggestion."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if lrs:
        ax.plot(lrs, losses, color="#bbbbbb", linewidth=1, label="loss")
        ax.plot(lrs, smoothed, color="#1f77b4", linewidth=2, label="smoothed loss")
        markers = {"valley": "o", "steep": "s", "minimum": "^", "slide": "D"}
        for name, lr in suggestions.items():
            ax.plot([lr], [_interp(lr, lrs, smoothed)], markers.get(name, "o"), markersize=9, label=f"{name}: {lr:.2e}")
        finite = [v for v in smoothed if v == v and v != float("inf")]
        if finite:
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 4 * min(finite)) * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def _interp(lr, lrs, values):
    return float(np.interp(np.log10(lr), np.log10(lrs), values))


def class_counts(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"class": list(counts), "images": list(counts.values())})


LOSS_SERIES = ("train (per step)", "validation")


def loss_frame(points: list[tuple[int, float, str]]) -> pd.DataFrame:
    """The loss plot's data, always naming both series (with a row that has no point for each).

    Gradio 6.31's LinePlot takes its colour domain from the value it holds when it is first drawn (which for a
    hidden tab is when the tab is first opened), and later updates only swap the data: a series missing then
    is never drawn. Without these rows the page load's empty frame left the loss plot blank for good.
    """
    placeholders = [(float("nan"), float("nan"), name) for name in LOSS_SERIES]
    return pd.DataFrame(placeholders + list(points), columns=["step", "loss", "series"])


def accuracy_frame(history: list[dict]) -> pd.DataFrame:
    rows = [(h["epoch"], h["val_acc"] * 100) for h in history]
    return pd.DataFrame(rows, columns=["epoch", "val accuracy %"]) if rows else pd.DataFrame(
        {"epoch": pd.Series(dtype=int), "val accuracy %": pd.Series(dtype=float)}
    )
