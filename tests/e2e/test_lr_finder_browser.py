"""The LR finder tab in headless Chromium: while the range test runs, the status counts "step n / N · ETA m:ss" and
the curve is drawn as it grows; no status ever shows the step-0 "lr 0.00e+00" line; at the end a suggestion is
chosen only when the curve can be trusted. Also writes the README's picture of the tab (docs/lr_finder.png)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_browser import LR_TIMEOUT, choose_recipe, open_app, set_slider, tab, wait_for_text

pytestmark = [pytest.mark.e2e]

README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "lr_finder.png"
# The scratch recipe on the 900 built-in shapes trains for 144 steps, so the automatic range test takes 36; at 32 px
# they last a second or two on a quiet CPU. The page is updated every STREAM_INTERVAL seconds (a second in the app,
# a quarter here), so even then several updates come before the end.
STEPS, IMG_SIZE, STREAM_INTERVAL = 36, 32, 0.25

# What the tab showed at every change of its status or plot, gathered in the page: the status text and whether the
# plot held a picture then (a poll from here could miss the short-lived states of a quick run).
WATCH = """() => {
  window.lrSeen = [];
  const status = document.querySelector('#lr-status'), plot = document.querySelector('#lr-plot');
  const note = () => window.lrSeen.push({status: status.innerText, plot: !!plot.querySelector('img[src]')});
  const options = {subtree: true, childList: true, characterData: true, attributes: true};
  new MutationObserver(note).observe(status, options);
  new MutationObserver(note).observe(plot, options);
}"""


def test_the_lr_finder_shows_progress_and_a_growing_curve(app, page, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    from demo.handlers import lr_finder

    monkeypatch.setattr(lr_finder, "STREAM_INTERVAL", STREAM_INTERVAL)  # the server runs in this process

    url, _ = app
    open_app(page, url)
    tab(page, "Train").click()
    choose_recipe(page, "scratch")
    page.get_by_text("Advanced", exact=True).click()
    set_slider(page, "Image size (px)", IMG_SIZE)
    tab(page, "LR finder").click()
    steps = page.locator("#lr-num-steps input")
    expect(steps).to_have_value("")  # auto: sized to the training run
    expect(steps).to_have_attribute("placeholder", "auto")
    page.evaluate(WATCH)
    page.get_by_role("button", name="Run LR finder", exact=True).click()

    status = wait_for_text(page, "#lr-status", "Done", timeout=LR_TIMEOUT)
    assert re.search(r"Done in [\d.]+ s \(\d+ steps\)", status), status
    seen = page.evaluate("window.lrSeen")
    statuses = [s["status"] for s in seen]
    assert any(s.startswith("Preparing:") for s in statuses), statuses  # decoding at 32 px, said in words
    assert not any("0.00e+00" in s or "step 0 " in s for s in statuses), statuses  # no step-0 line
    live = [s for s in seen if re.search(rf"^Range test: step \d+ / {STEPS} · ETA \d+:\d\d · lr \d\.\d\de[-+]\d\d · "
                                         r"smoothed loss \d", s["status"])]
    assert live, f"no running status with a step count and an ETA: {statuses}"
    assert (f"LR finder: {STEPS} steps, about 25% of the 144 steps of the training run (auto: 25% of them, 20 to 100)"
            in live[-1]["status"])
    assert any(s["plot"] for s in live), f"the curve was not drawn before the end: {seen}"
    expect(page.locator("#lr-values")).to_contain_text("valley")
    # the choice made for the user follows the verdict on the curve
    chosen = page.locator("#lr-choice input[type=radio]:checked")
    expect(chosen).to_have_count(1)
    label = page.locator("#lr-choice label").filter(has=page.locator("input:checked")).inner_text()
    if "Not pre-selected" in page.locator("#lr-values").inner_text():
        assert label.startswith("keep the Train tab's"), label
    else:
        assert label.startswith("valley"), label
    expect(page.get_by_role("button", name="Use this LR", exact=True)).to_be_enabled()

    shot = tmp_path / "lr-finder.png"
    page.screenshot(path=str(shot), full_page=True)
    # README's picture: only refreshed when asked (SNAPFIT_UPDATE_SCREENSHOT=1) or missing, as test_browser does.
    if os.environ.get("SNAPFIT_UPDATE_SCREENSHOT") == "1" or not README_SHOT.exists():
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SHOT)
