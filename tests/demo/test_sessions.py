"""Many users on one server: sessions that never see each other's data, model, job or files; at most K
trainings at once with a visible queue; quick actions that answer while a training job runs.

Training is held at a chosen step by tests/faults.py (a gate in the job thread), so "at the same time" and
"while it runs" are arranged by events, never by timing.
"""
import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import handle_file

from demo.workspace import Workspaces
from engine import sample
from tests.faults import Fault, injected
from tests.live_app import TINY_TRAIN, TrackingJobs, client, colour_png, colour_zip, live_app, wait_for_output

pytestmark = pytest.mark.slow
A_CLASSES, B_CLASSES = ("red", "green", "blue"), ("yellow", "blue")


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zips")
    return colour_zip(folder / "a.zip", A_CLASSES, seed=1), colour_zip(folder / "b.zip", B_CLASSES, seed=2)


def labels_of(prediction) -> set:
    return {c["label"] for c in prediction["confidences"]}


def model_folders(root: Path) -> dict:
    """workspace key -> the class names of each complete model folder in it."""
    return {ws.name: [sorted(json.loads((m / "config.json").read_text())["label_names"]) for m in ws.glob("model-*") if m.is_dir()]
            for ws in root.iterdir() if ws.is_dir()}


def test_two_sessions_train_at_once_without_seeing_each_other(tmp_path, zips):
    jobs, workspaces = TrackingJobs(max_running=2), Workspaces(tmp_path / "home")
    png = colour_png(tmp_path / "blue.png", "blue")
    with live_app(jobs, workspaces) as url, injected(Fault(hold=True)) as fault:
        a, b = client(url), client(url)
        assert "36 images in 3 classes" in a.predict(handle_file(zips[0]), api_name="/load_zip")[0]
        assert "24 images in 2 classes" in b.predict(handle_file(zips[1]), api_name="/load_zip")[0]
        run_a, run_b = a.submit(**TINY_TRAIN, api_name="/train"), b.submit(**TINY_TRAIN, api_name="/train")
        assert fault.wait_arrived(2), "the two trainings never ran at the same time"
        assert jobs.running_count() == 2 and len({j.owner for j in jobs.submitted}) == 2

        b.predict(api_name="/stop_training")  # b stops its own run only
        fault.release.set()
        status_a, *_, download_a = run_a.result(timeout=300)
        status_b = run_b.result(timeout=300)[0]
        assert status_a.startswith("Finished") and status_b.startswith("Stopped"), (status_a, status_b)

        assert labels_of(a.predict(handle_file(png), api_name="/predict")[0]) == set(A_CLASSES)
        assert labels_of(b.predict(handle_file(png), api_name="/predict")[0]) == set(B_CLASSES)
        with zipfile.ZipFile(download_a["value"]) as z:
            assert sorted(json.loads(z.read("config.json"))["label_names"]) == sorted(A_CLASSES)
        # One folder per session, each holding only its own model.
        folders = model_folders(workspaces.root)
        assert sorted(folders.values()) == sorted([[sorted(A_CLASSES)], [sorted(B_CLASSES)]])
        assert {j.owner for j in jobs.submitted} == set(folders)


def test_extra_trainings_wait_in_a_queue_that_shows_their_place(tmp_path, zips):
    jobs = TrackingJobs(max_running=1)
    with live_app(jobs, Workspaces(tmp_path / "home")) as url, injected(Fault(hold=True)) as fault:
        sessions = [client(url) for _ in range(3)]
        for c in sessions:
            c.predict(handle_file(zips[1]), api_name="/load_zip")
        first = sessions[0].submit(**TINY_TRAIN, api_name="/train")
        assert fault.wait_arrived(1)
        second = sessions[1].submit(**TINY_TRAIN, api_name="/train")
        wait_for_output(second, lambda out: "position 1 in the queue" in out[0])
        third = sessions[2].submit(**TINY_TRAIN, api_name="/train")
        wait_for_output(third, lambda out: "position 2 in the queue" in out[0])
        assert jobs.running_count() == 1 and jobs.queued_count() == 2

        fault.release.set()
        wait_for_output(third, lambda out: "position 1 in the queue" in out[0], timeout=300)  # moves up as the queue drains
        statuses = [job.result(timeout=300)[0] for job in (first, second, third)]
        assert all(s.startswith("Finished") for s in statuses), statuses
        runs = sorted(jobs.submitted, key=lambda j: j.started)
        assert all(later.started >= earlier.ended for earlier, later in zip(runs, runs[1:]))  # one at a time


def test_quick_actions_answer_while_a_training_job_runs(tmp_path, zips):
    """Predict, evaluate, data preview, the augmentation preview and the LR finder's page all answer while a
    training holds the only training slot."""
    jobs = TrackingJobs(max_running=1)
    png = colour_png(tmp_path / "red.png", "red")
    with live_app(jobs, Workspaces(tmp_path / "home")) as url:
        a, b = client(url), client(url)
        a.predict(handle_file(zips[0]), api_name="/load_zip")
        assert a.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)[0].startswith("Finished")
        with injected(Fault(hold=True)) as fault:
            training = a.submit(**dict(TINY_TRAIN, epochs=3), api_name="/train")
            assert fault.wait_arrived(1)

            assert labels_of(a.predict(handle_file(png), api_name="/predict")[0]) == set(A_CLASSES)  # the first model
            assert "validation images" in a.predict(api_name="/evaluate")[0]
            assert "900 images in 6 classes" in b.predict("builtin:shapes", api_name="/load_data")[0]
            gallery = b.predict("light", 48, 0, api_name="/preview_augmentation")["value"]
            assert {item["caption"].split(":")[0] for item in gallery} <= set(sample.CLASSES)
            finder = b.submit(1e-6, 1.0, 20, **TINY_TRAIN, api_name="/lr_find")
            wait_for_output(finder, lambda out: "Waiting for a free slot: position 1" in out[0])
            b.predict(api_name="/stop_lr_find")
            assert finder.result(timeout=60)[0].startswith("Stopped") and jobs.queued_count() == 0

            assert not training.done() and jobs.running_count() == 1  # all of the above happened during the run
            fault.release.set()
        assert training.result(timeout=300)[0].startswith("Finished")
