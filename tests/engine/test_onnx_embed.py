"""Embedding through ONNX Runtime (engine/onnx_embed.py) on the real built-in EfficientNet-Lite0 weights: the same
features as PyTorch, a head trained on them that works in PyTorch, and PyTorch again when the export fails."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from engine import data as data_lib
from engine import models, onnx_embed
from engine.evaluate import evaluate
from engine.predict import Predictor
from engine.train import Learner, TrainConfig, decode_once, fit

ARCH = "tf_efficientnet_lite0"


def test_the_features_equal_pytorchs_eval_forward():
    torch.manual_seed(0)
    model, _ = models.create(ARCH, 3, "pretrained")
    model.eval().to(memory_format=torch.channels_last)  # as the engine holds it on a CPU
    x = torch.randn(5, 3, 96, 96)
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x.contiguous(memory_format=torch.channels_last)), pre_logits=True)
    got = onnx_embed.OnnxBackbone(model, 96)(x)
    assert got.shape == expected.shape == (5, model.num_features)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    assert model.training is False and next(model.parameters()).is_contiguous(memory_format=torch.channels_last)  # untouched


def test_it_is_taken_only_where_it_pays():
    cpu = torch.device("cpu")
    assert onnx_embed.worth_it(onnx_embed.MIN_IMAGES, bf16=False, device=cpu)
    assert not onnx_embed.worth_it(onnx_embed.MIN_IMAGES - 1, bf16=False, device=cpu)
    assert not onnx_embed.worth_it(10_000, bf16=True, device=cpu)  # bf16 PyTorch is as fast there
    assert not onnx_embed.worth_it(10_000, bf16=False, device=torch.device("cuda"))


@pytest.fixture
def onnx_always(monkeypatch):
    monkeypatch.setattr(onnx_embed, "MIN_IMAGES", 0)


def test_a_head_trained_on_onnx_features_classifies_in_pytorch(small_shapes, tmp_path, onnx_always):
    cfg = TrainConfig(model=ARCH, weights="pretrained", strategy="head", epochs=8, img_size=64, batch_size=16, bf16=False)
    events = list(fit(small_shapes, cfg, str(tmp_path / "m")))
    logs = [e.message for e in events if e.kind == "log"]
    assert any("ONNX Runtime" in m for m in logs), logs
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["val_accuracy"] > 0.8  # 3 shapes: chance is 1/3
    # the saved PyTorch model, on the same validation images, scores what the ONNX features said (to one image)
    _, val_idx = data_lib.holdout(small_shapes, 0.2, 0)
    result = evaluate(Predictor.from_folder(tmp_path / "m"), [small_shapes.images[i] for i in val_idx],
                      [small_shapes.labels[i] for i in val_idx], small_shapes.class_names)
    assert result["num_images"] == metrics["num_val"]
    assert abs(result["accuracy"] - metrics["val_accuracy"]) <= 1 / metrics["num_val"] + 1e-9


def test_a_failed_export_falls_back_to_pytorch_and_says_so(small_shapes, tmp_path, onnx_always, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(torch.onnx, "export", broken)
    cfg = TrainConfig(model=ARCH, weights="pretrained", strategy="head", epochs=4, img_size=64, batch_size=16, bf16=False)
    with caplog.at_level(logging.WARNING, logger="snapfit.onnx_embed"):
        events = list(fit(small_shapes, cfg, str(tmp_path / "m")))
    assert "exporter broke" in caplog.text
    assert events[-1].kind == "finished" and events[-1].best_val_acc > 0.8
    assert not any("ONNX Runtime" in e.message for e in events if e.kind == "log")


def test_the_learner_embeds_the_same_through_either_path(small_shapes):
    cfg = TrainConfig(model=ARCH, weights="pretrained", strategy="head", img_size=64, bf16=False)
    learner = Learner(decode_once(small_shapes, 64), cfg)
    plain = learner.embed(learner.val_x)
    fast = learner.embed(learner.val_x, backbone=onnx_embed.build(learner.model, 64))
    torch.testing.assert_close(fast, plain, rtol=1e-3, atol=1e-4)
