"""Multi-label in Chromium: Data (the built-in multi-label shapes) -> Train (a short run from scratch, scored by
mAP) -> Evaluate (per-label table, a label's mistakes as pictures) -> Classify (the labels at or above their
thresholds)."""
from __future__ import annotations

import pytest

from engine import sample
from tests.e2e.test_browser import TRAIN_TIMEOUT, assert_calm, open_app, start_training, tab, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_multi_label_from_data_to_classify(app, page, tmp_path):
    from playwright.sync_api import expect

    url, _ = app
    open_app(page, url)
    page.locator("#builtin-multi-btn").click()
    summary = wait_for_text(page, "#data-summary", "(multi-label)", timeout=120)
    assert "900 images with 6 labels" in summary and "seen together most" in summary
    expect(page.locator("#data-preview")).to_contain_text(", ")  # a picture captioned with all its labels

    start_training(page, epochs=4)
    status = wait_for_text(page, "#train-status", "Finished", timeout=TRAIN_TIMEOUT)
    assert "Best validation mAP" in status
    expect(page.locator("#train-results")).to_contain_text("validation mAP")
    expect(page.locator("#train-results table")).to_contain_text("threshold")

    tab(page, "Evaluate").click()
    page.get_by_role("button", name="Evaluate the model", exact=True).click()
    wait_for_text(page, "#eval-summary", "Multi-label: mAP", timeout=120)
    expect(page.locator("#eval-confusion")).to_contain_text("false negatives")
    expect(page.locator("#eval-confusion")).to_contain_text("star")
    expect(page.locator("#eval-cell img").first).to_be_visible()  # a short run leaves mistakes to look at
    assert_calm(page)

    tab(page, "Classify").click()
    expect(page.locator("#classify-model")).to_contain_text("validation mAP")
    images, _ = sample.generate_multi(1, seed=7)
    png = tmp_path / "shapes.png"
    images[0].save(png)
    image_block = page.locator(".block").filter(has=page.get_by_text("Image (upload, webcam or paste)", exact=True))
    image_block.locator("input[type=file]").set_input_files(str(png))
    wait_for_text(page, "#prediction-time", "Labels: ", timeout=60)
    expect(page.locator("#prediction")).to_contain_text("star")  # every label has its own probability
    expect(page.locator("#prediction")).to_contain_text("ring")
    assert_calm(page)
