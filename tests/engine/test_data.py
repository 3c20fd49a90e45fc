import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from engine import data
from engine.errors import UserError


def _png(color, size=(20, 20), mode="RGB"):
    return Image.new(mode, size, color)


def make_folder(root, classes=("cats", "dogs"), n=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            _png((40 * c + i, 0, 0)).save(root / name / f"img {i}.png")
    return root


def test_folder_classes_from_subfolders_ignores_hidden_and_counts_non_images(tmp_path):
    root = make_folder(tmp_path / "ds", classes=("cats", "dogs", "émeu"))
    (root / "cats" / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_text("x")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x.png").write_bytes(b"junk")
    ds = data.load(str(root))
    assert ds.class_names == ["cats", "dogs", "émeu"]
    assert ds.counts() == {"cats": 4, "dogs": 4, "émeu": 4}
    assert ds.skipped == ["cats/notes.txt"] and any("not images" in w for w in ds.warnings)


def test_single_wrapping_folder_is_descended(tmp_path):
    make_folder(tmp_path / "outer" / "inner")
    assert data.load(str(tmp_path / "outer")).class_names == ["cats", "dogs"]


def test_one_class_or_empty_is_refused(tmp_path):
    make_folder(tmp_path / "one", classes=("cats",))
    with pytest.raises(UserError, match="at least 2"):
        data.load(str(tmp_path / "one"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="No images"):
        data.load(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not a folder"):
        data.load(str(tmp_path / "missing"))


def test_zip_with_class_folders_loads(tmp_path):
    make_folder(tmp_path / "src")
    zpath = tmp_path / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in (tmp_path / "src").rglob("*.png"):
            zf.write(f, f.relative_to(tmp_path / "src"))
    ds = data.load_zip(zpath, tmp_path / "out")
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 8


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_zip_traversal_is_refused_and_nothing_written_outside(tmp_path, name):
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("cats/ok.png", b"x")
        zf.writestr(name, b"evil")
    with pytest.raises(UserError, match="unsafe path"):
        data.safe_extract(zpath, tmp_path / "out" / "x")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out").exists()


def test_zip_symlink_is_refused(tmp_path):
    zpath = tmp_path / "link.zip"
    info = zipfile.ZipInfo("cats/link.png")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        data.safe_extract(zpath, tmp_path / "out")


def test_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a valid zip"):
        data.load(str(tmp_path / "x.zip"))


@pytest.mark.parametrize("mode,color", [("L", 128), ("P", 3), ("CMYK", (255, 0, 0, 0)), ("RGBA", (255, 0, 0, 0)), ("I;16", 40000)])
def test_odd_modes_become_rgb(mode, color):
    img = Image.new(mode, (30, 20), color)
    arr = data.to_square(img, 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    if mode == "RGBA":  # fully transparent red -> white background
        assert (arr == 255).all()
    if mode == "CMYK":  # cyan
        assert arr[..., 0].max() < 30 and arr[..., 1].min() > 200


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert data.open_rgb(io.BytesIO(buf.getvalue())).size == (20, 40)


def test_corrupt_images_are_skipped_and_named(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    ds = data.load(str(root))
    tensors, bad = data.decode(ds, range(len(ds)), 16)
    assert len(tensors) == 8 and len(bad) == 1 and bad[0].endswith("broken.png")


def test_stratified_split_keeps_proportions_and_singletons_out_of_validation():
    labels = [0] * 50 + [1] * 10 + [2]
    train, val = data.split(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(61))
    val_labels = [labels[i] for i in val]
    assert val_labels.count(0) == 10 and val_labels.count(1) == 2 and 2 not in val_labels
    assert data.split(labels, 0.2, seed=0) == (train, val)


def test_augment_keeps_shape_and_range_and_is_seeded():
    import torch

    x = torch.rand(8, 3, 32, 32)
    a = data.augment(x, "standard", torch.Generator().manual_seed(0))
    b = data.augment(x, "standard", torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, x)
    assert torch.equal(data.augment(x, "none", torch.Generator()), x)


def test_augmentation_preview_shows_what_training_sees(small_shapes):
    plain = data.augmentation_preview(small_shapes, "none", 32, n=3, copies=2)
    assert len(plain) == 9 and all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img, _ in plain)
    assert all(np.array_equal(plain[i][0], plain[i + k][0]) for i in (0, 3, 6) for k in (1, 2))  # none: unchanged
    moved = data.augmentation_preview(small_shapes, "standard", 32, n=3, copies=2)
    assert [c for _, c in moved][:3] == [plain[0][1], plain[0][1].replace("original", "standard #1"), plain[0][1].replace("original", "standard #2")]
    assert not any(np.array_equal(moved[i][0], moved[i + 1][0]) for i in (0, 3, 6))
    with pytest.raises(UserError, match="Augmentation must be one of"):
        data.augmentation_preview(small_shapes, "heavy", 32)
