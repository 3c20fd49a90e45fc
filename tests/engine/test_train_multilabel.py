"""Multi-label training (several labels per image): sigmoid outputs and binary cross-entropy, scored by mAP, on the
built-in `builtin:shapes-multi` set; every strategy, mixup, the LR finder and resume take multi-hot targets."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import data as data_lib
from engine.checkpoint import RunState
from engine.config import FinderConfig
from engine.events import EpochEnd, describe
from engine.lr_finder import find
from engine.train import Learner, TrainConfig, _loss_fn, decode_once, fit, plain_loss


@pytest.fixture(scope="module")
def multi():
    return data_lib.load_builtin_multi(600)


@pytest.fixture(scope="module")
def small(multi):
    """A quick 160-image part of the set at 32 px, for what needs a run rather than a good one."""
    part = data_lib.LabelledImages(multi.class_names, multi.images[:160], multi.labels[:160], "test", multi_label=True)
    return decode_once(part, 32)


def label_frequency_map(targets: torch.Tensor) -> float:
    """The mAP of a model that knows only how common each label is (the same score for every image): each label's
    AP is then its frequency among the validation images."""
    return float(targets.mean(0)[targets.sum(0) > 0].mean())


def test_a_small_model_from_scratch_learns_the_built_in_set_well_above_label_frequency(multi, tmp_path):
    decoded = decode_once(multi, 64)
    # iterative stratification shares each label out near 80/20, so the split is near 480/120 but not exactly
    assert len(decoded.train.y) + len(decoded.val.y) == 600 and abs(len(decoded.train.y) - 480) <= 15
    assert decoded.train.y.shape[1] == 6 and decoded.train.y.dtype == torch.float32
    cfg = TrainConfig(model="resnet10t", weights="scratch", img_size=64, epochs=12)
    events = list(fit(decoded, cfg, str(tmp_path / "m")))
    started, finished = next(e for e in events if e.kind == "started"), events[-1]
    assert started.kind == "started" and started.metric == "mAP" and "mAP" in describe(started)
    assert finished.kind == "finished" and finished.metric == "mAP" and "mAP" in describe(finished)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert all(e.metric == "mAP" and "val mAP" in describe(e) for e in epochs)

    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    baseline = label_frequency_map(decoded.val.y)
    print(f"mAP {metrics['val_map']:.3f}, label-frequency baseline {baseline:.3f}")
    assert 0.25 < baseline < 0.45  # one to three of six shapes
    assert metrics["val_map"] > baseline + 0.3
    assert metrics["val_map"] == finished.best_val_acc == max(e.val_acc for e in epochs)
    assert metrics["multi_label"] is True and metrics["best_epoch"] == finished.best_epoch
    assert set(metrics["per_label_ap"]) == set(multi.class_names)
    assert not {"val_accuracy", "confusion_matrix", "per_class_accuracy"} & set(metrics)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["multi_label"] is True and config["label_names"] == multi.class_names
    assert config["thresholds"] == metrics["thresholds"] and len(config["thresholds"]) == 6
    assert all(0 < t < 1 for t in config["thresholds"])
    assert config["threshold_kind"] == metrics["threshold_kind"] == "per_label"  # 120 validation images: 5+ per label


def test_the_head_strategy_on_pretrained_features_learns(multi, tmp_path):
    part = data_lib.LabelledImages(multi.class_names, multi.images[:200], multi.labels[:200], "test", multi_label=True)
    decoded = decode_once(part, 96)
    cfg = TrainConfig(model="tf_efficientnet_lite0", weights="pretrained", strategy="head", img_size=96, epochs=8,
                      batch_size=32)
    events = list(fit(decoded, cfg, str(tmp_path / "m")))
    assert events[-1].kind == "finished"
    baseline = label_frequency_map(decoded.val.y)
    print(f"head mAP {events[-1].best_val_acc:.3f}, baseline {baseline:.3f}")
    assert events[-1].best_val_acc > baseline + 0.3


def test_multi_label_smoothing_moves_every_target_towards_one_half():
    cfg = TrainConfig(label_smoothing=0.2)
    logits, y = torch.randn(4, 3), torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]])
    expected = F.binary_cross_entropy_with_logits(logits, y * 0.8 + 0.1)
    assert torch.allclose(plain_loss(cfg, multi_label=True)(logits, y), expected)


def test_mixup_mixes_multi_hot_targets_by_lambda():
    torch.manual_seed(0)
    cfg = TrainConfig(mixup=0.4, cutmix=0.0, label_smoothing=0.0)
    mixer, loss_fn = _loss_fn(cfg, 3, multi_label=True)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]])
    mixed_x, mixed_y = mixer(x.clone(), y)
    lam = float((mixed_x - x.flip(0)).flatten(1)[0].norm() / (x - x.flip(0)).flatten(1)[0].norm())  # from the images
    assert torch.allclose(mixed_y, lam * y + (1 - lam) * y.flip(0), atol=1e-4)
    logits = torch.randn(4, 3)
    assert torch.allclose(loss_fn(logits, mixed_y), F.binary_cross_entropy_with_logits(logits, mixed_y))


def test_mixup_cutmix_smoothing_and_progressive_resizing_run_on_multi_label_data(small, tmp_path):
    cfg = TrainConfig(model="resnet10t", img_size=32, epochs=3, batch_size=32, mixup=0.4, cutmix=1.0,
                      label_smoothing=0.1, progressive_resize=True, augment="standard")
    events = list(fit(small, cfg, str(tmp_path / "m")))
    assert events[-1].kind == "finished"
    assert all(math.isfinite(e.train_loss) and 0 <= e.val_acc <= 1 for e in events if isinstance(e, EpochEnd))


@pytest.mark.parametrize("strategy", ["full", "head"])
def test_the_lr_finder_runs_on_multi_label_data_and_restores_weights_bit_exactly(small, strategy):
    cfg = TrainConfig(model="resnet10t", strategy=strategy, img_size=32, batch_size=16)
    learner = Learner(small, cfg)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    result = list(find(None, cfg, FinderConfig(num_steps=20), learner=learner))[-1]
    assert result.kind == "lr_finished" and len(result.lrs) >= 5 and all(math.isfinite(v) for v in result.losses[:5])
    assert result.losses[0] == pytest.approx(math.log(2), abs=0.15)  # BCE of untrained sigmoid outputs, not CE's log(6)
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_resumed_multi_label_run_ends_with_the_weights_of_one_run(small, tmp_path):
    cfg = TrainConfig(model="resnet10t", strategy="finetune", freeze_epochs=1, epochs=2, img_size=32, batch_size=32,
                      mixup=0.4, bf16=False)
    whole = list(fit(small, cfg, str(tmp_path / "whole")))
    checkpoint, events = tmp_path / "run.ckpt", []
    while True:  # a budget of 0 s: every call ends after its first epoch
        chunk = list(fit(small, cfg, str(tmp_path / "chunked"), checkpoint=str(checkpoint), time_budget=0))
        events += chunk
        if chunk[-1].kind != "paused":
            break
    assert events[-1].kind == "finished"
    assert (tmp_path / "chunked" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert [e.val_acc for e in events if isinstance(e, EpochEnd)] == [e.val_acc for e in whole if isinstance(e, EpochEnd)]
    assert json.loads(Path(tmp_path / "chunked" / "config.json").read_text())["thresholds"] == \
        json.loads(Path(tmp_path / "whole" / "config.json").read_text())["thresholds"]


def epoch(n: int, val_loss: float, score: float) -> EpochEnd:
    return EpochEnd(n, 0.5, val_loss, score, 1.0, 1e-3, "mAP")


def test_multi_label_early_stopping_follows_the_map_not_the_loss():
    model = torch.nn.Linear(2, 2)
    by_score = RunState(stop_on_score=True)
    for n, (loss, score) in enumerate([(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9)], 1):  # loss up, mAP up
        by_score.record_epoch(epoch(n, loss, score), model, None)
    assert not by_score.stops_early(2) and by_score.best_epoch == 4
    for n in (5, 6):  # mAP no higher while the loss falls
        by_score.record_epoch(epoch(n, 0.1, 0.85), model, None)
    assert by_score.stops_early(2) and by_score.best_epoch == 4
    by_loss = RunState()  # single-label: the loss decides, as before
    for n, (loss, score) in enumerate([(0.5, 0.6), (0.6, 0.7), (0.7, 0.8)], 1):
        by_loss.record_epoch(epoch(n, loss, score), model, None)
    assert by_loss.stops_early(2) and by_loss.best_epoch == 3
