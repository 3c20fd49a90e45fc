import time

import pytest
import torch
from safetensors.torch import save_file

from engine import hub, models
from engine.errors import UserError


def test_typo_gets_suggestions():
    with pytest.raises(UserError, match="Did you mean.*resnet18"):
        models.check_name("resnet81")
    with pytest.raises(UserError, match="no pretrained tag"):
        models.check_name("resnet18.nope")
    assert models.check_name("resnet18.a1_in1k") == "resnet18.a1_in1k"


def test_catalog_names_are_known_to_timm():
    for entry in models.CATALOG:
        assert models.check_name(entry.name) == entry.name


def test_pretrained_offline_fails_at_once_with_advice():
    assert hub.is_offline()  # conftest sets HF_HUB_OFFLINE
    t = time.perf_counter()
    with pytest.raises(UserError, match="cannot reach.*scratch"):
        models.create("resnet18", 3, weights="pretrained")
    assert time.perf_counter() - t < 5  # behaviour, not speed: it did not enter the 46 s retry loop


def test_local_weights_load_body_and_skip_head(tmp_path):
    torch.manual_seed(0)
    source, _ = models.create("resnet10t", 5)
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    model, report = models.create("resnet10t", 3, weights=str(tmp_path / "w.safetensors"))
    assert report.skipped == ["fc.bias", "fc.weight"]
    assert report.loaded == len(model.state_dict()) - 2
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)


def test_bad_weights_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        models.create("resnet10t", 3, weights=str(tmp_path / "none.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="Could not read"):
        models.create("resnet10t", 3, weights=str(tmp_path / "bad.safetensors"))
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="None of the tensors"):
        models.create("resnet10t", 3, weights=str(tmp_path / "other.safetensors"))


def test_freezing_keeps_batchnorm_statistics():
    model, _ = models.create("resnet10t", 3)
    groups = models.layer_groups(model)
    assert list(groups[-1]) == list(model.get_classifier().parameters())
    models.set_trainable(model, groups, len(groups) - 1)
    models.train_mode(model)
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(model.bn1.running_mean, before)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_probe_reports_unreachable_endpoint(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert hub.probe(timeout=0.5) is False


def test_detect_offline_sets_the_flags_of_already_imported_libraries(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert hub.detect_offline(timeout=0.5) is True
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
