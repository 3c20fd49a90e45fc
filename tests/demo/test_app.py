"""The app driven through its public API with gradio_client, as a script or another program would."""
import socket
import time
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from engine import sample


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    from demo import build_demo, launch_kwargs

    demo = build_demo(offline=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            **launch_kwargs())
    yield url
    demo.close()


def client(url):
    return Client(url, verbose=False, analytics_enabled=False)


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


def test_load_train_predict(app_url, shape_png):
    c = client(app_url)
    summary, *_ = c.predict("builtin:shapes", api_name="/load_data")
    assert "900 images in 6 classes" in summary
    status, loss, acc, log, results, download = c.submit(**TRAIN_ARGS, api_name="/train").result(timeout=600)
    assert "Finished" in status, status
    assert "Epoch 1:" in log
    columns = loss["columns"]
    real = [r for r in loss["data"] if isinstance(r[columns.index("loss")], float) and r[columns.index("loss")] == r[columns.index("loss")]]
    assert sum(r[columns.index("series")] == "train (per step)" for r in real) == 12  # 720 images / batch 64, per step
    assert sum(r[columns.index("series")] == "validation" for r in real) == 1
    assert "| class | accuracy |" in results and all(f"| {name} |" in results for name in sample.CLASSES)
    with zipfile.ZipFile(download["value"]) as z:  # a gr.DownloadButton update: visible, with the file
        assert {"model.safetensors", "config.json", "metrics.json"} <= set(z.namelist())
    label, timing = c.predict(handle_file(shape_png), api_name="/predict")
    assert label["label"] in sample.CLASSES and len(label["confidences"]) == 5
    assert "ms" in timing


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
    (dict(weight_decay=5.0), "Weight decay must be between 0 and 1"),
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
