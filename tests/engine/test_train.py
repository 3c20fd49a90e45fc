import json

import pytest
import timm
import torch

from engine import models, train
from engine.errors import UserError
from engine.export import load_model_folder
from engine.predict import Predictor
from engine.stopping import StopToken
from engine.train import TrainConfig, decode_once, fit
from tests.faults import Fault, injected


def run(data, cfg, out):
    events = list(fit(data, cfg, str(out)))
    return events, events[-1]


def test_scratch_recipe_on_builtin_shapes_reaches_90_percent(builtin_model):
    """The scratch recipe (the old offline default): a small CNN from scratch learns the built-in dataset."""
    cfg = TrainConfig()
    out, events = builtin_model
    last = events[-1]
    assert last.kind == "finished"
    # 97 % on a Xeon with AMX-bf16, 93.9 % on an AMD EPYC with AVX-512 bf16 (the same code before and after 6c559b0):
    # bf16 kernels differ between CPUs, so the bar is what every one of them clears, still far above chance (17 %)
    assert last.best_val_acc >= 0.9
    kinds = [e.kind for e in events]
    assert kinds.count("epoch_end") == cfg.epochs and "started" in kinds and kinds.count("step") == cfg.epochs * 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(max(h["val_acc"] for h in metrics["history"]), abs=1e-6)
    assert len(metrics["confusion_matrix"]) == 6 and sum(map(sum, metrics["confusion_matrix"])) == metrics["num_val"]


@pytest.fixture(scope="module")
def trained(small_shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    cfg = TrainConfig(model="resnet10t", weights="scratch", epochs=3, lr=5e-3, img_size=48, batch_size=32)
    _, last = run(small_shapes, cfg, out)
    return out, last


def test_model_folder_loads_in_plain_timm_with_class_names(trained, small_shapes):
    out, _ = trained
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    config = json.loads((out / "config.json").read_text())
    assert config["label_names"] == small_shapes.class_names
    assert model.num_classes == 3
    ours, _ = load_model_folder(out)
    x = torch.randn(2, 3, 48, 48)
    assert torch.equal(model.eval()(x), ours(x))


def test_predictor_classes_match(trained, small_shapes):
    out, _ = trained
    predictor = Predictor.from_folder(out)
    result = predictor.predict(small_shapes.images[:3], top_k=2)
    assert len(result) == 3 and all(len(r) == 2 and set(r) <= set(small_shapes.class_names) for r in result)
    assert all(abs(sum(predictor.probabilities([im])[0].tolist()) - 1) < 1e-4 for im in small_shapes.images[:2])


def test_stop_mid_run_leaves_loadable_folder(small_shapes, tmp_path):
    stop = StopToken()
    cfg = TrainConfig(model="resnet10t", epochs=5, img_size=32, batch_size=16)
    events = []
    for event in fit(small_shapes, cfg, str(tmp_path / "m"), stop):
        events.append(event)
        if event.kind == "step" and event.step == 3:
            stop.stop()
    assert events[-1].kind == "stopped"
    assert sum(e.kind == "step" for e in events) == 3  # ends within one step of the request
    Predictor.from_folder(tmp_path / "m").predict(small_shapes.images[:1])


@pytest.mark.parametrize("strategy", ["head", "finetune", "progressive"])
def test_strategies_run_and_freeze_what_they_should(small_shapes, tmp_path, strategy):
    decoded = decode_once(small_shapes, 32)
    cfg = TrainConfig(model="resnet10t", strategy=strategy, epochs=2, img_size=32, batch_size=16, weights="scratch")
    torch.manual_seed(cfg.seed)  # fit() seeds the same way before building its model
    model, _ = models.create("resnet10t", 3)
    stem_before = model.conv1[0].weight.detach().clone()
    bn_before = model.bn1.running_mean.clone()
    events = list(fit(decoded, cfg, str(tmp_path / "m")))
    assert events[-1].kind == "finished"
    saved = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    # weights are seeded, so the fresh model above starts where training started
    if strategy == "head":
        assert torch.equal(saved.conv1[0].weight, stem_before) and torch.equal(saved.bn1.running_mean, bn_before)
    else:
        assert sum(e.kind == "epoch_end" for e in events) == (3 if strategy == "finetune" else 2)


def test_bad_config_is_a_clear_error():
    with pytest.raises(UserError, match="(?i)epochs"):
        TrainConfig(epochs=0).checked()
    with pytest.raises(UserError, match="(?i)learning rate"):
        TrainConfig(lr=float("nan")).checked()
    with pytest.raises(UserError, match="Unknown training option"):
        TrainConfig.from_dict({"epochz": 3})


def test_a_vit_trains_at_a_small_size_and_reloads_at_it(small_shapes, tmp_path):
    """ViTs are built for one input size: the size is passed on at creation and saved for timm to rebuild."""
    cfg = TrainConfig(model="vit_tiny_patch16_224", epochs=1, img_size=32, batch_size=16)
    _, last = run(small_shapes, cfg, tmp_path / "vit")
    assert last.kind == "finished"
    model = timm.create_model(f"local-dir:{tmp_path / 'vit'}", pretrained=True).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert len(Predictor.from_folder(tmp_path / "vit").predict(small_shapes.images[:2])) == 2


def test_a_size_the_model_cannot_take_is_a_clear_error():
    model, _ = models.create("vit_tiny_patch16_224", 3)  # built for 224 px only
    with pytest.raises(UserError, match="cannot take 32 px images.*native 224 px"):
        models.check_input_size(model, "vit_tiny_patch16_224", 32)


def test_a_crash_mid_run_saves_the_best_epoch_so_far_then_raises(small_shapes, tmp_path):
    cfg = TrainConfig(model="resnet10t", epochs=3, img_size=32, batch_size=32)
    events = []
    with injected(Fault(after_validation=True, exc=RuntimeError("injected"), thread_prefix="MainThread")):
        with pytest.raises(RuntimeError, match="injected"):  # the error that ended the run, not a later one
            for event in fit(small_shapes, cfg, str(tmp_path / "m")):
                events.append(event)
    saved = events[-1]
    assert saved.kind == "saved_before_failure" and saved.best_epoch == 1
    assert [e.kind for e in events].count("epoch_end") == 1  # it failed in epoch 2
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["val_accuracy"] == pytest.approx(saved.best_val_acc, abs=1e-6)
    Predictor.from_folder(tmp_path / "m").predict(small_shapes.images[:1])


def test_when_saving_after_a_crash_fails_too_the_first_error_is_raised(small_shapes, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(train, "save_model_folder", disk_full)
    cfg = TrainConfig(model="resnet10t", epochs=3, img_size=32, batch_size=32)
    with injected(Fault(after_validation=True, exc=RuntimeError("injected"), thread_prefix="MainThread")):
        with pytest.raises(RuntimeError, match="injected"):
            list(fit(small_shapes, cfg, str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
