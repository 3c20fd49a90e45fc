"""Figures (matplotlib, off-screen) shared by the CLI, the app and model cards: the LR finder's curve and the
confusion matrix."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # not pyplot: its registry would keep every figure a server draws alive

MARKERS = {"valley": "o", "steep": "s", "minimum": "^", "slide": "D"}


def lr_curve(lrs, losses, smoothed, suggestions: dict):
    """Loss against learning rate on a log axis, raw and smoothed, with a marker per suggestion; the legend beside
    the axes, never over the curve. Works on a curve still growing (no suggestions yet)."""
    fig = Figure(figsize=(8, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    if lrs:
        ax.plot(lrs, losses, color="#bbbbbb", linewidth=1, label="loss")
        ax.plot(lrs, smoothed, color="#1f77b4", linewidth=2, label="smoothed loss")
        for name, lr in suggestions.items():
            ax.plot([lr], [_interp(lr, lrs, smoothed)], MARKERS.get(name, "o"), markersize=9, label=f"{name}: {lr:.2e}")
        limits = loss_limits(losses, smoothed)
        if limits:
            ax.set_ylim(*limits)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    if lrs:
        fig.legend(loc="outside right upper", fontsize=9)
    return fig


def loss_limits(losses, smoothed) -> tuple[float, float] | None:
    """y-limits for the part of the curve before it diverges: the diverging tail (which can reach many times the
    starting loss) runs off the top instead of squashing the rest. That part ends where the smoothed loss, past its
    minimum, climbs above where it started (or half as high again as the minimum, for a curve that never fell).
    The smoothed loss sets the top: the raw loss shoots up well before it (the smoothing lags), and its spikes would
    squash the curve that matters. The bottom also takes in most of the raw loss's lows over that part, which the
    lagging smoothed curve never reaches."""
    s = np.asarray(smoothed, dtype=float)
    infinite = np.flatnonzero(~np.isfinite(s))
    s = s[: infinite[0]] if len(infinite) else s
    if not len(s):
        return None
    i = int(np.argmin(s))
    ceiling = max(s[: i + 1].max(), s[i] + 0.5 * abs(s[i]))
    above = np.flatnonzero(s[i:] > ceiling)
    end = i + (above[0] if len(above) else len(s) - i)
    raw = np.asarray(losses[:end], dtype=float)
    raw = raw[np.isfinite(raw)]
    low, high = min(s[:end].min(), np.percentile(raw, 2) if len(raw) else np.inf), s[:end].max()
    pad = max(0.05 * (high - low), 0.01 * abs(high), 1e-3)
    return float(low - pad), float(high + pad)


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


def run_curves(curves: dict[str, list[tuple[float, float]]], ylabel: str, title: str, percent: bool = False,
               colours: list[int] | None = None):
    """Several runs' curves over their epochs on one set of axes, a colour each (`colours`: an index per curve into
    matplotlib's cycle, so a run keeps its colour whichever others are drawn), the legend under the axes (two such
    plots side by side stay readable)."""
    rows = (len(curves) + 1) // 2
    fig = Figure(figsize=(6, 3 + 0.25 * rows), dpi=100, layout="constrained")
    ax = fig.subplots()
    for k, (name, points) in enumerate(curves.items()):
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, [v * 100 for v in values] if percent else values, marker="o", markersize=3,
                    color=f"C{(colours[k] if colours else k) % 10}", label=name)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
    if percent:
        ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    if any(curves.values()):
        fig.legend(loc="outside lower center", ncols=min(2, len(curves)), fontsize=8)
    return fig


def pr_curves(curves: dict, thresholds: dict[str, float] | None = None):
    """Precision against recall, one line per label (engine.multilabel.summarize's pr_curves; a label without
    positives has none), each with a dot where its decision threshold sits; the legend beside the axes."""
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    for name, curve in curves.items():
        if not curve:
            continue
        (line,) = ax.plot(curve["recall"], curve["precision"], linewidth=1.5, label=name)
        t = (thresholds or {}).get(name)
        if t is not None and curve["threshold"]:  # the curve's point nearest the label's threshold
            k = int(np.argmin(np.abs(np.asarray(curve["threshold"], dtype=float) - t)))
            ax.plot([curve["recall"][k]], [curve["precision"][k]], "o", color=line.get_color(), markersize=6)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall per label (dots: the decision thresholds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9)
    return fig
