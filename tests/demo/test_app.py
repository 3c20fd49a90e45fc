"""The app driven through its public API with gradio_client, as a script or another program would."""
import threading
import time
import zipfile

import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from engine import sample
from tests.live_app import client, live_app


@pytest.fixture(scope="module")
def app_url():
    with live_app() as url:
        yield url


TRAIN_ARGS = dict(model="resnet10t", weights="scratch", strategy="auto", epochs=1, lr=3e-3, batch_size=64, img_size=48,
                  augment="light")


@pytest.fixture(scope="module")
def shape_png(tmp_path_factory):
    images, labels = sample.generate(1, seed=42)
    path = tmp_path_factory.mktemp("img") / "shape.png"
    images[0].save(path)
    return path


def test_api_lists_the_main_actions(app_url):
    named = client(app_url).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/load_data", "/train", "/lr_find", "/predict"} <= set(named)


@pytest.fixture(scope="module")
def trained(app_url):
    """One client session that loaded the built-in data and trained one epoch: (client, /train's outputs)."""
    c = client(app_url)
    summary, *_ = c.predict("builtin:shapes", api_name="/load_data")
    assert "900 images in 6 classes" in summary
    return c, c.submit(**TRAIN_ARGS, api_name="/train").result(timeout=600)


def test_load_train_predict(trained, shape_png):
    c, (status, loss, acc, lr, log, results, download) = trained
    assert "Finished" in status, status
    assert "epoch 1: train loss" in log
    lrs = [row[lr["columns"].index("learning rate")] for row in lr["data"]]  # one per step, as the schedule moves it
    assert len(lrs) == 12 and len(set(lrs)) > 1 and all(0 < v <= TRAIN_ARGS["lr"] * (1 + 1e-6) for v in lrs), lrs
    columns = loss["columns"]
    real = [r for r in loss["data"] if isinstance(r[columns.index("loss")], float) and r[columns.index("loss")] == r[columns.index("loss")]]
    assert sum(r[columns.index("series")] == "train (per step)" for r in real) == 12  # 720 images / batch 64, per step
    assert sum(r[columns.index("series")] == "validation" for r in real) == 1
    assert "| class | accuracy |" in results and all(f"| {name} |" in results for name in sample.CLASSES)
    with zipfile.ZipFile(download["value"]) as z:  # a gr.DownloadButton update: visible, with the file
        assert {"model.safetensors", "config.json", "metrics.json"} <= set(z.namelist())
    label, timing, heatmap = c.predict(handle_file(shape_png), True, True, api_name="/predict")
    assert label["label"] in sample.CLASSES and len(label["confidences"]) == 5
    assert "ms" in timing and "Where the model looked" in timing
    assert Image.open(heatmap).size == Image.open(shape_png).size  # the Grad-CAM overlay at the picture's size, not 48 px
    _, _, no_heatmap = c.predict(handle_file(shape_png), False, False, api_name="/predict")
    assert no_heatmap is None


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("L", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("P", "GIF")])
def test_odd_image_modes_classify(trained, tmp_path, mode, fmt):
    c, _ = trained
    path = tmp_path / f"odd.{fmt.lower()}"
    sample.generate(1, seed=3)[0][0].convert("RGB").convert(mode if mode != "I;16" else "I").save(path, fmt)
    label, *_ = c.predict(handle_file(path), api_name="/predict")
    assert label["label"] in sample.CLASSES


def test_a_huge_image_is_refused_and_the_app_keeps_serving(trained, tmp_path, shape_png):
    c, _ = trained
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 7000)).save(huge)  # 56 megapixels, a few hundred kB on disk
    with pytest.raises(AppError, match="too large"):
        c.predict(handle_file(huge), api_name="/predict")
    assert c.predict(handle_file(shape_png), api_name="/predict")[0]["label"] in sample.CLASSES


def test_evaluation_views(trained):
    c, _ = trained
    summary, scores, figure, table, actual, predicted, cell, losses, pairs = c.predict(api_name="/evaluate")
    assert "on 180 validation images" in summary
    assert [row[0] for row in scores["data"]] == list(sample.CLASSES) and scores["headers"][:4] == ["class", "precision", "recall", "F1"]
    assert len(table["data"]) == 6 and sum(sum(row[1:]) for row in table["data"]) == 180
    assert figure is not None and len(losses) == 16 and all(" / " in item["caption"] for item in losses)
    matrix = {row[0]: row[1:] for row in table["data"]}
    images = c.predict("circle", "circle", api_name="/cell_images")
    assert len(images) == min(48, matrix["circle"][0]) and all(item["caption"] == "circle -> circle" for item in images)
    # the original pictures (square, 64 to 96 px), not the 48 px squares the model saw
    sizes = {Image.open(item["image"]).size for item in images + losses}
    assert len(sizes) > 1 and all(sample.MIN_SIDE <= w == h <= sample.MAX_SIDE for w, h in sizes), sizes


