"""Decoding once: the same pixels eagerly, lazily (beyond the memory budget) and with any number of threads;
identical train/validation images are warned about; progress is reported."""
import numpy as np
import pytest
import torch
from PIL import Image

from engine import data


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (tmp_path / "ds" / name).mkdir(parents=True)
        for i in range(7):
            Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(tmp_path / "ds" / name / f"{i}.jpg")
    return tmp_path / "ds"


def test_lazy_images_equal_the_eager_ones(folder):
    ds = data.load(str(folder))
    eager, _ = data.decode(ds, range(len(ds)), 24)
    lazy, _ = data.decode(ds, range(len(ds)), 24, lazy=True)
    assert isinstance(lazy.x, data.LazyImages) and lazy.x.shape == tuple(eager.x.shape) and len(lazy.x) == len(eager.x)
    idx = torch.tensor([5, 0, 20, 11])
    assert torch.equal(lazy.x[idx], eager.x[idx]) and torch.equal(lazy.y, eager.y) and lazy.digests == eager.digests
    assert torch.equal(lazy.x[3], eager.x[3]) and torch.equal(lazy.x[2:6], eager.x[2:6])


def test_threads_do_not_change_the_result(folder, monkeypatch):
    ds = data.load(str(folder))
    many, _ = data.decode(ds, range(len(ds)), 24)
    monkeypatch.setattr(data, "DECODE_THREADS", 1)
    one, _ = data.decode(ds, range(len(ds)), 24)
    assert torch.equal(many.x, one.x)


def test_memory_budget_decides_eager_or_lazy(folder, monkeypatch):
    ds = data.load(str(folder))
    train_idx, val_idx = data.holdout(ds)
    train, val, _, warnings = data.decode_train_val(ds, train_idx, val_idx, 24, memory_budget=1)
    assert isinstance(train.x, torch.Tensor) and not warnings  # 21 images of 24 px: 36 KB < 1 MB
    train, val, _, warnings = data.decode_train_val(ds, train_idx, val_idx, 24, memory_budget=0)
    assert isinstance(train.x, data.LazyImages) and isinstance(val.x, data.LazyImages)
    assert "exceed the memory budget of 0 MB" in warnings[0]
    monkeypatch.setenv("SNAPFIT_MEMORY_BUDGET_MB", "0")
    assert not data.fits_in_memory(1, 16) and data.fits_in_memory(1, 16, 1)
    monkeypatch.setenv("SNAPFIT_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(data.UserError, match="SNAPFIT_MEMORY_BUDGET_MB must be a whole number"):
        data.fits_in_memory(1, 16)


def test_identical_train_and_validation_images_are_warned(tmp_path):
    rng = np.random.default_rng(1)
    for split_name in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split_name / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / split_name / name / f"{i}.png")
    (tmp_path / "val" / "b" / "copy.png").write_bytes((tmp_path / "train" / "a" / "1.png").read_bytes())
    ds = data.load(str(tmp_path))
    _, _, _, warnings = data.decode_train_val(ds, *data.holdout(ds), 16)
    assert len(warnings) == 1 and "1 validation images are identical to training images" in warnings[0]
    assert "val/b/copy.png = " in warnings[0] and warnings[0].endswith("train/a/1.png.")


def test_progress_is_reported_while_loading_and_decoding(folder):
    seen = []
    ds = data.load(str(folder), progress=lambda done, total, stage: seen.append((done, total, stage)))
    data.decode(ds, range(len(ds)), 16, progress=lambda done, total, stage: seen.append((done, total, stage)))
    assert ("checking files" in {s for *_, s in seen}) and seen[-1] == (21, 21, "decoding")


def test_preview_gives_arrays_for_any_kind_of_item(folder, small_shapes):
    for ds in (data.load(str(folder)), small_shapes):
        shown = data.preview(ds, per_class=2, size=32)
        assert [c for _, c in shown] == [n for n in ds.class_names for _ in range(2)]
        assert all(a.shape == (32, 32, 3) and a.dtype == np.uint8 for a, _ in shown)


def test_training_beyond_the_memory_budget_gives_the_same_model(small_shapes, tmp_path):
    """Lazy decoding is slower but must not change a single number of the run."""
    from engine.train import TrainConfig, fit

    few = data.LabelledImages(small_shapes.class_names, small_shapes.images[:48], small_shapes.labels[:48], "test")
    runs = []
    for budget in (None, 0):
        cfg = TrainConfig(model="resnet10t", epochs=1, img_size=32, batch_size=16, augment="light", memory_budget_mb=budget,
                          bf16=False)  # fp32: no bf16 kernel warm-up, a faster test
        events = list(fit(few, cfg, str(tmp_path / f"m{budget}")))
        runs.append([(e.epoch, e.train_loss, e.val_loss) for e in events if e.kind == "epoch_end"])
        assert any("exceed the memory budget" in getattr(e, "message", "") for e in events) == (budget == 0)
    assert runs[0] == runs[1]


def test_a_bad_memory_budget_is_named():
    from engine.errors import UserError
    from engine.train import TrainConfig

    with pytest.raises(UserError, match="Memory budget \\(MB\\) must be a whole number"):
        TrainConfig(memory_budget_mb=-5).checked()
