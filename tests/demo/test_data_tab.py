"""The Data tab through gradio_client: folder upload with class names, zip, Hub offline, the report, progress,
per-session isolation, and bad input that gets a clear message while the app keeps serving."""
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from PIL import Image

from demo import data_report
from demo.handlers import data as data_handlers
from engine import data as data_lib
from engine import sample
from tests.live_app import client, live_app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A fresh app (offline) with its own workspaces: (url, workspaces)."""
    from demo.workspace import Workspaces

    workspaces = Workspaces(tmp_path_factory.mktemp("ws"))
    with live_app(workspaces=workspaces) as url:
        yield url, workspaces


def make_folder(root: Path, counts: dict[str, int], size=(24, 24)) -> Path:
    """One subfolder per class, each image a distinct flat colour; the same basenames in every class."""
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (60 * c % 256, 7 * i % 256, 100)).save(root / name / f"img {i}.png")
    return root


def folder_upload_args(root: Path):
    """What the page sends for a picked folder: the files and their paths inside it (webkitRelativePath)."""
    files = sorted(f for f in root.rglob("*") if f.is_file())
    rel = [f"{root.name}/{f.relative_to(root).as_posix()}" for f in files]
    return [handle_file(str(f)) for f in files], json.dumps(rel)


def zip_of(root: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root))
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    return out


def drain(job) -> list:
    """Every update the server sent for a finished job, in order (statuses with progress, outputs)."""
    updates = []
    while not job.communicator.updates.empty():
        updates.append(job.communicator.updates.get_nowait())
    return updates


def captions(gallery) -> list[str]:
    return [item["caption"] for item in gallery]


def test_a_picked_folder_keeps_its_class_names(app, tmp_path):
    url, _ = app
    root = make_folder(tmp_path / "pets", {"cats": 4, "dogs é": 3})
    (root / "cats" / "notes.txt").write_text("not an image")
    summary, warnings, counts, gallery = client(url).predict(*folder_upload_args(root), api_name="/load_folder")
    assert "7 images in 2 classes" in summary and "cats (4)" in summary and "dogs é (3)" in summary
    assert "Split: 5 for training, 2 for validation" in summary
    assert "`cats/notes.txt`" in warnings
    assert [row[:2] for row in counts["data"]] == [["cats", 4], ["dogs é", 3]]
    assert sorted(set(captions(gallery))) == ["cats", "dogs é"] and len(gallery) == 7


def test_a_folder_with_its_own_split_keeps_it_and_warns_about_identical_images(app, tmp_path):
    url, _ = app
    root = tmp_path / "photos"
    make_folder(root / "train", {"cats": 4, "dogs": 4})
    make_folder(root / "val", {"cats": 2, "dogs": 2}, size=(30, 30))
    shutil.copyfile(root / "train" / "cats" / "img 0.png", root / "val" / "cats" / "copy.png")  # leaked into validation
    summary, warnings, _, _ = client(url).predict(*folder_upload_args(root), api_name="/load_folder")
    assert "13 images in 2 classes" in summary
    assert "Split: 8 for training, 5 for validation (the dataset's own train/validation split)" in summary
    assert "identical to training images" in warnings
    assert "val/cats/copy.png = train/cats/img 0.png" in warnings  # named inside the dataset, not by server path


def test_a_zip_loads_and_reports_problems(app, tmp_path):
    url, _ = app
    root = make_folder(tmp_path / "src", {"big": 9, "small": 3, "single": 1})
    (root / "big" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    summary, warnings, _, _ = client(url).predict(handle_file(str(zip_of(root, tmp_path / "ds.zip"))), api_name="/load_zip")
    assert "in 3 classes" in summary
    assert "Imbalanced classes: big has" in warnings and "single only 1" in warnings
    assert "fewer than 2 images" in warnings and "single" in warnings
    assert "broken.png" in warnings


def test_loading_shows_real_progress(app, tmp_path):
    url, _ = app
    root = make_folder(tmp_path / "many", {"a": 60, "b": 60})
    job = client(url).submit(*folder_upload_args(root), api_name="/load_folder")
    summary, *_ = job.result(timeout=120)
    assert "120 images in 2 classes" in summary and "Split: 96 for training, 24 for validation" in summary
    steps = [unit for u in drain(job) if getattr(u, "code", None) == Status.PROGRESS for unit in u.progress_data or []]
    # Gradio sends the latest step every 10 ms, so short stages may be merged; the decoding of the 96 training
    # images (the engine's own count) ends just before the preview is drawn, and always reaches the page.
    decoding = [s for s in steps if s.desc == "Decoding"]
    assert decoding and decoding[-1].index == decoding[-1].length == 96, steps
    assert {s.desc for s in steps} <= {"Receiving the folder", "Checking files", "Decoding"}, steps
    for desc in {s.desc for s in steps}:
        indices = [s.index for s in steps if s.desc == desc]
        assert indices == sorted(indices)  # counts up, never invented


def test_sessions_never_see_each_others_dataset(app, tmp_path):
    url, workspaces = app
    a, b = client(url), client(url)
    a.predict(*folder_upload_args(make_folder(tmp_path / "a", {"cats": 3, "dogs": 3})), api_name="/load_folder")
    b.predict(handle_file(str(zip_of(make_folder(tmp_path / "b", {"red": 3, "green": 3, "blue": 3}),
                                     tmp_path / "b.zip"))), api_name="/load_zip")
    c = client(url)
    c.predict("builtin:shapes", api_name="/load_data")
    # what each session trains on: the augmentation preview draws from the session's own dataset
    seen = {name: {cap.split(":")[0] for cap in captions(x.predict("none", 32, 0, api_name="/preview_augmentation")["value"])}
            for name, x in {"a": a, "b": b, "c": c}.items()}
    expected = {"a": {"cats", "dogs"}, "b": {"red", "green", "blue"}, "c": set(sample.CLASSES)}
    assert all(seen[name] and seen[name] <= classes for name, classes in expected.items()), seen
    # and each session's upload lives in its own folder
    folders = {Path(ws.dataset.images[0]).parent.parent for ws in workspaces._items.values()
               if ws.dataset is not None and isinstance(ws.dataset.images[0], str)}
    assert len(folders) >= 2


def test_hub_offline_answers_at_once_with_offline(app):
    url, _ = app
    with pytest.raises(AppError, match="(?i)offline"):
        client(url).predict("AI-Lab-Makerere/beans", 100, "", "", "", "", api_name="/load_hub")


@pytest.mark.parametrize("typed", ["/etc", "../secrets", "~/data", "a/b/c", ""])
def test_server_paths_are_never_read(app, typed):
    url, _ = app
    with pytest.raises(AppError, match="Hub dataset id"):
        client(url).predict(typed, 100, "", "", "", "", api_name="/load_hub")


def bad_folder_uploads(tmp_path):
    one = make_folder(tmp_path / "one", {"cats": 3})
    text = tmp_path / "texts"
    for name in ("a", "b"):
        (text / name).mkdir(parents=True)
        (text / name / "readme.txt").write_text("hello")
    return {"one class": (one, "only one class"), "no images": (text, "No usable images")}


@pytest.mark.parametrize("case", ["one class", "no images"])
def test_bad_folders_get_clear_messages(app, tmp_path, case):
    url, _ = app
    root, needle = bad_folder_uploads(tmp_path)[case]
    c = client(url)
    with pytest.raises(AppError, match=needle):
        c.predict(*folder_upload_args(root), api_name="/load_folder")
    assert "900 images" in c.predict("builtin:shapes", api_name="/load_data")[0]  # still serving


def test_an_empty_upload_gets_a_clear_message(app):
    url, _ = app
    with pytest.raises(AppError, match="empty"):
        client(url).predict([], "[]", api_name="/load_folder")
    with pytest.raises(AppError, match="Choose a .zip"):
        client(url).predict(None, api_name="/load_zip")


@pytest.mark.parametrize("member,needle", [("../evil.png", "unsafe path"), ("/abs/evil.png", "unsafe path")])
def test_a_malicious_zip_is_refused(app, tmp_path, member, needle):
    url, workspaces = app
    root = make_folder(tmp_path / "src", {"cats": 2, "dogs": 2})
    bad = zip_of(root, tmp_path / "bad.zip", extra={member: b"evil"})
    c = client(url)
    with pytest.raises(AppError, match=needle):
        c.predict(handle_file(str(bad)), api_name="/load_zip")
    assert not list(workspaces.root.parent.rglob("evil.png"))
    assert "900 images" in c.predict("builtin:shapes", api_name="/load_data")[0]


def test_older_uploads_are_removed_once_replaced(app, tmp_path):
    url, workspaces = app
    c = client(url)
    c.predict(*folder_upload_args(make_folder(tmp_path / "one", {"x": 2, "y": 2})), api_name="/load_folder")
    c.predict(*folder_upload_args(make_folder(tmp_path / "two", {"p": 2, "q": 2})), api_name="/load_folder")
    ws = next(w for w in workspaces._items.values() if w.dataset is not None and w.dataset.class_names == ["p", "q"])
    assert len(list((ws.folder / "data").iterdir())) == 1


def test_report_warns_about_imbalance_only_from_three_times():
    def ds(counts):
        labels = [c for c, n in enumerate(counts) for _ in range(n)]
        return data_lib.LabelledImages([f"c{i}" for i in range(len(counts))], [None] * len(labels), labels, "t")
    assert not any("Imbalanced" in w for w in data_report.warnings(ds([8, 3])))
    assert any("Imbalanced" in w and "3.0x" in w for w in data_report.warnings(ds([9, 3])))


def test_resolve_accepts_hub_ids_and_builtin():
    assert data_handlers.resolve(" builtin:shapes ") == data_lib.BUILTIN
    assert data_handlers.resolve("AI-Lab-Makerere/beans") == "hub:AI-Lab-Makerere/beans"
    assert data_handlers.resolve("hub:uoft-cs/cifar10") == "hub:uoft-cs/cifar10"


@pytest.fixture(scope="module")
def hub_standin(tmp_path_factory):
    """A Hub dataset the app can load offline: `snapfit-test/colours` (train 12 + test 6 images, 2 classes, in
    columns named `picture` and `kind`) in a datasets cache of its own (tests/engine/hub_standin.py)."""
    import datasets

    from tests.engine.hub_standin import make_repo, make_split, seed_cache

    features = datasets.Features({"picture": datasets.Image(), "kind": datasets.ClassLabel(names=["red", "blue"])})
    parts = {name: make_split([i % 2 for i in range(n)], features, "picture", "kind", seed=seed)
             for name, n, seed in (("train", 12, 1), ("test", 6, 2))}
    root = tmp_path_factory.mktemp("hub")
    seed_cache(make_repo(root / "colours", parts), "snapfit-test/colours", root / "cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", root / "cache")
        yield "snapfit-test/colours"


def test_a_hub_dataset_loads_with_its_own_split_and_columns(app, hub_standin):
    url, _ = app
    summary, warnings, counts, gallery = client(url).predict(hub_standin, 3, "", "", "", "", api_name="/load_hub")
    assert "from `snapfit-test/colours`" in summary and "red (" in summary and "blue (" in summary
    assert "the dataset's own train/validation split" in summary
    assert "test split is used for validation" in warnings  # the engine's note, shown as is
    assert sorted(set(captions(gallery))) == ["blue", "red"]
    # a column that does not exist: the engine's message, and the app keeps serving
    with pytest.raises(AppError, match="nope"):
        client(url).predict(hub_standin, 3, "", "", "nope", "", api_name="/load_hub")
