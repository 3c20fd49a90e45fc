"""Data frames for Gradio's native plots, built from engine results (matplotlib figures are in engine/figures.py).

A live curve holds a bounded number of points however long the run (`downsample`): the page redraws every point
of a plot on every update, so a curve with one point per step made a long run's page slower and heavier by the
minute.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

POINTS = 500  # the most points one live curve holds...
RECENT = 100  # ...of which at least the latest this many are steps as they were, the older ones averaged in buckets


def class_counts(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"class": list(counts), "images": list(counts.values())})


def downsample(points: list[tuple[float, float]], limit: int = POINTS, recent: int = RECENT) -> list[tuple[float, float]]:
    """At most `limit` of the (x, y) points, the last `recent` or more as they are, the ones before averaged in
    buckets of 2, 4, 8... points (each bucket drawn at the mean of its x and y), so a curve keeps its shape.

    Gradio sends each update as a diff against the last one, row by row, so the rows a page already has should
    stay as they are: old points join the buckets `recent` at a time, and the buckets only merge in pairs when
    their number would pass the budget, once each time the run's length doubles. In between, an update only
    appends rows.
    """
    if len(points) <= limit:
        return list(points)
    head = (len(points) - recent) // recent * recent  # points in buckets; the rest, recent to 2 * recent - 1, stay
    budget = limit - 2 * recent
    width = 1 << max(0, math.ceil(math.log2(head / budget)))  # a power of two: merging pairs keeps old edges
    xy = np.asarray(points[:head], dtype=float)
    starts = np.arange(0, head, width)
    sizes = np.diff(np.append(starts, head))
    means = np.add.reduceat(xy, starts) / sizes[:, None]
    return [(float(x), float(y)) for x, y in means] + list(points[head:])


LOSS_SERIES = ("train (per step)", "validation")


def loss_frame(train: list[tuple[float, float]], validation: list[tuple[float, float]] = ()) -> pd.DataFrame:
    """The loss plot's data: (epoch, loss) of the training steps (downsampled) and of each epoch's validation,
    always naming both series (with a row that has no point for each).

    Gradio 6.31's LinePlot takes its colour domain from the value it holds when it is first drawn (which for a
    hidden tab is when the tab is first opened), and later updates only swap the data: a series missing then
    is never drawn. Without these rows the page load's empty frame left the loss plot blank for good.
    The validation rows come before the training ones: they change once an epoch, and rows that keep their
    place make small updates.
    """
    placeholders = [(float("nan"), float("nan"), name) for name in LOSS_SERIES]
    rows = (placeholders + [(x, y, LOSS_SERIES[1]) for x, y in downsample(list(validation))]
            + [(x, y, LOSS_SERIES[0]) for x, y in downsample(list(train))])
    return pd.DataFrame(rows, columns=["epoch", "loss", "series"])


SCORE_COLUMN = "%"  # the validation plot's y column
SCORE_TITLE = "Validation accuracy (mAP for multi-label data)"
# One title for both kinds of run: Gradio 6.31 drops an update's points when the same update changes the plot's
# title, and draws an empty plot on a discrete scale when it renames the y column.


def accuracy_frame(history: list[dict]) -> pd.DataFrame:
    """The validation plot's data: (epoch, accuracy or mAP in %) per epoch."""
    rows = downsample([(h["epoch"], h["val_acc"] * 100) for h in history])
    return pd.DataFrame(rows, columns=["epoch", SCORE_COLUMN]) if rows else pd.DataFrame(
        {"epoch": pd.Series(dtype=int), SCORE_COLUMN: pd.Series(dtype=float)}
    )


def lr_frame(points: list[tuple[float, float]]) -> pd.DataFrame:
    """The learning-rate plot's data: (epoch, learning rate) of the training steps (downsampled)."""
    rows = downsample(points)
    return pd.DataFrame(rows, columns=["epoch", "learning rate"]) if rows else pd.DataFrame(
        {"epoch": pd.Series(dtype=float), "learning rate": pd.Series(dtype=float)}
    )
