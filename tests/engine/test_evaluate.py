import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.evaluate import summarize
from engine.predict import Predictor
from engine.train import TrainConfig, fit

NAMES = ["cat", "dog", "fox"]


def test_summary_of_known_predictions():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1],  # a cat called a dog
                          [0.2, 0.7, 0.1], [0.1, 0.2, 0.7],                      # a dog called a fox
                          [0.05, 0.05, 0.9]])
    r = summarize(y, probs, NAMES)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    cat, dog, fox = r["per_class"]
    assert (cat["precision"], cat["recall"], cat["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert dog["precision"] == pytest.approx(0.5) and dog["recall"] == pytest.approx(0.5) and dog["f1"] == pytest.approx(0.5)
    assert fox["precision"] == pytest.approx(0.5) and fox["recall"] == 1.0 and fox["f1"] == pytest.approx(2 / 3)
    assert r["most_confused"] == [dict(actual="cat", predicted="dog", count=1), dict(actual="dog", predicted="fox", count=1)]
    worst = r["top_losses"][0]
    assert (worst["index"], worst["actual"], worst["predicted"], worst["p_actual"]) == (2, "cat", "dog", pytest.approx(0.1))
    assert [t["loss"] for t in r["top_losses"]] == sorted((t["loss"] for t in r["top_losses"]), reverse=True)
    assert r["predictions"] == [0, 0, 1, 1, 2, 2]


def folder(small_shapes, tmp_path, model, name):
    cfg = TrainConfig(model=model, epochs=1, img_size=32, batch_size=16)
    list(fit(small_shapes, cfg, str(tmp_path / name)))
    return Predictor.from_folder(tmp_path / name)


def test_tta_averages_the_image_and_its_mirror(small_shapes, tmp_path):
    predictor = folder(small_shapes, tmp_path, "resnet10t", "cnn")
    image = small_shapes.images[0]
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    expected = (predictor.probabilities([image]) + predictor.probabilities([mirror])) / 2
    torch.testing.assert_close(predictor.probabilities([image], tta=True), expected, rtol=1e-4, atol=1e-5)
    assert sum(predictor.predict([image], 3, tta=True)[0].values()) == pytest.approx(1.0, abs=1e-4)


def test_gradcam_for_a_cnn_and_a_note_for_a_vit(small_shapes, tmp_path):
    cnn = folder(small_shapes, tmp_path, "resnet10t", "cnn")
    image = small_shapes.images[0]
    overlay, caption = cnn.gradcam(image, "square")
    assert overlay.size == image.size != (32, 32) and "square" in caption  # the picture's own size, not the model's
    assert np.asarray(overlay).std() > 0  # a real heat map, not a blank image
    vit = folder(small_shapes, tmp_path, "vit_tiny_patch16_224", "vit")
    overlay, caption = vit.gradcam(small_shapes.images[0])
    assert overlay is None and "not available" in caption


def test_a_gradcam_overlay_has_the_pictures_size_capped_and_tints_only_what_the_model_saw(small_shapes, tmp_path):
    cnn = folder(small_shapes, tmp_path, "resnet10t", "cnn")
    wide = Image.new("RGB", (1200, 400), (128, 128, 128))  # the model sees its centre square, 400 x 400
    overlay, _ = cnn.gradcam(wide, max_side=600)
    assert overlay.size == (600, 200)  # aspect kept, longest side capped
    tinted = np.abs(np.asarray(overlay, dtype=np.int16) - 128).sum(2) > 0
    assert tinted[:, 200:400].all() and not tinted[:, :200].any() and not tinted[:, 400:].any()
    small, _ = cnn.gradcam(np.full((20, 30, 3), 200, np.uint8))  # an array, smaller than the cap: left at its size
    assert small.size == (30, 20)


def test_cli_eval_writes_every_metric(small_shapes, tmp_path):
    from tests.engine.test_cli import cli, save_folder

    predictor_dir = tmp_path / "cnn"
    folder(small_shapes, tmp_path, "resnet10t", "cnn")
    data = save_folder(tmp_path / "data", small_shapes.images, small_shapes.labels, small_shapes.class_names)
    r = cli("eval", "--model-dir", str(predictor_dir), "--data", str(data))
    assert r.returncode == 0, r.stderr
    written = json.loads((predictor_dir / "eval.json").read_text())
    assert written == json.loads(r.stdout)
    assert written["num_images"] == 120 and len(written["per_class"]) == 3 and len(written["top_losses"]) == 16
    assert all(t["image"].endswith(".png") for t in written["top_losses"])
