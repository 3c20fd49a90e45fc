"""Faults during training, through the app's API: each leaves a clear message, the app serving, and a
complete model on disk. Faults are injected into the real training thread (tests/faults.py)."""
import io
import re
import threading
import time
import zipfile

import pytest
import torch
from gradio_client import handle_file
from PIL import Image

from demo.jobs import OUT_OF_MEMORY
from demo.workspace import Workspaces
from engine.export import check_model_folder, read_metrics
from tests.faults import Fault, injected
from tests.live_app import TINY_TRAIN, TrackingJobs, client, colour_png, colour_zip, live_app

pytestmark = pytest.mark.slow
CLASSES = ("red", "green", "blue")
TWO_EPOCHS = dict(TINY_TRAIN, epochs=2, batch_size=8)  # 29 training images: 4 steps an epoch, 8 in all


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One server for the module (one training slot) and a tiny dataset: (url, jobs, workspaces, zip, png)."""
    folder = tmp_path_factory.mktemp("faults")
    jobs, workspaces = TrackingJobs(max_running=1), Workspaces(folder / "home")
    with live_app(jobs, workspaces) as url:
        yield url, jobs, workspaces, colour_zip(folder / "colours.zip", CLASSES), colour_png(folder / "red.png")


def session(app):
    c = client(app[0])
    assert "36 images in 3 classes" in c.predict(handle_file(app[3]), api_name="/load_zip")[0]
    return c


def still_serving(app) -> None:
    """The app answers the next request, and a new training in the same slot runs to the end."""
    c = session(app)
    assert c.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)[0].startswith("Finished")


def assert_one_clear_line(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and len(text) < 400, text


def test_closing_the_page_mid_training_leaves_the_job_running(app):
    url, jobs, *_ = app
    c = session(app)
    with injected(Fault(hold=True)) as fault:
        page = c.submit(**TINY_TRAIN, api_name="/train")
        assert fault.wait_arrived(1)
        page.cancel()  # what Gradio does when the tab closes: the event's generator is closed
        job = jobs.submitted[-1]
        assert not job.finished
    wait_until_finished(job)
    assert job.status == "done"
    check_model_folder(job.events[-1].model_dir)
    label = c.predict(handle_file(app[4]), api_name="/predict")[0]  # the session got the model it no longer watched
    assert {x["label"] for x in label["confidences"]} == set(CLASSES)


def test_stop_keeps_the_best_epoch_so_far(app):
    c = session(app)
    with injected(Fault(hold=True, after_validation=True)) as fault:  # held in epoch 2, after epoch 1 was validated
        page = c.submit(**dict(TINY_TRAIN, epochs=4), api_name="/train")
        assert fault.wait_arrived(1)
        c.predict(api_name="/stop_training")
        fault.release.set()
        status, *_, download = page.result(timeout=300)
    assert status.startswith("Stopped") and "Best validation accuracy" in status, status
    model_dir = app[1].submitted[-1].events[-1].model_dir
    check_model_folder(model_dir)
    assert read_metrics(model_dir)["best_epoch"] in (1, 2)  # never a later epoch than the one stopped in
    with zipfile.ZipFile(download["value"]) as z:
        assert {"model.safetensors", "config.json", "metrics.json"} <= set(z.namelist())


@pytest.mark.parametrize("exc, message", [
    (RuntimeError("injected worker fault"), "Internal error (RuntimeError): injected worker fault"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB"), OUT_OF_MEMORY),
    (MemoryError(), OUT_OF_MEMORY),
])
def test_a_crash_in_the_training_thread_is_reported_and_the_app_keeps_serving(app, exc, message):
    c = session(app)
    with injected(Fault(after_validation=True, exc=exc)):
        status, *_, log, _, download = c.submit(**TWO_EPOCHS, api_name="/train").result(timeout=300)
    assert status.startswith(f"Training failed: {message.rstrip('.')}"), status
    assert_one_clear_line(status)
    assert "Traceback" not in log
    assert app[1].submitted[-1].status == "failed"
    still_serving(app)


def test_a_crash_after_an_epoch_leaves_that_epoch_on_disk_and_in_use(app):
    c = session(app)
    with injected(Fault(after_validation=True, exc=RuntimeError("injected worker fault"))):
        status, *_, results, download = c.submit(**TWO_EPOCHS, api_name="/train").result(timeout=300)
    assert status.startswith("Training failed: Internal error (RuntimeError): injected worker fault."), status
    assert "best epoch before the failure (epoch 1" in status and "Classify" in status, status
    owner = app[1].submitted[-1].owner
    saved = [m for m in (app[2].root / owner).glob("model-*") if m.is_dir()]
    assert len(saved) == 1 and check_model_folder(saved[0])
    assert read_metrics(saved[0])["best_epoch"] == 1
    assert "Saved model** (epoch 1)" in results
    with zipfile.ZipFile(download["value"]) as z:  # the download button offers that epoch
        assert {"model.safetensors", "config.json", "metrics.json"} <= set(z.namelist())
    label = c.predict(handle_file(app[4]), api_name="/predict")[0]  # and the session classifies with it
    assert {x["label"] for x in label["confidences"]} == set(CLASSES)


def test_a_crash_before_any_epoch_ended_saves_nothing_and_says_so_plainly(app):
    c = session(app)
    with injected(Fault(exc=RuntimeError("injected worker fault"))):
        status, *_, results, download = c.submit(**TWO_EPOCHS, api_name="/train").result(timeout=300)
    assert status == "Training failed: Internal error (RuntimeError): injected worker fault", status
    assert results == "" and not download.get("visible", True)
    owner = app[1].submitted[-1].owner
    assert not [m for m in (app[2].root / owner).glob("model-*") if m.is_dir()]


def test_an_image_that_breaks_mid_epoch_ends_the_run_with_its_name_and_keeps_the_best_epoch(app, monkeypatch):
    """Beyond the memory budget images are decoded again for every batch: one that became unreadable during
    training is found mid-epoch."""
    monkeypatch.setenv("SNAPFIT_MEMORY_BUDGET_MB", "0")  # decode lazily, per batch
    c = session(app)
    with injected(Fault(hold=True, after_validation=True)) as fault:  # held at the first step of epoch 2
        page = c.submit(**TWO_EPOCHS, api_name="/train")
        assert fault.wait_arrived(1)
        owner = app[1].submitted[-1].owner
        images = sorted((app[2].root / owner / "data").rglob("*.png"))
        assert len(images) == 36
        for image in images:
            image.write_bytes(b"overwritten while training")
        fault.release.set()
        status, *_, results, download = page.result(timeout=300)
    assert re.match(r"Training failed: (red|green|blue)/\d+\.png could not be read any more", status), status
    assert str(app[2].root) not in status  # the file inside the user's zip, not where the server keeps it
    assert "best epoch before the failure (epoch 1" in status, status
    assert_one_clear_line(status)
    assert "Saved model** (epoch 1)" in results
    still_serving(app)


def test_a_run_of_exactly_four_steps_trains(app):
    c = session(app)
    assert c.submit(**dict(TINY_TRAIN, epochs=2), api_name="/train").result(timeout=300)[0].startswith("Finished")


def test_a_diverging_run_says_what_to_change(app):
    """A loss that turns NaN (what an absurd learning rate does) stops the run with advice, not a crash."""
    def nan_loss(module, args, output):
        if hasattr(module, "pretrained_cfg") and module.training and threading.current_thread().name.startswith("snapfit-job-train"):
            return output * float("nan")

    c = session(app)
    handle = torch.nn.modules.module.register_module_forward_hook(nan_loss)
    try:
        status = c.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)[0]
    finally:
        handle.remove()
    assert status == "Training failed: Training diverged (the loss became NaN or infinite): lower the learning rate and try again."
    still_serving(app)


def test_unreadable_images_are_skipped_with_a_count(app, tmp_path):
    archive = tmp_path / "with-bad.zip"
    good = zipfile.ZipFile(app[3])
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(png, "PNG")
    with zipfile.ZipFile(archive, "w") as z:
        for name in good.namelist():
            z.writestr(name, good.read(name))
        z.writestr("red/truncated.png", png.getvalue()[:60])  # a real PNG header, cut off mid-file
        z.writestr("green/not-an-image.png", b"this is text, not a picture")
    c = client(app[0])
    summary = c.predict(handle_file(archive), api_name="/load_zip")[0]
    status, _, _, _, log, *_ = c.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)
    assert status.startswith("Finished"), status
    assert "unreadable" in (summary + log).lower(), (summary, log)


def wait_until_finished(job, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.finished, job
