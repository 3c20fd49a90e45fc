"""The Data tab in headless Chromium: a folder picked with the browser's directory picker keeps its class
subfolders (Gradio alone would send basenames only), a .zip loads, the built-in button works, and the Hub
answers at once with "offline" here."""
from __future__ import annotations

import zipfile

import pytest
from PIL import Image

from tests.e2e.test_browser import assert_calm, open_app, wait_for_text

pytestmark = [pytest.mark.e2e]


def make_folder(root, counts):
    """Class subfolders whose files share basenames (cats/img 0.png, dogs é/img 0.png) with different pixels."""
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (200 * c, 40 * i, 90)).save(root / name / f"img {i}.png")
    return root


def test_data_sources_in_browser(app, page, tmp_path):
    from playwright.sync_api import expect

    url, _ = app
    open_app(page, url)

    # A folder from disk, through the directory picker: the classes are its subfolders.
    picked = make_folder(tmp_path / "my pets", {"cats": 3, "dogs é": 2})
    (picked / "cats" / "notes.txt").write_text("not an image")
    page.get_by_role("tab", name="Folder", exact=True).click()
    page.locator("input[type=file][webkitdirectory]").set_input_files(str(picked))  # the Folder button's picker
    summary = wait_for_text(page, "#data-summary", "5 images in 2 classes", timeout=60)
    assert "cats (3)" in summary and "dogs é (2)" in summary
    expect(page.locator("#data-warnings")).to_contain_text("cats/notes.txt")
    expect(page.locator("#data-preview img")).to_have_count(5)
    page.screenshot(path=str(tmp_path / "folder.png"), full_page=True)
    # the same session trains on it: the Train tab's augmentation preview draws from these classes
    page.get_by_role("tab", name="Train", exact=True).click()
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_role("button", name="Preview augmentation", exact=True).click()
    expect(page.locator("#augment-preview")).to_contain_text("original")
    originals = {line.split(":")[0] for line in page.locator("#augment-preview").inner_text().splitlines()
                 if line.endswith(": original")}
    assert originals and originals <= {"cats", "dogs é"}, originals
    page.get_by_role("tab", name="Data", exact=True).click()

    # A .zip of class folders.
    src = make_folder(tmp_path / "zipped", {"red": 2, "green": 2, "blue": 6})
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.rglob("*.png"):
            zf.write(f, f.relative_to(src))
    page.get_by_role("tab", name=".zip", exact=True).click()
    page.locator("#data-zip input[type=file]").set_input_files(str(archive))
    wait_for_text(page, "#data-summary", "10 images in 3 classes", timeout=60)
    expect(page.locator("#data-warnings")).to_contain_text("Imbalanced classes")

    # The Hub, offline here: one calm message under the button, and the page keeps its dataset as it was
    # (no error toast, no "Error" badge over the summary, the chart or the preview).
    page.get_by_role("tab", name="Hub dataset", exact=True).click()
    for typed, message in [("AI-Lab-Makerere/beans", "ffline"), ("", "Type a Hub dataset id")]:
        page.locator("#hub-id input").fill(typed)
        page.get_by_role("button", name="Load from the Hub", exact=True).click()
        expect(page.locator("#data-notice")).to_contain_text(message)
        assert_calm(page)
        expect(page.locator("#data-summary")).to_contain_text("10 images in 3 classes")
        expect(page.locator("#data-preview img")).to_have_count(8)  # at most 4 a class: 2 + 2 + 4

    # Back to the built-in set.
    page.get_by_role("tab", name="Built-in", exact=True).click()
    page.get_by_role("button", name="Use the built-in shapes dataset", exact=True).click()
    wait_for_text(page, "#data-summary", "900 images in 6 classes", timeout=60)
    expect(page.locator("#data-notice")).to_have_text("")  # a load that worked clears the notice
