"""The live plots' data: bounded however long the run, keeping the curve's shape, in epochs, and cheap to update."""
import math

import numpy as np
import pytest
from gradio.utils import diff

from demo import plots
from demo.progress import LOG_LINES, TrainingProgress
from engine.events import EpochEnd, Log, Started, Step


def curve(n: int) -> list[tuple[float, float]]:
    """A noisy decreasing loss over n steps, x in epochs of 90 steps."""
    rng = np.random.default_rng(0)
    return [(i / 90, 2 * math.exp(-i / 500) + float(rng.normal(0, 0.1))) for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [plots.POINTS + 1, 1_000, 4_321, 100_000])
def test_a_long_curve_is_bounded_its_latest_steps_exact_and_its_buckets_averages(n):
    points = curve(n)
    shown = plots.downsample(points)
    assert len(shown) <= plots.POINTS
    exact = 0
    while exact < len(shown) and shown[-1 - exact] == points[-1 - exact]:
        exact += 1
    assert exact >= plots.RECENT  # the latest steps as they were
    head, buckets = points[:n - exact], shown[:len(shown) - exact]
    # Each bucket is the mean of its points: all but the last hold a power of two of them, so the buckets' means,
    # weighted by their sizes, give back the mean of every point before the exact ones.
    width = 1 << math.ceil(math.log2(len(head) / len(buckets)))
    sizes = [width] * (len(buckets) - 1) + [len(head) - width * (len(buckets) - 1)]
    assert 0 < sizes[-1] <= width
    for axis in (0, 1):
        weighted = sum(b[axis] * size for b, size in zip(buckets, sizes)) / len(head)
        assert weighted == pytest.approx(np.mean([p[axis] for p in head]), rel=1e-9)
    assert buckets[0] == pytest.approx(tuple(np.mean(points[:width], axis=0)))
    xs = [x for x, _ in shown]
    assert xs == sorted(xs)  # still one point after the other along the run


def test_a_short_curve_is_drawn_as_it_is():
    points = curve(plots.POINTS)
    assert plots.downsample(points) == points
    assert plots.downsample([]) == []


def test_an_update_rewrites_few_of_the_rows_the_page_has():
    """Gradio sends each update as a diff against the last: a bounded curve that moved every point on each step
    would send all of them every time."""
    points = curve(12_000)
    edits, updates, previous = 0, 0, plots.downsample(points[:5_000])
    for n in range(5_007, 12_000, 7):  # a page update every 7 steps
        shown = plots.downsample(points[:n])
        edits += len(diff([list(p) for p in previous], [list(p) for p in shown]))
        previous, updates = shown, updates + 1
    assert edits / updates < 50  # values rewritten per update on average (28 here); a whole rewrite would be ~1,000


def test_steps_and_validations_are_placed_in_epochs():
    progress = TrainingProgress()
    progress.add(Started(epochs=2, steps_per_epoch=4, total_steps=8, num_train=8, num_val=2, model="resnet10t",
                         strategy="full", device="cpu"))
    for step in range(1, 9):
        progress.add(Step(step=step, epoch=(step - 1) // 4 + 1, loss=1.0 / step, lr=1e-3, images_per_s=10.0))
        if step % 4 == 0:
            progress.add(EpochEnd(epoch=step // 4, train_loss=0.5, val_loss=0.4, val_acc=0.5, seconds=1.0, lr=1e-3))
    assert [x for x, _ in progress.train_loss] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert progress.val_loss == [(1, 0.4), (2, 0.4)]
    frame = plots.loss_frame(progress.train_loss, progress.val_loss).dropna()
    assert list(frame.columns) == ["epoch", "loss", "series"]
    assert frame[frame.series == plots.LOSS_SERIES[1]].epoch.tolist() == [1, 2]
    assert plots.lr_frame(progress.lrs).epoch.tolist() == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


def test_the_log_shows_a_bounded_tail_that_moves_in_blocks():
    progress = TrainingProgress()
    shown = []
    for i in range(5 * LOG_LINES):
        progress.add(Log(f"line {i}"))
        shown.append(progress.log_tail().splitlines())
    assert max(map(len, shown)) < 2 * LOG_LINES and all(lines[-1] == f"line {i}" for i, lines in enumerate(shown))
    moves = sum(not now[0] == before[0] for before, now in zip(shown, shown[1:]))
    assert moves == 4  # once every LOG_LINES lines; every other update only appends
