"""engine.capture: a dataset built class by class, and a live model on the embedded Lite0's real ImageNet features."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from engine import capture, images, sample
from engine.errors import UserError
from engine.folders import load_zip


def frames(shape: int, n: int, seed: int) -> list[np.ndarray]:
    """n webcam-like frames (320x240 RGB arrays) of one built-in shape class."""
    pictures, labels = sample.generate(n_per_class=n, seed=seed)
    return [np.array(p.resize((240, 240)).crop((-40, 0, 280, 240))) for p, y in zip(pictures, labels) if y == shape]


@pytest.fixture(scope="module")
def embedder():
    return capture.Embedder()


def test_class_names_become_folder_names_everywhere():
    s = capture.CapturedSet()
    assert s.add_class("  thumbs up ") == "thumbs up"
    s.add_class("Café")
    for text, says in [("", "Give the class a name"), ("THUMBS UP", "already"), ("a/b", "'/'"), ('say "hi"', "'\"'"),
                       ("tab\there", re.escape("'\\t'")), (".hidden", "hidden"), ("dots.", "hidden"), ("__MACOSX", "skipped"),
                       ("x" * 65, "at most 64")]:
        with pytest.raises(UserError, match=says):
            s.add_class(text)
    assert s.names == ["thumbs up", "Café"]


def test_rename_keeps_order_and_pictures_and_remove_says_what_went(tmp_path):
    s = capture.CapturedSet()
    for name in ("a", "b", "c"):
        s.add_class(name)
    s.add("b", frames(0, 3, 0))
    assert s.rename_class("b", "B2") == "B2"
    assert s.names == ["a", "B2", "c"] and s.counts()["B2"] == 3
    with pytest.raises(UserError, match="already"):
        s.rename_class("a", "c")
    with pytest.raises(UserError, match="no class 'zz'"):
        s.rename_class("zz", "y")
    assert s.remove_class("B2") == 3
    assert s.names == ["a", "c"]


def test_pictures_past_the_memory_budget_are_refused_and_nothing_is_lost():
    s = capture.CapturedSet(budget_mb=1)
    s.add_class("noise")
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 256, (384, 384, 3), dtype=np.uint8) for _ in range(12)]  # ~100 KB each as JPEG
    added = 0
    with pytest.raises(UserError, match="memory budget"):
        for picture in noisy:
            added += s.add("noise", [picture])
    assert 0 < added < len(noisy)
    assert s.counts()["noise"] == added  # what fitted is kept
    assert s.nbytes <= 1024**2


def test_pictures_are_kept_small_and_upright_and_deleted_by_number():
    s = capture.CapturedSet()
    s.add_class("wide")
    s.add("wide", [np.zeros((480, 1280, 3), np.uint8), Image.new("RGB", (50, 40), "red")])
    kept = [Image.open(io.BytesIO(j)) for j in s.pictures("wide")]
    assert [k.size for k in kept] == [(384, 144), (50, 40)]  # longest side MAX_SIDE, aspect kept, never enlarged
    s.delete("wide", 0)
    assert [Image.open(io.BytesIO(j)).size for j in s.pictures("wide")] == [(50, 40)]
    with pytest.raises(UserError, match="no picture number 5"):
        s.delete("wide", 4)
    with pytest.raises(UserError, match="Could not read that picture"):
        s.add("wide", [b"not an image"])
    assert s.counts()["wide"] == 1


def test_a_captured_set_is_a_dataset_and_a_zip_the_zip_source_reads_back(tmp_path):
    s = capture.CapturedSet()
    s.add_class("circle")
    with pytest.raises(UserError, match="at least 2 classes"):
        s.to_labelled()
    s.add_class("square")
    s.add("circle", frames(0, 4, 1))
    with pytest.raises(UserError, match="'square' has no pictures yet"):
        s.to_labelled()
    s.add("square", frames(1, 1, 1))
    data = s.to_labelled()
    assert data.class_names == ["circle", "square"] and data.counts() == {"circle": 4, "square": 1}
    assert any("fewer than 2 images" in w for w in data.warnings)  # the same warnings as a folder gets
    assert data.name(4) == "square/0001.jpg"
    back = load_zip(s.write_zip(tmp_path / "captured.zip"), tmp_path / "unzipped")
    assert back.class_names == data.class_names and back.counts() == data.counts()
    assert all(np.array_equal(images.to_square(a, 64), images.to_square(b, 64)) for a, b in zip(data.images, back.images))


def test_the_live_model_tells_shapes_apart_from_a_few_frames_and_embeds_only_new_ones(embedder):
    s, live = capture.CapturedSet(), capture.LiveModel(embedder)
    for c, name in enumerate(("circle", "square")):
        s.add_class(name)
        s.add(name, frames(c, 60, 2)[:12])
    with pytest.raises(UserError, match="no live model yet"):
        live.predict(frames(0, 6, 3)[0])
    first = live.fit(s)
    assert first.embedded == 24 and first.class_names == ["circle", "square"]
    s.add_class("triangle")
    s.add("triangle", frames(2, 60, 2)[:12])
    second = live.fit(s)
    assert second.embedded == 12 and live.version == s.version  # only the new class's pictures were embedded
    held_out = {c: frames(c, 60, 9)[:20] for c in range(3)}  # other seeds: pictures the model never saw
    right = sum(max(p := live.predict(f), key=p.get) == sample.CLASSES[c] for c, fs in held_out.items() for f in fs)
    assert right / 60 >= 0.8, right  # chance is 1/3
    assert abs(sum(live.predict(held_out[0][0]).values()) - 1) < 1e-5


def test_the_live_model_needs_two_classes_with_pictures(embedder):
    s, live = capture.CapturedSet(), capture.LiveModel(embedder)
    s.add_class("one")
    s.add_class("two")
    with pytest.raises(UserError, match="at least two classes"):
        live.fit(s)
    s.add("one", frames(0, 2, 0))
    with pytest.raises(UserError, match="'one' has 2"):
        live.fit(s)
    s.add("two", frames(1, 2, 0))
    s.add_class("empty")
    fitted = live.fit(s)
    assert fitted.left_out == ["empty"] and live.class_names == ["one", "two"]


def test_a_captured_set_trains_evaluates_and_predicts_like_a_folder(tmp_path):
    from engine import evaluate
    from engine.config import recipe
    from engine.predict import Predictor
    from engine.train import fit

    s = capture.CapturedSet()
    for c, name in enumerate(("circle", "square")):
        s.add_class(name)
        s.add(name, frames(c, 40, 4)[:10])
    events = list(fit(s.to_labelled(), recipe("quick"), str(tmp_path / "run")))
    model_dir = events[-1].model_dir
    assert events[-1].best_val_acc > 0.5  # 2 classes: better than chance on held-out captured pictures
    predictor = Predictor.from_folder(model_dir)
    data = s.to_labelled()
    report = evaluate.evaluate(predictor, data.images, data.labels, predictor.class_names)  # the JPEGs, read as kept
    assert report["class_names"] == ["circle", "square"] and report["num_images"] == 20 and report["accuracy"] > 0.5
    assert set(predictor.predict([frames(0, 40, 8)[0]])[0]) == {"circle", "square"}
