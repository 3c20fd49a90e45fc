"""Data frames for Gradio's native plots, built from engine results (matplotlib figures are in engine/figures.py)."""
from __future__ import annotations

import pandas as pd


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


def lr_frame(points: list[tuple[int, float]]) -> pd.DataFrame:
    """The learning-rate plot's data: (step, learning rate) of every training step so far."""
    return pd.DataFrame(points, columns=["step", "learning rate"]) if points else pd.DataFrame(
        {"step": pd.Series(dtype=int), "learning rate": pd.Series(dtype=float)}
    )
