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
    with pytest.raises(UserError, match="No usable images"):
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


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png", "..\\evil.png"])
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


def test_stratified_split_keeps_proportions_and_singletons_out_of_validation():
    labels = [0] * 50 + [1] * 10 + [2]
    train, val = data.stratified_holdout(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(61))
    val_labels = [labels[i] for i in val]
    assert val_labels.count(0) == 10 and val_labels.count(1) == 2 and 2 not in val_labels
    assert data.stratified_holdout(labels, 0.2, seed=0) == (train, val)


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


def test_originals_are_shown_at_their_own_size_capped_with_a_fallback_for_a_lost_file(tmp_path):
    photo, small, lost = tmp_path / "photo.jpg", tmp_path / "small.png", tmp_path / "lost.png"
    Image.new("RGB", (800, 600), (10, 120, 200)).save(photo)
    Image.new("RGBA", (40, 30), (200, 10, 10, 0)).save(small)  # transparent: shown on white, as training sees it
    Image.new("RGB", (64, 64)).save(lost)
    items = data.LabelledImages(["a", "b"], [str(photo), str(small), str(lost)], [0, 1, 1], "test")
    lost.unlink()  # removed after loading: its decoded square stands in
    square = np.full((48, 48, 3), 77, np.uint8)
    shown = data.originals(items, [0, 1, 2], 256, fallbacks=[None, None, square])
    assert [a.shape for a in shown] == [(192, 256, 3), (30, 40, 3), (256, 256, 3)]  # aspect kept; never enlarged
    assert shown[1].min() == 255 and (shown[2] == 77).all()
    assert data.originals(items, [2, 0], 100)[0] is None and data.originals(items, [2, 0], 100)[1].shape == (75, 100, 3)


# ---------------------------------------------------------------------------------------------- layouts


def make_split_folder(root, splits=("train", "val"), classes=("cats", "dogs"), n=(4, 2)):
    for s, split_name in enumerate(splits):
        make_folder(root / split_name, classes, n[min(s, len(n) - 1)])
    return root


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_train_and_val_folders_are_the_split(tmp_path, val_name):
    root = make_split_folder(tmp_path / "ds", ("train", val_name))
    ds = data.load(str(root))
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 12
    train, val = data.holdout(ds, 0.5, seed=1)  # the folders decide, not the fraction
    assert [ds.images[i].split("/")[-3] for i in val] == [val_name] * 4 and len(train) == 8
    assert "Validation" not in " ".join(ds.warnings)


def test_train_val_test_folders_and_one_split_picked(tmp_path):
    root = make_split_folder(tmp_path / "ds", ("train", "val", "test"), n=(4, 2, 3))
    ds = data.load(str(root))
    assert [len(ds.splits[k]) for k in ("train", "validation", "test")] == [8, 4, 6]
    only = data.load(str(root), split="test")
    assert len(only) == 6 and only.splits == {} and only.origin == {"source": str(root), "split": "test"}
    assert len(data.load(str(root), split="dev")) == 4  # dev, valid, validation: names of the val folder
    with pytest.raises(UserError, match="no split 'holdout'. Its splits: test, train, val"):
        data.load(str(root), split="holdout")
    with pytest.raises(UserError, match="has no train/val/test folders"):
        data.load(str(make_folder(tmp_path / "flat")), split="train")


def test_train_and_test_only_validates_on_test(tmp_path):
    ds = data.load(str(make_split_folder(tmp_path / "ds", ("train", "test"))))
    assert len(ds.splits["validation"]) == 4 and any("test split is used for validation" in w for w in ds.warnings)


def test_wrapped_split_layout_in_a_zip_with_mac_debris(tmp_path):
    make_split_folder(tmp_path / "src" / "My Pets", classes=("chats noirs", "émeu"))
    zpath = tmp_path / "pets.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((tmp_path / "src").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "src"))
        zf.writestr("__MACOSX/My Pets/train/._x.png", b"\x00\x05\x16\x07")
        zf.writestr("My Pets/.DS_Store", b"junk")
        zf.writestr("My Pets/train/émeu/._img 0.png", b"\x00\x05\x16\x07")  # AppleDouble file next to the real one
    ds = data.load_zip(zpath, tmp_path / "out")
    assert ds.class_names == ["chats noirs", "émeu"] and ds.has_own_split() and len(ds) == 12 and ds.skipped == []
    assert not (tmp_path / "out" / "__MACOSX").exists() and not (tmp_path / "out" / "My Pets" / ".DS_Store").exists()


def test_class_names_in_either_unicode_form_are_one_class(tmp_path):
    import unicodedata

    make_folder(tmp_path / "ds" / "train", (unicodedata.normalize("NFD", "émeu"), "ours"))
    make_folder(tmp_path / "ds" / "val", (unicodedata.normalize("NFC", "émeu"), "ours"), n=2)
    ds = data.load(str(tmp_path / "ds"))
    assert ds.class_names == ["ours", "émeu"] and ds.counts() == {"ours": 6, "émeu": 6}


