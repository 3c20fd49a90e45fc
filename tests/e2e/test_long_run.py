"""A long training run in Chromium: the page's live plots stay bounded, and so does its JS heap.

A run of thousands of steps that is quick on a CPU: a head on cached features (the quick recipe) at 32 px, two
images a step, on the built-in shapes. The page streams it while the test reads the number of points each plot
draws and the page's JS heap (Chrome DevTools Protocol, after a forced garbage collection) before the run and late in
it. Before the plots were bounded, each update redrew every step so far: the heap grew with the run, and pages of
long runs became slow to respond.
"""
from __future__ import annotations

import re
import time

import pytest

from demo import plots
from tests.e2e.test_browser import choose_recipe, open_app, set_slider, tab, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 50  # the most this machine allows; the test stops the run long before its end
LATE_STEP = 800  # the step of the run from which the heap is read again
HEAP_GROWTH_MB = 25  # late floor above the idle page's heap: +9.5 MB measured with the plots bounded, +51 MB with
# a point per step (AMD EPYC, 2 cores)
CLEAN_UP_MB = 8  # a fall this large between reads is the plots' renderer letting go of replaced marks
CLEAN_UP_WAIT = 60  # the longest the test waits to see one (it came every ~15 s in a run of 30 steps/s)
STEP_TIMEOUT = 240  # a cap for a failing run, not an expectation: ~10 steps/s on two busy cores


def js_heap_mb(cdp) -> float:
    """The page's live JS heap in MB, read after a forced garbage collection."""
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6


def heap_floor_mb(cdp) -> float:
    """The level of the heap under the saw-tooth of a streaming page: the least of reads a second apart, taken
    until the renderer has let go of replaced marks at least once (or `CLEAN_UP_WAIT` seconds have passed).

    The plots' renderer (Vega) keeps the marks of replaced data until 10,000 have gathered, so the heap of a page
    that streams plots climbs by tens of MB and falls back every few seconds; a single read lands anywhere on that
    climb, the floor does not.
    """
    reads, deadline = [js_heap_mb(cdp)], time.monotonic() + CLEAN_UP_WAIT
    while time.monotonic() < deadline and max(reads) - reads[-1] < CLEAN_UP_MB:
        time.sleep(1)
        reads.append(js_heap_mb(cdp))
    return min(reads)


def points_drawn(page) -> dict[str, int]:
    """Points each training plot draws: its hover layer has one (invisible) symbol per row of its data."""
    return page.evaluate("""() => Object.fromEntries(['train-loss-plot', 'train-lr-plot'].map(id =>
        [id, document.querySelectorAll(`#${id} .mark-symbol path`).length]))""")


def test_a_long_run_keeps_the_page_light(app, page, tmp_path):
    url, jobs = app
    open_app(page, url)
    tab(page, "Train").click()
    choose_recipe(page, "scratch")
    choose_recipe(page, "quick")  # a head on ImageNet features: steps of milliseconds once the images are embedded
    set_slider(page, "Epochs", EPOCHS)
    page.get_by_text("Advanced", exact=True).click()
    set_slider(page, "Image size (px)", 32)
    set_slider(page, "Batch size", 2)
    cdp = page.context.new_cdp_session(page)
    idle = min(js_heap_mb(cdp) for _ in range(3))
    page.get_by_role("button", name="Start training", exact=True).click()

    most = {}

    def at_step(n: int) -> None:
        def reached(text: str) -> bool:
            for plot, count in points_drawn(page).items():
                most[plot] = max(most.get(plot, 0), count)
            found = re.search(r"step (\d+)/", text)
            return found is not None and int(found.group(1)) >= n
        wait_for_text(page, "#train-status", reached, timeout=STEP_TIMEOUT)

    at_step(LATE_STEP)
    late = heap_floor_mb(cdp)
    drawn = points_drawn(page)
    print(f"JS heap {idle:.1f} MB before the run, {late:.1f} MB from step {LATE_STEP}; points drawn {drawn}, "
          f"at most {most}")
    page.get_by_role("button", name="Stop", exact=True).click()
    assert [j.kind for j in jobs.submitted] == ["train"]

    # The loss plot holds the downsampled steps and one validation point per epoch; the others one row per step
    # (learning rate) or per epoch (accuracy). A point per step would be LATE_STEP or more.
    assert most["train-loss-plot"] <= plots.POINTS + EPOCHS, most
    assert most["train-lr-plot"] <= plots.POINTS, most
    assert drawn["train-loss-plot"] > plots.RECENT, drawn  # the plot did draw the run
    assert late - idle < HEAP_GROWTH_MB, f"the page's JS heap grew from {idle:.1f} MB to {late:.1f} MB"
    page.screenshot(path=str(tmp_path / "long-run.png"), full_page=True)  # the curves in epochs (a page that
    # drew every step was too busy to take it within 30 s)
