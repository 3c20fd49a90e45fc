"""The Capture tab's handlers, called as the page calls them: classes, recording from a stream of frames, uploads,
the live model, the memory budget, and the hand-over to the Data tab and to a .zip."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo.handlers import capture as h
from engine import capture, sample
from engine.folders import load_zip


def no_progress(*args, **kwargs):
    pass


def shape_frames(shape: int, n: int, seed: int) -> list[np.ndarray]:
    pictures, labels = sample.generate(n_per_class=n, seed=seed)
    return [np.array(p.resize((160, 160))) for p, y in zip(pictures, labels) if y == shape]


def record(ctx, ui, key, name: str, frames: list) -> dict:
    """Record into `name` while the stream sends `frames`, as the page's two events do side by side."""
    recording = h.record(ctx, ui, name, 1, key)
    next(recording)  # the recording is on
    for frame in frames:
        h.on_frame(ctx, ui, frame, key)
    return list(recording)[-1]


@pytest.fixture
def cap(ctx, ui, monkeypatch):
    monkeypatch.setattr(h, "RECORD_FPS", 1000)  # every test frame is kept: the test sends them faster than a camera
    capture.Embedder.shared()  # built before a recording's second begins
    return ui.capture


def test_classes_from_the_page_each_problem_told_in_the_notice(ctx, cap, from_page):
    assert all(v == gr.skip() for v in h.restore(ctx, cap).values())  # a session that never captured: nothing to restore
    key = h.add_class(ctx, cap, "circle")[cap.key]
    for text, says in [("Circle", "already"), ("a/b", "cannot hold '/'"), ("", "Give the class a name"), (".x", "hidden")]:
        update = h.add_class(ctx, cap, text, key)
        assert list(update) == [cap.notice] and says in update[cap.notice], update
    update = h.add_class(ctx, cap, "square", key)
    assert update[cap.current].choices == [("circle", "circle"), ("square", "square")] and update[cap.current].value == "square"
    assert "| circle | 0 |" in update[cap.counts] and update[cap.new_name] == "" and update[cap.notice] == ""
    renamed = h.rename_class(ctx, cap, "square", "box", key)
    assert renamed[cap.current].value == "box"
    removed = h.remove_class(ctx, cap, "box", key)
    assert "Removed class 'box' and its 0 pictures" in removed[cap.notice] and removed[cap.current].value == "circle"
    nothing = list(h.record(ctx, cap, None, 1, key))
    assert len(nothing) == 1 and "Add a class first" in nothing[0][cap.notice]


def test_record_upload_train_and_classify_the_stream(ctx, cap, tmp_path, from_page):
    key = h.add_class(ctx, cap, "circle")[cap.key]
    h.add_class(ctx, cap, "square", key)
    done = record(ctx, cap, key, "circle", shape_frames(0, 30, 1)[:8])
    assert "Recorded 8 pictures into **circle**" in done[cap.record_status] and len(done[cap.gallery]) == 8
    not_yet = h.on_frame(ctx, cap, shape_frames(0, 3, 2)[0], key)
    assert not_yet == {cap.live: gr.skip(), cap.fps: gr.skip()}  # no live model: nothing changes
    paths = []
    for k, frame in enumerate(shape_frames(1, 30, 1)[:8]):
        paths.append(str(tmp_path / f"square{k}.png"))
        Image.fromarray(frame).save(paths[-1])
    uploaded = h.upload(ctx, cap, paths, "square", key)
    assert "Added 8 pictures to 'square'" in uploaded[cap.notice] and "| square | 8 |" in uploaded[cap.counts]
    assert "No live model yet" in uploaded[cap.live_status]
    trained = h.train_live(ctx, cap, key)
    assert "Live model ready" in trained[cap.live_status] and "16 pictures (8 newly embedded)" in trained[cap.live_status]
    right = 0
    for c, name in enumerate(("circle", "square")):
        for frame in shape_frames(c, 30, 5)[:5]:
            seen = h.on_frame(ctx, cap, frame, key)
            right += max(seen[cap.live], key=seen[cap.live].get) == name
    assert right >= 8, right  # new frames, classified live
    assert "frames/s classified" in seen[cap.fps]
    reloaded = h.restore(ctx, cap, key)  # a reloaded page: the classes and pictures, as the server keeps them
    assert reloaded[cap.current].choices == [("circle", "circle"), ("square", "square")] and len(reloaded[cap.gallery]) == 8
    assert "Live model ready: circle, square" in reloaded[cap.live_status] and cap.key not in reloaded
    deleted = h.delete_picture(ctx, cap, "square", 0, key)
    assert "| square | 7 |" in deleted[cap.counts] and "15 pictures (0 newly embedded)" in deleted[cap.live_status]  # refitted
    nothing = h.delete_picture(ctx, cap, "square", None, key)
    assert "Click a picture in the gallery first" in nothing[cap.notice]


def test_a_recording_past_the_memory_budget_stops_and_keeps_what_it_had(ctx, cap, from_page):
    key = h.add_class(ctx, cap, "noise")[cap.key]
    h.session(ctx, key)[1].pictures.budget = 300 * 1024  # ~3 noisy pictures
    rng = np.random.default_rng(0)
    done = record(ctx, cap, key, "noise", [rng.integers(0, 256, (384, 384, 3), dtype=np.uint8) for _ in range(8)])
    kept = h.session(ctx, key)[1].pictures.counts()["noise"]
    assert 0 < kept < 8 and "Recording stopped" in done[cap.record_status] and "memory budget" in done[cap.record_status]


def test_a_recording_without_a_camera_says_so(ctx, cap, from_page):
    key = h.add_class(ctx, cap, "circle")[cap.key]
    done = record(ctx, cap, key, "circle", [])
    assert "No pictures arrived from the camera" in done[cap.record_status]
    assert "no camera was found" in h.camera_problem("NotFoundError: Requested device not found")
    assert "access was denied" in h.camera_problem("NotAllowedError: Permission denied")
    assert h.camera_problem("") == ""


def test_the_pictures_become_the_dataset_and_a_zip_the_zip_source_reads(ctx, ui, cap, tmp_path, from_page):
    key = h.add_class(ctx, cap, "circle")[cap.key]
    refused = h.use_as_dataset(ctx, cap, ui.data, ui.tabs, key, no_progress)
    assert list(refused) == [cap.notice] and "at least 2 classes" in refused[cap.notice]
    h.add_class(ctx, cap, "square", key)
    record(ctx, cap, key, "circle", shape_frames(0, 30, 1)[:6])
    refused = h.use_as_dataset(ctx, cap, ui.data, ui.tabs, key, no_progress)
    assert "'square' has no pictures yet" in refused[cap.notice]
    record(ctx, cap, key, "square", shape_frames(1, 30, 1)[:6])
    used = h.use_as_dataset(ctx, cap, ui.data, ui.tabs, key, no_progress)
    assert used[ui.tabs].selected == "data" and "12 images in 2 classes" in used[ui.data.summary]
    assert ctx.workspace(key).dataset.source == capture.SOURCE
    path = h.download(ctx, cap, key)[cap.download].value["path"]  # gr.File(value=...) as the page gets it
    back = load_zip(path, tmp_path / "back")
    assert back.class_names == ["circle", "square"] and back.counts() == {"circle": 6, "square": 6}
