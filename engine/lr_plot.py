"""The LR finder's figure (matplotlib, off-screen): used by the CLI's lr_find.png and by the LR finder tab."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MARKERS = {"valley": "o", "steep": "s", "minimum": "^", "slide": "D"}


def lr_curve(lrs, losses, smoothed, suggestions: dict):
    """Loss against learning rate on a log axis, raw and smoothed, with a marker per suggestion."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
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


def save_png(result, path) -> None:
    """Write the figure of a finished range test (an LRFinished event) to `path`."""
    fig = lr_curve(result.lrs, result.losses, result.smoothed, result.suggestions)
    fig.savefig(path)
    plt.close(fig)


def _interp(lr, lrs, values):
    return float(np.interp(np.log10(lr), np.log10(lrs), values))
