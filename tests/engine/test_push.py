"""Pushing a model folder to the Hub, against a local stand-in for the Hub's HTTP API (tests/hub_push_standin.py)."""
from __future__ import annotations

import io
import json
import logging
import re
import time
from contextlib import redirect_stdout
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image

from engine import model_card, push
from engine.__main__ import main
from engine.errors import UserError
from engine.events import LRFinished
from engine.predict import Predictor
from tests.hub_push_standin import HubStandIn

TOKEN = "hf_TestSecretToken1234567890"
REPO = "alice/shapes-classifier"


@pytest.fixture
def model_dir(builtin_model, tmp_path):
    """A copy of the trained built-in model, with an LR finder result as the Train tab leaves it."""
    import shutil

    folder = Path(shutil.copytree(builtin_model[0], tmp_path / "model"))
    lrs = [1e-5 * 1.2**i for i in range(60)]
    losses = [2.0 - 0.02 * i if i < 45 else 1.1 + 0.3 * (i - 45) for i in range(60)]
    result = LRFinished(lrs, losses, losses, {"valley": 1e-3, "steep": 5e-4})
    (folder / model_card.LR_FIND_JSON).write_text(json.dumps(result.__dict__))
    return folder


@pytest.fixture
def hub_server(monkeypatch):
    """The stand-in, with huggingface_hub pointed at it and out of the offline mode the tests otherwise run in."""
    with HubStandIn(token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


def test_push_uploads_the_model_its_card_and_figures(model_dir, hub_server, tmp_path):
    url = push.push(model_dir, REPO, token=TOKEN, private=True)

    assert url.endswith(REPO)
    files = hub_server.repos[REPO]
    assert hub_server.private[REPO] is True
    assert set(files) == {"model.safetensors", "config.json", "metrics.json", "README.md", "confusion_matrix.png", "lr_find.png"}
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    for png in ("confusion_matrix.png", "lr_find.png"):
        assert Image.open(io.BytesIO(files[png])).size[0] > 200
    # what arrived is a model plain timm loads, with its class names, giving the trained model's outputs
    repo = tmp_path / "downloaded"
    repo.mkdir()
    for name, data in files.items():
        (repo / name).write_bytes(data)
    loaded = timm.create_model(f"local-dir:{repo}", pretrained=True).eval()
    original = Predictor.from_folder(model_dir)
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original.model(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg["label_names"] == original.class_names
    # every request carried the token, and it went nowhere else
    posts = [r for r in hub_server.requests if r[0] == "POST"]
    assert posts and all(r[2].get("authorization") == f"Bearer {TOKEN}" for r in posts)
    assert not any(TOKEN.encode() in body for body in hub_server.bodies)


def test_model_card_has_metrics_classes_figures_and_how_to_load(model_dir, builtin_model):
    card = model_card.render(model_dir, REPO)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "timm" and front["pipeline_tag"] == "image-classification"
    assert f"{metrics['val_accuracy'] * 100:.1f} %" in card
    for name in metrics["class_names"]:
        assert re.search(rf"^\| {name} \| [\d.]+ % \| [\d.]+ % \| [\d.]+ % \| \d+ \|$", card, re.M), name
    assert "![Confusion matrix" in card and "(confusion_matrix.png)" in card and "(lr_find.png)" in card
    assert "valley 1.00e-03" in card
    assert "| lr | `0.01` |" in card and "| model | `resnet10t.c3_in1k` |" in card
    assert "built-in *shapes* dataset" in card
    assert f'timm.create_model("hf-hub:{REPO}", pretrained=True)' in card


def _card_results(model_dir) -> list:
    """The card as the Hub reads it: huggingface_hub's own parser, from the README.md we push."""
    card = ModelCard(model_card.render(model_dir, REPO))
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == REPO.split("/")[1]
    assert card.data.eval_results == results
    return results


def test_the_hub_reads_the_validation_metrics_from_the_card(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    card = ModelCard(model_card.render(model_dir, REPO))
    # the fields the card had before the model-index are still there
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert card.data.tags == ["image-classification", "timm", "snapfit"] and card.data.metrics == ["accuracy"]
    accuracy, loss = _card_results(model_dir)
    assert (accuracy.metric_type, accuracy.metric_value) == ("accuracy", pytest.approx(metrics["val_accuracy"]))
    assert (loss.metric_type, loss.metric_value) == ("loss", pytest.approx(metrics["val_loss"]))
    for result in (accuracy, loss):
        assert (result.task_type, result.dataset_split) == ("image-classification", "validation")
        assert (result.dataset_type, result.dataset_name) == ("builtin:shapes", "Snapfit built-in shapes")


@pytest.mark.parametrize("load, dataset_type, dataset_name, config", [
    (dict(source="hub:uoft-cs/cifar10", config="plain_text"), "uoft-cs/cifar10", "uoft-cs/cifar10", "plain_text"),
    (dict(source="/tmp/snapfit/0123456789abcdef/data/my pets.zip"), "imagefolder", "my pets.zip", None),
])
def test_the_card_names_the_dataset_by_its_hub_id_or_without_local_paths(model_dir, load, dataset_type, dataset_name,
                                                                         config):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    metrics["data"] = dict(source=load["source"], load=load, holdout=dict(kind="stratified"))
    (model_dir / "metrics.json").write_text(json.dumps(metrics))
    for result in _card_results(model_dir):
        assert (result.dataset_type, result.dataset_name, result.dataset_config) == (dataset_type, dataset_name, config)
    card = ModelCard(model_card.render(model_dir, REPO))
    assert card.data.datasets == (["uoft-cs/cifar10"] if config else None)
    assert "0123456789abcdef" not in str(card)


def test_the_cards_code_runs_and_agrees_with_snapfit(model_dir, tmp_path):
    """The 'How to use' snippet, run as written (the Hub id swapped for the local folder), predicts what Snapfit does."""
    code = re.search(r"```python\n(.*?)```", model_card.render(model_dir, REPO), re.S).group(1)
    photo = tmp_path / "photo.jpg"
    from engine import sample

    images, labels = sample.generate(n_per_class=1, seed=7)
    images[2].save(photo)
    code = code.replace(f"hf-hub:{REPO}", f"local-dir:{model_dir}").replace('"photo.jpg"', repr(str(photo)))
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, "card", "exec"), {})
    label, probability = out.getvalue().split()
    [(top_label, top_probability)] = Predictor.from_folder(model_dir).predict([str(photo)], 1)[0].items()
    assert label == top_label
    assert float(probability) == pytest.approx(top_probability, abs=0.02)


def test_no_local_paths_or_pids_leave_the_machine(model_dir, hub_server):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    secret = "/tmp/snapfit/0123456789abcdef/data/my pets"
    metrics["data"] = dict(source=secret, load=dict(source=secret, split=None), split=dict(kind="stratified"))
    metrics["hyperparameters"]["weights"] = "/home/alice/secret/weights.safetensors"
    (model_dir / "metrics.json").write_text(json.dumps(metrics))
    push.push(model_dir, REPO, token=TOKEN)
    sent = b"".join(hub_server.repos[REPO][name] for name in ("README.md", "metrics.json"))
    assert b"0123456789abcdef" not in sent and b"/home/alice" not in sent and b'"pid"' not in sent
    assert b"my pets" in sent and b"weights.safetensors" in sent


def test_the_token_is_never_logged_or_written(model_dir, hub_server, caplog, capfd, tmp_path):
    caplog.set_level(logging.DEBUG)
    push.push(model_dir, REPO, token=TOKEN)
    hub_server.token = "hf_another_token"  # now the Hub refuses ours: the error must not carry it either
    with pytest.raises(UserError, match="refused the token") as refused:
        push.push(model_dir, REPO, token=TOKEN)
    out, err = capfd.readouterr()
    assert TOKEN not in caplog.text + out + err + str(refused.value)
    for path in [*model_dir.rglob("*"), *tmp_path.rglob("*")]:
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_offline_fails_at_once_without_a_request(model_dir, hub_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(UserError, match="^Offline: the Hugging Face Hub"):
        push.push(model_dir, REPO, token=TOKEN)
    assert time.perf_counter() - t < 5  # "at once": not the Hub client's retries
    assert hub_server.requests == []


def test_unreachable_hub_is_reported_as_offline(model_dir, monkeypatch):
    with HubStandIn() as closed:
        endpoint = closed.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # nothing listens there any more
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(UserError, match="^Offline: .*cannot be reached"):
        push.push(model_dir, REPO, token=TOKEN)


@pytest.mark.parametrize("source, public, hub_id", [
    ("builtin:shapes", "builtin:shapes", None),
    ("hub:beans", "hub:beans", "beans"),
    ("hub:uoft-cs/cifar10", "hub:uoft-cs/cifar10", "uoft-cs/cifar10"),
    ("uoft-cs/cifar10", "uoft-cs/cifar10", "uoft-cs/cifar10"),
    ("/tmp/snapfit/0123abcd/data/my pets.zip", "my pets.zip", None),
])
def test_dataset_sources_are_named_without_local_paths(source, public, hub_id):
    assert model_card.public_source(source) == public
    assert model_card.hub_dataset_id(source) == hub_id


@pytest.mark.parametrize("repo_id", ["", "noslash", "a/b/c", "../x", "alice/", "alice/name with space", "alice/x.git"])
def test_bad_repo_ids_are_refused(model_dir, repo_id):
    with pytest.raises(UserError, match="OWNER/NAME"):
        push.push(model_dir, repo_id, token=TOKEN)


def test_no_token_says_where_to_get_one(model_dir, hub_server, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    with pytest.raises(UserError, match="settings/tokens"):
        push.push(model_dir, REPO, token="")


def test_cli_push(model_dir, hub_server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    lr_json = tmp_path / "lr" / "lr_find.json"
    lr_json.parent.mkdir()
    (model_dir / model_card.LR_FIND_JSON).rename(lr_json)
    assert main(["push", "--model-dir", str(model_dir), "--repo", REPO, "--private", "--lr-find", str(lr_json)]) == 0
    assert json.loads(capsys.readouterr().out)["url"].endswith(REPO)
    assert "lr_find.png" in hub_server.repos[REPO] and hub_server.private[REPO]
    assert main(["push", "--model-dir", str(model_dir), "--repo", "bad id"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{}")
    assert main(["push", "--model-dir", str(model_dir), "--repo", REPO, "--lr-find", str(tmp_path / "junk.json")]) == 2
    assert "not an lr_find.json" in capsys.readouterr().err