def test_the_app_classifies_and_evaluates_on_the_compute_thread(trained, shape_png):
    """Every model call of a request on one thread (demo/compute.py), not on Gradio's worker threads."""
    c, _ = trained
    seen = set()

    def note_thread(module, args):
        if hasattr(module, "pretrained_cfg"):  # a timm model's forward
            seen.add(threading.current_thread().name)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(note_thread)
    try:
        c.predict(handle_file(shape_png), True, True, api_name="/predict")
        c.predict(api_name="/evaluate")
    finally:
        handle.remove()
    assert seen == {"snapfit-compute"}


def test_an_exported_zip_loads_back_in_another_session(trained, shape_png):
    _, (*_, download) = trained
    other = client(trained[0].src)
    key_and_status = other.predict([handle_file(download["value"])], api_name="/load_model")
    assert "Loaded: 6 classes" in key_and_status
    assert other.predict(handle_file(shape_png), api_name="/predict")[0]["label"] in sample.CLASSES


def test_a_pickled_model_is_refused(app_url, tmp_path):
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(AppError, match="Invalid file type"):  # the upload box takes .zip, .safetensors, .json only
        client(app_url).predict([handle_file(pickled)], api_name="/load_model")
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(pickled, "model.pth")
        z.writestr("config.json", "{}")
    with pytest.raises(AppError, match="Only safetensors model folders are accepted; remove model.pth"):
        client(app_url).predict([handle_file(archive)], api_name="/load_model")


def test_lr_find_gives_suggestions(app_url):
    c = client(app_url)
    c.predict("builtin:shapes", api_name="/load_data")
    args = dict(TRAIN_ARGS, strategy="head")
    status, plot, values, *_ = c.submit(1e-6, 10.0, 60, **args, api_name="/lr_find").result(timeout=600)
    assert "Done" in status and plot is not None
    assert "valley" in values


def test_augmentation_preview_shows_originals_and_variants(app_url):
    images = client(app_url).predict("standard", 48, 0, api_name="/preview_augmentation")["value"]  # a gr.Gallery update
    captions = [item["caption"] for item in images]
    assert len(images) == 16 and sum(c.endswith(": original") for c in captions) == 4
    assert all(c.split(":")[0] in sample.CLASSES for c in captions)


def test_lr_finder_can_be_stopped(app_url):
    c = client(app_url)
    job = c.submit(1e-7, 10.0, 300, **dict(TRAIN_ARGS, strategy="full"), api_name="/lr_find")
    deadline = time.monotonic() + 120
    while not any("Range test: step" in str(out[0]) and "step 0 " not in str(out[0]) for out in job.outputs()):
        assert time.monotonic() < deadline and not job.done(), "the range test never started"
        time.sleep(0.2)
    c.predict(api_name="/stop_lr_find")
    status, _, values, *_ = job.result(timeout=120)
    assert status.startswith("Stopped"), status
    assert int(status.split("(")[1].split()[0]) < 300


def test_sessions_are_isolated(app_url, shape_png):
    """A fresh client has no model, whatever another session trained."""
    with pytest.raises(AppError, match="no trained model yet"):
        client(app_url).predict(handle_file(shape_png), api_name="/predict")


@pytest.mark.parametrize("override,needle", [
    (dict(model="resnet81"), "Did you mean"),
    (dict(weights="pretrained"), "cannot reach"),
    (dict(lr=-1.0), "Learning rate must be"),
    (dict(grad_clip=-1.0), "Gradient clipping must be"),
    (dict(weight_decay=5.0), "Weight decay must be a number from 0 to 1"),
])
def test_bad_training_settings_get_clear_messages(app_url, override, needle):
    c = client(app_url)
    with pytest.raises(AppError, match=needle):
        c.submit(**dict(TRAIN_ARGS, **override), api_name="/train").result(timeout=120)
    assert "900 images" in c.predict("builtin:shapes", api_name="/load_data")[0]  # still serving


def test_bad_images_and_empty_sketch(app_url, tmp_path):
    c = client(app_url)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(AppError):
        c.predict(handle_file(bad), api_name="/predict")
    with pytest.raises(AppError, match="Draw something|empty"):
        c.predict({"background": None, "layers": [], "composite": None}, api_name="/predict_sketch")
