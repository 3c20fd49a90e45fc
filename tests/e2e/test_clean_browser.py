"""The Clean tab and the Train tab's comparison of runs in headless Chromium (issue 19): a first model on a small
dataset holding one exact copy of a picture, the cleaner's most suspicious pictures and near-duplicates, one picture
moved to another class and the copy deleted, a second run on the cleaned data, and both runs compared on the Train
tab, each one made the model Classify uses in turn.
"""
from __future__ import annotations

import io
import re
import time
import zipfile
from collections import Counter

import pytest

from engine import sample
from tests.e2e.test_browser import FIRST_MODEL_TIMEOUT, TRAIN_TIMEOUT, assert_calm, open_app, set_slider, tab, wait_for_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLASSES = sample.CLASSES[:3]
PER_CLASS = 12  # small: two busy CPU cores train on it twice
COPIED = f"{CLASSES[0]}/00.png"  # the picture the dataset holds twice
COPY = f"{CLASSES[0]}/00-copy.png"
DECIDE_TRIES = 10


def dataset_zip(path) -> tuple[str, Counter]:
    """A .zip of generated shapes, one folder per class, with COPIED also saved as COPY; returns it and its counts."""
    images, labels = sample.generate(PER_CLASS, seed=19)
    counts = Counter()
    with zipfile.ZipFile(path, "w") as zf:
        for image, label in zip(images, labels):
            if label < len(CLASSES):
                png = io.BytesIO()
                image.save(png, "PNG")
                name = f"{CLASSES[label]}/{counts[CLASSES[label]]:02d}.png"
                counts[CLASSES[label]] += 1
                zf.writestr(name, png.getvalue())
        zf.writestr(COPY, zf.read(COPIED))
    counts[CLASSES[0]] += 1
    return str(path), counts


def class_counts(page) -> Counter:
    """The Data tab's "Classes: circle (13), ..." line."""
    text = page.locator("#data-summary").inner_text()
    return Counter({name: int(n) for name, n in re.findall(r"(\w+) \((\d+)\)", text)})


def captions(page, gallery: str) -> list[str]:
    return [text.strip() for text in page.locator(f"{gallery} .caption-label").all_inner_texts()]


def choose_option(page, dropdown: str, option: str) -> None:
    from playwright.sync_api import expect

    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"{dropdown} input")).to_have_value(option)


def decide(page, gallery: str, position: int, button: str, wanted: str) -> None:
    """Click the picture at `position`, then `button`, until the pending list says `wanted`. The picture's select
    event tells the server which one was chosen; a button clicked before that answer is back finds nothing chosen
    (the notice says so), and a second click does not."""
    from playwright.sync_api import expect

    page.locator(f"{gallery} .thumbnail-item").nth(position).click()
    for _ in range(DECIDE_TRIES):
        page.locator(button).click()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if wanted in page.locator("#clean-pending").inner_text():
                expect(page.locator("#clean-notice")).to_have_text("")
                return
            if "Click a picture" in page.locator("#clean-notice").inner_text():
                break  # the click beat the select event: click the button again
            time.sleep(0.2)
    pytest.fail(f"{button} never gave {wanted!r}: pending {page.locator('#clean-pending').inner_text()!r}, "
                f"notice {page.locator('#clean-notice').inner_text()!r}")


def cell(page, row: int, col: int):
    """A cell of the Train tab's table of runs (rows oldest first)."""
    return page.locator(f"#runs-table [data-testid=cell-{row}-{col}]")


def in_use(page) -> list[bool]:
    """Which runs the table marks as the one in use."""
    return [cell(page, row, 0).inner_text().strip() == "✓" for row in range(page.locator("#runs-table .virtual-row").count())]


def use_run(page, title: str, label: str) -> str:
    """Make the run titled `title` the session's model on the Train tab's comparison; returns the Classify tab's
    line naming the model in use, once it names the run's `label`."""
    from playwright.sync_api import expect

    tab(page, "Train").click()
    choose_option(page, "#runs-use", title)
    page.locator("#runs-use-btn").click()
    number = title.split(" · ")[0].removeprefix("run ")
    expect(cell(page, int(number) - 1, 0)).to_have_text("✓")  # the table's "in use" column
    assert in_use(page) == [k == int(number) - 1 for k in range(2)], in_use(page)
    expect(page.locator("#runs-notice")).to_have_text("")
    tab(page, "Classify").click()
    return wait_for_text(page, "#classify-model", lambda text: text.strip().endswith(f"· run {number}: {label}"),
                         timeout=30)


