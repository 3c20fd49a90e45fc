"""What a newcomer sees, in Chromium: every tab says what it uses (the dataset to train on, the model that
classifies and exports), options that cannot work are not offered, a poor run is warned of before it starts, an
expected problem is one calm message, an image added on Classify is classified at once, and no raw translation
key reaches a screen reader."""
from __future__ import annotations

import re

import pytest

from engine import sample
from tests.e2e.test_browser import FIRST_MODEL_TIMEOUT, assert_calm, choose_recipe, open_app, set_slider, tab, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Every text and label a screen reader may read: attributes, and text nodes (the sr-only status lines too).
READABLE_TEXT_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('*'))
    for (const a of ['aria-label', 'title', 'alt', 'placeholder']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) out.push(walker.currentNode.textContent.trim());
  return out;
}"""
TRANSLATION_KEY = re.compile(r"^(common|errors|upload_text|block|blocks|image|file|gallery)\.[a-z_]+$")


def untranslated(page) -> list[str]:
    return sorted({text for text in page.evaluate(READABLE_TEXT_JS) if TRANSLATION_KEY.match(text)})


def test_each_tab_says_what_it_uses_and_expected_problems_stay_calm(app, page, tmp_path):
    from playwright.sync_api import expect

    url, _ = app
    open_app(page, url)
    page.locator("#first-model-btn").click()
    wait_for_text(page, "#first-model-status", "First model ready", timeout=FIRST_MODEL_TIMEOUT)
    assert untranslated(page) == []  # Gradio's "common.complete" for a finished event is translated

    # Train: the dataset it will train on; pretrained is offered only for a model whose weights are here
    tab(page, "Train").click()
    expect(page.locator("#train-lr input")).to_have_value("")  # the recipe's LR is the engine's: not a "0" sent as is
    expect(page.locator("#train-plan")).to_contain_text("900 images in 6 classes")
    expect(page.locator("#train-plan")).to_contain_text("builtin:shapes")
    weights = page.locator("#train-weights input")
    expect(weights).to_have_value("pretrained")  # the default model's are built in
    model = page.locator("#train-model input")
    model.fill("resnet18.a1_in1k")
    model.press("Enter")
    expect(weights).to_have_value("scratch")  # offline: no weights for it here, and none offered
    weights.click()
    expect(page.get_by_role("option")).to_have_text([re.compile(r"^\W*scratch$")])  # "✓ scratch": the one offered
    weights.press("Escape")
    expect(page.locator("#model-note")).to_contain_text("no pretrained weights here")
    # a poor run is warned of before it starts: ImageNet features on tiny images
    choose_recipe(page, "best")  # back to the built-in Lite0: pretrained is offered again, and chosen
    expect(weights).to_have_value("pretrained")
    page.get_by_text("Advanced", exact=True).click()
    set_slider(page, "Image size (px)", 48)
    expect(page.locator("#train-plan")).to_contain_text("Likely a poor run")
    expect(page.locator("#train-plan")).to_contain_text("At 48 px")

    # LR finder: an impossible range is one calm message under Run, and the tab keeps what it showed
    tab(page, "LR finder").click()
    page.locator("#lr-start-lr input").fill("1")
    page.locator("#lr-end-lr input").fill("0.001")
    page.get_by_role("button", name="Run LR finder", exact=True).click()
    expect(page.locator("#lr-notice")).to_contain_text("start")
    assert_calm(page)
    expect(page.locator("#lr-status")).to_have_text("Not run yet.")

    # Classify: the model in use is named, and an uploaded image is classified without another click
    tab(page, "Classify").click()
    in_use = page.locator("#classify-model")
    expect(in_use).to_contain_text("tf_efficientnet_lite0.in1k")
    expect(in_use).to_contain_text("6 classes (circle")
    expect(in_use).to_contain_text("run 1: quick (first model)")
    images, _ = sample.generate(1, seed=7)
    png = tmp_path / "shape.png"
    images[0].save(png)
    image_block = page.locator(".block").filter(has=page.get_by_text("Image (upload, webcam or paste)", exact=True))
    image_block.locator("input[type=file]").set_input_files(str(png))
    wait_for_text(page, "#prediction", lambda text: any(name in text for name in sample.CLASSES), timeout=60)
    expect(page.locator("#prediction-time")).to_contain_text("Predicted in")
    expect(page.get_by_text("Draw", exact=True).first).to_be_visible()  # the sketch tab's label fits any dataset

    # Export: the same model, named the same way
    tab(page, "Export").click()
    expect(page.locator("#export-model")).to_contain_text("tf_efficientnet_lite0.in1k")
    expect(page.locator("#export-model")).to_contain_text("run 1: quick (first model)")
    assert untranslated(page) == []
