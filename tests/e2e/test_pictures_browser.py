"""Pictures people can see, in headless Chromium: after a tiny training run, the Classify tab's examples stay inside
their gallery, and the examples, the Grad-CAM overlay and the Evaluate tab's images come at the pictures' own size
(capped), not at the model's small working size."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from demo.actions import DISPLAY_SIDE
from engine.predict import CAM_SIDE
from tests.e2e.test_browser import open_app, start_training, tab, wait_for_text

pytestmark = [pytest.mark.e2e]

CLASSES = {"red": (200, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 210)}
PHOTO = (320, 240)  # the dataset's images: wider than DISPLAY_SIDE, so shown at 256 x 192
UPLOAD = (400, 300)  # the image classified: under CAM_SIDE, so its overlay keeps this size


def photo_zip(path, per_class: int = 8):
    """Landscape pictures (a noisy colour each class), far bigger than the model's working size."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for name, colour in CLASSES.items():
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (PHOTO[1], PHOTO[0], 3)), 0, 255).astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, "PNG")
                z.writestr(f"{name}/{i}.png", png.getvalue())
    return path


def natural_sizes(page, selector: str) -> set[tuple[int, int]]:
    return {tuple(size) for size in page.locator(selector).evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")}


def test_pictures_keep_their_size_and_stay_on_the_page(app, page, tmp_path):
    from playwright.sync_api import expect

    url, _ = app
    open_app(page, url)
    page.get_by_role("tab", name=".zip", exact=True).click()
    page.locator("#data-zip input[type=file]").set_input_files(str(photo_zip(tmp_path / "photos.zip")))
    wait_for_text(page, "#data-summary", "24 images in 3 classes", timeout=60)
    start_training(page, epochs=1)  # the scratch recipe, one epoch on a few images: seconds
    wait_for_text(page, "#train-status", "Finished", timeout=120)

    # Classify: the examples at display size, all inside their gallery and the page
    tab(page, "Classify").click()
    examples = page.locator("#classify-examples img")
    expect(examples.first).to_be_visible()
    page.wait_for_function("() => Array.from(document.querySelectorAll('#classify-examples img')).every(i => i.complete)")
    scale = DISPLAY_SIDE / max(PHOTO)
    assert natural_sizes(page, "#classify-examples img") == {(DISPLAY_SIDE, round(PHOTO[1] * scale))}
    overflow = page.evaluate("""() => {
        const box = document.querySelector('#classify-examples').getBoundingClientRect();
        const out = Array.from(document.querySelectorAll('#classify-examples img')).map(i => i.getBoundingClientRect())
            .filter(r => r.left < box.left - 1 || r.right > box.right + 1);
        return {images: out.length, page: document.scrollingElement.scrollWidth - window.innerWidth};
    }""")
    assert overflow == {"images": 0, "page": 0}, overflow

    # Grad-CAM over the uploaded picture at its own size, not the model's
    upload = tmp_path / "upload.png"
    Image.new("RGB", UPLOAD, CLASSES["green"]).save(upload)
    assert max(UPLOAD) <= CAM_SIDE
    image_block = page.locator(".block").filter(has=page.get_by_text("Image (upload, webcam or paste)", exact=True))
    image_block.locator("input[type=file]").set_input_files(str(upload))
    expect(image_block.locator("img")).to_be_visible()
    page.get_by_role("button", name="Classify image", exact=True).click()
    wait_for_text(page, "#prediction-time", "Where the model looked", timeout=60)
    cam = page.locator("#gradcam img")
    expect(cam).to_be_visible()
    page.wait_for_function("() => document.querySelector('#gradcam img').naturalWidth > 0")
    page.screenshot(path=str(tmp_path / "classify.png"), full_page=True)
    assert natural_sizes(page, "#gradcam img") == {UPLOAD}
    # an example chosen in the gallery: classified, its overlay at the example's display size
    examples.first.click()
    page.wait_for_function(f"() => document.querySelector('#gradcam img').naturalWidth === {DISPLAY_SIDE}")
    assert natural_sizes(page, "#gradcam img") == {(DISPLAY_SIDE, round(PHOTO[1] * scale))}

    # Evaluate: a cell's images and the highest losses are the originals at display size, and a cell of a few
    # images does not blow them up beyond that
    tab(page, "Evaluate").click()
    page.get_by_role("button", name="Evaluate the model", exact=True).click()
    wait_for_text(page, "#eval-summary", "validation images", timeout=60)
    for gallery in ("#eval-cell img", "#eval-top-losses img"):
        expect(page.locator(gallery).first).to_be_visible()
        page.wait_for_function(f"() => Array.from(document.querySelectorAll('{gallery}')).every(i => i.complete)")
        assert natural_sizes(page, gallery) == {(DISPLAY_SIDE, round(PHOTO[1] * scale))}, gallery
        widths = page.locator(gallery).evaluate_all("imgs => imgs.map(i => [i.getBoundingClientRect().width, i.naturalWidth])")
        assert all(shown <= natural for shown, natural in widths), (gallery, widths)
    page.screenshot(path=str(tmp_path / "evaluate.png"), full_page=True)