def test_clean_retrain_and_compare_in_browser(app, page, tmp_path):
    from playwright.sync_api import expect

    url, jobs = app
    archive, counts = dataset_zip(tmp_path / "shapes.zip")
    total = sum(counts.values())

    # 1. The dataset with its copy, through the Data tab's .zip source; a first model on it.
    open_app(page, url)
    page.get_by_role("tab", name=".zip", exact=True).click()
    page.locator("#data-zip input[type=file]").set_input_files(archive)
    wait_for_text(page, "#data-summary", f"{total} images in {len(CLASSES)} classes", timeout=60)
    assert class_counts(page) == counts
    page.locator("#first-model-btn").click()
    wait_for_text(page, "#first-model-status", "First model ready", timeout=FIRST_MODEL_TIMEOUT)

    # 2. The cleaner ranks every picture; one (not of the copied class, so it is not the copy deleted next) moves to
    # another class.
    tab(page, "Clean").click()
    page.locator("#clean-split label").filter(has_text=re.compile(r"^\s*both\s*$")).click()
    page.locator("#clean-rank").click()
    expect(page.locator("#clean-suspects .thumbnail-item").first).to_be_visible(timeout=120_000)
    shown = captions(page, "#clean-suspects")
    assert all(re.fullmatch(r"\w+ → \w+ \d+% · (train|validation)", c) for c in shown), shown
    assert {c.split(" · ")[-1] for c in shown} == {"train", "validation"}, shown  # "both" splits
    position = next(k for k, c in enumerate(shown) if not c.startswith(f"{CLASSES[0]} "))
    label = shown[position].split(" → ")[0]
    target = next(name for name in CLASSES if name != label)
    choose_option(page, "#clean-move-to", target)
    decide(page, "#clean-suspects", position, "#clean-move", "1 change to apply")
    expect(page.locator("#clean-pending")).to_contain_text(re.compile(rf"move .*{label}/\d+\.png from {label} to {target}"))

    # 3. Near-duplicates at 0.99: the copy and its original, group 1; the second of them is deleted.
    set_slider(page, "Similarity", 0.99)
    page.locator("#clean-duplicates-btn").click()
    wait_for_text(page, "#clean-notice", "1 group of near-duplicates (2 images) at similarity 0.99", timeout=120)
    dups = captions(page, "#clean-duplicates")
    assert len(dups) == 2 and all(re.fullmatch(rf"group 1 · (LEAK · )?(train|validation) · {CLASSES[0]}", c)
                                  for c in dups), dups
    decide(page, "#clean-duplicates", 1, "#clean-delete", "2 changes to apply")
    pending = page.locator("#clean-pending").inner_text()
    assert re.search(rf"delete {re.escape(COPIED)}|delete {re.escape(COPY)}", pending), pending

    # 4. Apply: the Data tab shows the cleaned copy, one picture fewer, one moved.
    page.locator("#clean-apply").click()
    wait_for_text(page, "#clean-notice", "Applied: 1 moved, 1 deleted", timeout=60)
    expect(page.locator("#clean-pending")).to_contain_text("No changes chosen yet")
    expect(page.locator("#clean-suspects .thumbnail-item")).to_have_count(0)
    tab(page, "Data").click()
    wait_for_text(page, "#data-summary", f"{total - 1} images in {len(CLASSES)} classes", timeout=30)
    counts[label] -= 1
    counts[target] += 1
    counts[CLASSES[0]] -= 1
    assert class_counts(page) == counts

    # 5. A second run on the cleaned data: the Train tab's quick recipe (its default; the same model and settings as
    # the first model, named apart: "quick").
    tab(page, "Train").click()
    expect(page.locator("#train-recipe input[type=radio]:checked")).to_have_value("quick")
    page.get_by_role("button", name="Start training", exact=True).click()
    wait_for_text(page, "#train-status", "Finished", timeout=TRAIN_TIMEOUT)
    assert [j.kind for j in jobs.submitted] == ["train", "train"]

    # 6. Both runs compared: the first on data v1, the second on the cleaned v2; both curves drawn.
    page.locator("#runs-compare").get_by_text("Compare runs", exact=True).click()
    expect(page.locator("#runs-table .virtual-row")).to_have_count(2)
    for row, (number, name, version) in enumerate((("1", "quick (first model)", "v1"), ("2", "quick", "v2"))):
        for col, value in ((1, number), (2, name), (4, version)):
            expect(cell(page, row, col)).to_have_text(value)
    expect(cell(page, 1, 0)).to_have_text("✓")  # the newest run is in use
    assert in_use(page) == [False, True]
    boxes = page.locator("#runs-chosen label")
    expect(boxes).to_have_count(2)
    titles = [t.strip() for t in boxes.all_inner_texts()]
    assert re.fullmatch(r"run 2 · quick · data v2 · \d+\.\d%", titles[0]), titles  # newest first
    assert re.fullmatch(r"run 1 · quick \(first model\) · data v1 · \d+\.\d%", titles[1]), titles
    for box in boxes.all():  # new runs join the curves: untick one and tick it again
        expect(box.locator("input")).to_be_checked()
    boxes.nth(1).click()
    expect(boxes.nth(1).locator("input")).not_to_be_checked()
    boxes.nth(1).click()
    expect(boxes.nth(1).locator("input")).to_be_checked()
    for plot in ("#runs-loss-plot", "#runs-acc-plot"):
        expect(page.locator(f"{plot} img, {plot} canvas, {plot} svg").first).to_be_visible()

    # 7. Each run in turn becomes the model Classify uses: the first, then the cleaned one again.
    accuracy = {t.split(" · ")[0]: t.split(" · ")[-1] for t in titles}
    line = use_run(page, titles[1], "quick (first model)")
    assert f"· {accuracy['run 1']} validation accuracy ·" in line, line
    line = use_run(page, titles[0], "quick")
    assert f"· {accuracy['run 2']} validation accuracy ·" in line, line
    print(f"runs: {titles}")
    assert_calm(page)