def test_loose_files_and_small_classes_are_reported(tmp_path):
    root = make_folder(tmp_path / "ds", ("cats", "dogs"))
    _png((1, 2, 3)).save(root / "stray.png")
    (root / "lynx").mkdir()
    _png((9, 9, 9)).save(root / "lynx" / "only one.png")
    (root / "cats" / ".hidden.png").write_bytes(b"not even read")
    ds = data.load(str(root))
    assert ds.counts() == {"cats": 4, "dogs": 4, "lynx": 1} and ds.skipped == ["stray.png"]
    text = " ".join(ds.warnings)
    assert "not in a class folder: stray.png" in text and "fewer than 2 images are kept out of validation: lynx" in text
    _, val = data.holdout(ds)
    assert 2 not in [ds.labels[i] for i in val]


def test_unreadable_and_oversized_images_are_skipped_and_listed_at_load(tmp_path, monkeypatch):
    from engine import images

    root = make_folder(tmp_path / "ds")
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "dogs" / "text.jpg").write_text("I am not a JPEG")
    _png((0, 0, 0), size=(300, 300)).save(root / "dogs" / "huge.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 50_000)  # 300x300 counts as a bomb here
    ds = data.load(str(root))
    assert len(ds) == 8 and sorted(ds.skipped) == ["cats/broken.png", "dogs/huge.png", "dogs/text.jpg"]
    text = " ".join(ds.warnings)
    assert "Skipped 2 unreadable images: cats/broken.png, dogs/text.jpg" in text and "Refused 1 images too large" in text


def test_truncated_image_is_skipped_at_decode_and_recorded(tmp_path):
    root = make_folder(tmp_path / "ds", n=6)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "cats" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header fine, data cut
    ds = data.load(str(root))
    assert len(ds) == 13  # the header check passes it
    train_idx, val_idx = data.holdout(ds)
    train, val, bad, warnings = data.decode_train_val(ds, train_idx, val_idx, 16)
    assert len(train) + len(val) == 12 and [b.split("/")[-1] for b in bad] == ["cut.jpg"]
    assert any("unreadable images" in w and "cut.jpg" in w for w in warnings)
    assert ds.skipped[-1].endswith("cut.jpg") and any("cut.jpg" in w for w in ds.warnings)  # the Data tab sees it too


def test_empty_sources_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="No usable images found"):
        data.load(str(tmp_path / "empty"))
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(UserError, match="No usable images found"):
        data.load_zip(tmp_path / "empty.zip", tmp_path / "out")


def test_a_source_whose_images_are_all_unreadable_says_so(tmp_path):
    with zipfile.ZipFile(tmp_path / "broken.zip", "w") as z:
        for name in ("cats/1.png", "cats/2.jpg", "dogs/1.png", "dogs/2.png"):
            z.writestr(name, b"this is text, not a picture")
    with pytest.raises(UserError, match="No usable images found. Skipped 4 unreadable images: .*cats/1.png"):
        data.load(str(tmp_path / "broken.zip"))
    with zipfile.ZipFile(tmp_path / "half.zip", "w") as z:
        z.writestr("dogs/1.png", b"not a picture either")
        for name in ("cats/1.png", "cats/2.png"):
            picture = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 30, 30)).save(picture, "PNG")
            z.writestr(name, picture.getvalue())
    with pytest.raises(UserError, match="only one class \\(cats\\).*Skipped 1 unreadable images: dogs/1.png"):
        data.load(str(tmp_path / "half.zip"))


def test_hub_options_on_a_folder_are_refused(tmp_path):
    with pytest.raises(UserError, match="label_column: only for Hub datasets"):
        data.load(str(make_folder(tmp_path / "ds")), label_column="label")
    with pytest.raises(UserError, match="built-in dataset has no split"):
        data.load("builtin:shapes", split="train")


# ---------------------------------------------------------------------------------------------- zips


def test_zip_bombs_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    from engine import folders

    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/a.png", b"\0" * 30_000_000)  # 30 MB of zeros: about 30 KB zipped
        for i in range(5):
            zf.writestr(f"dogs/{i}.png", b"x")
    assert zpath.stat().st_size < 100_000
    monkeypatch.setattr(folders, "MAX_ZIP_BYTES", 10_000_000)
    with pytest.raises(UserError, match="would unpack to 29 MB; the limit is 10 MB"):
        data.safe_extract(zpath, tmp_path / "out")
    monkeypatch.setattr(folders, "MAX_ZIP_BYTES", 10**9)
    monkeypatch.setattr(folders, "MAX_ZIP_FILES", 5)
    with pytest.raises(UserError, match="holds 6 entries; the limit is 5"):
        data.safe_extract(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_damaged_zip_member_is_one_message(tmp_path):
    zpath = tmp_path / "damaged.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cats/a.png", b"A" * 1000)
    raw = bytearray(zpath.read_bytes())
    raw[raw.index(b"A" * 1000) + 10] = ord("B")  # flip a byte of the stored data: the CRC no longer matches
    zpath.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="damaged.zip is damaged"):
        data.safe_extract(zpath, tmp_path / "out")
