"""Rebuilding an uploaded folder from the browser's relative paths (demo/folder_upload.py)."""
import json

import pytest
from PIL import Image

from demo import folder_upload
from engine.errors import UserError


def uploaded(tmp_path, relpaths, colours=None):
    """Files as Gradio stores a directory upload: each under its own cache folder, by basename only."""
    files = []
    for n, rel in enumerate(relpaths):
        f = tmp_path / "cache" / f"{n:04d}" / rel.split("/")[-1]
        f.parent.mkdir(parents=True)
        Image.new("RGB", (4, 4), (colours or {}).get(rel, (n, 0, 0))).save(f, "PNG")
        files.append(str(f))
    return files


def test_classes_come_back_from_relative_paths(tmp_path):
    rel = ["pets/cats/1.png", "pets/cats/2.png", "pets/dogs é/1.png", "pets/dogs é/my photo.png"]
    colours = {"pets/cats/1.png": (255, 0, 0), "pets/dogs é/1.png": (0, 0, 255)}
    root = folder_upload.rebuild(uploaded(tmp_path, rel, colours), json.dumps(rel), tmp_path / "ws")
    assert root.name == "pets"  # the picked folder is the root
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.png")) == [
        "cats/1.png", "cats/2.png", "dogs é/1.png", "dogs é/my photo.png"]
    # two files with the same basename kept their own pixels, in their own class
    assert Image.open(root / "cats" / "1.png").getpixel((0, 0)) == (255, 0, 0)
    assert Image.open(root / "dogs é" / "1.png").getpixel((0, 0)) == (0, 0, 255)


def test_paths_without_a_common_top_folder_are_kept_as_is(tmp_path):
    rel = ["cats/1.png", "dogs/1.png"]
    root = folder_upload.rebuild(uploaded(tmp_path, rel), json.dumps(rel), tmp_path / "ws")
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]


@pytest.mark.parametrize("bad,needle", [
    ("pets/../../etc/passwd.png", "unsafe path"),
    ("/etc/x.png", "absolute path"),
    ("C:\\Users\\x.png", "absolute path"),
    ("pets\\..\\x.png", "unsafe path"),
])
def test_unsafe_relative_paths_are_refused_and_nothing_is_written(tmp_path, bad, needle):
    rel = ["pets/cats/1.png", bad]
    files = uploaded(tmp_path, ["pets/cats/1.png", "pets/cats/x.png"])
    with pytest.raises(UserError, match=needle):
        folder_upload.rebuild(files, json.dumps(rel), tmp_path / "ws")
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").rglob("*.png"))
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("paths,needle", [
    (None, "did not arrive"),                   # a drop, or a client that sent no list
    ("[]", "did not arrive"),
    ('["a/1.png"]', "did not arrive"),          # fewer paths than files
    ("not json", "could not be read"),
    ('["x/9.png", "x/8.png"]', "did not match"),  # lists out of step
    ('["1.png", "2.png"]', "no folder names"),  # plain files, no class folders
])
def test_missing_or_mismatched_paths_get_clear_messages(tmp_path, paths, needle):
    files = uploaded(tmp_path, ["1.png", "2.png"])
    with pytest.raises(UserError, match=needle):
        folder_upload.rebuild(files, paths, tmp_path / "ws")


def test_an_empty_upload_is_refused(tmp_path):
    with pytest.raises(UserError, match="empty"):
        folder_upload.rebuild([], "[]", tmp_path / "ws")


def test_progress_is_reported_per_file(tmp_path):
    rel = [f"p/{c}/{i}.png" for c in ("a", "b") for i in range(3)]
    calls = []
    folder_upload.rebuild(uploaded(tmp_path, rel), json.dumps(rel), tmp_path / "ws", progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (1, 6) and calls[-1] == (6, 6)
