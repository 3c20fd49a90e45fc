"""Hub datasets and pretrained weights over real HTTP, from a local stand-in for the Hub (tests/hub_read_standin.py),
and what a user sees when the connection to it breaks in the middle of a download."""
from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from engine import data, hub_data, models
from engine.errors import UserError
from tests.hub_read_standin import CLASSES, DATASET, MODEL, TRAIN_FILE, WEIGHTS, WEIGHTS_CUT

# `hub_online` (tests/conftest.py): the stand-in serving DATASET and MODEL's weights, the hub libraries pointed at it


def load(max_per_class=None):
    return data.load(f"hub:{DATASET}", max_per_class=max_per_class)


def check_pets(ds, per_class: int | None = None) -> None:
    train = 6 if per_class is None else per_class
    assert ds.class_names == CLASSES and ds.source == f"hub:{DATASET}"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3 * train, "validation": 6}
    assert [ds.labels[i] for i in ds.splits["validation"]] == [0, 0, 1, 1, 2, 2]
    tensors, bad = data.decode(ds, ds.splits["train"], 16)
    assert not bad and tensors.x.shape == (3 * train, 3, 16, 16)


def check_weights(model, state) -> None:
    got = model.state_dict()
    body = [k for k in state if not k.startswith("fc.")]  # the head is new: 3 classes, not 1000
    assert body and all(torch.equal(got[k], state[k]) for k in body)


def assert_one_plain_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message and "Internal error" not in message and len(message) < 400, message


# ---------------------------------------------------------------------------------------------- happy paths


def test_a_hub_dataset_downloads_over_http(hub_online):
    check_pets(load())
    assert hub_online.file_gets(TRAIN_FILE) == [None]  # downloaded whole, once


def test_a_hub_dataset_streams_over_http(hub_online):
    ds = load(max_per_class=2)
    check_pets(ds, per_class=2)
    assert all(isinstance(ds.images[i], bytes) for i in range(len(ds)))
    gets = hub_online.file_gets(TRAIN_FILE)
    assert gets and all(r and r.startswith("bytes=") for r in gets)  # read in ranges


def test_pretrained_weights_download_over_http(hub_online, hub_weights):
    model, report = models.create(MODEL, 3, weights="pretrained")
    check_weights(model, hub_weights[0])
    assert report.source == "pretrained" and report.skipped == ["fc.bias", "fc.weight"]
    assert hub_online.file_gets(WEIGHTS) == [None]
    model, _ = models.create(f"hf-hub:timm/{MODEL}", 3, weights="pretrained")  # named by its repo: config.json first
    check_weights(model, hub_weights[0])
    assert hub_online.file_gets("config.json") and hub_online.file_gets(WEIGHTS) == [None]  # the weights came from the cache


# ---------------------------------------------------------------------------------------------- a lost connection


@pytest.mark.parametrize("go_away", [False, True], ids=["cut", "server-gone"])
@pytest.mark.parametrize("max_per_class", [2, None], ids=["streamed", "downloaded"])
def test_a_connection_lost_mid_file_says_so_and_trying_again_works(hub_online, go_away, max_per_class):
    """Every read of the file stops at 5 kB (or the server goes away there): one plain line, and once the
    connection is back the same load works."""
    hub_online.cut[TRAIN_FILE], hub_online.go_away_at_cut = 5000, go_away
    with pytest.raises(UserError) as caught:
        load(max_per_class)
    assert str(caught.value) == hub_data.lost_message(DATASET)
    assert_one_plain_line(str(caught.value))
    # tried again, but not for minutes: huggingface_hub's own 5 retries, and datasets' retries of a stream bounded
    # to one (its default, 20 more rounds 5 s apart, would read the file 120 times over 9 minutes)
    assert 1 < len(hub_online.file_gets(TRAIN_FILE)) <= 6
    hub_online.heal()
    check_pets(load(max_per_class), max_per_class)


@pytest.mark.parametrize("go_away", [False, True], ids=["cut", "server-gone"])
def test_pretrained_weights_cut_mid_download_name_the_model_and_leave_nothing_half_done(hub_online, hub_weights, go_away):
    hub_online.cut[WEIGHTS], hub_online.go_away_at_cut = WEIGHTS_CUT, go_away
    with pytest.raises(UserError) as caught:
        models.create(MODEL, 3, weights="pretrained")
    message = str(caught.value)
    assert message.startswith(f"The download of the pretrained weights for {MODEL} was interrupted: the connection to the "
                              "Hugging Face Hub was lost."), message
    assert "try again" in message
    assert_one_plain_line(message)
    gets = hub_online.file_gets(WEIGHTS)
    if not go_away:  # huggingface_hub resumed from its first 10 MB, and each resume was cut too
        assert gets[0] is None and len(gets) == 6 and all(r == "bytes=10485760-" for r in gets[1:]), gets
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE)  # this test's own (see go_online)
    assert not [p for p in cache.rglob("*") if p.is_file() and ("blobs" in p.parts or "snapshots" in p.parts)]  # no partial file
    hub_online.heal()
    model, _ = models.create(MODEL, 3, weights="pretrained")
    check_weights(model, hub_weights[0])
    [blob] = [p for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts]
    assert blob.read_bytes() == hub_weights[1][WEIGHTS]


def test_a_hub_that_drops_every_request_is_one_plain_line_too(hub_online):
    """The server gone before a download starts: the dataset, the weights, a model named by its Hub repo."""
    hub_online.gone = True
    with pytest.raises(UserError) as caught:
        load(max_per_class=2)
    assert str(caught.value) == hub_data.lost_message(DATASET)
    with pytest.raises(UserError, match=f"^The download of the pretrained weights for {MODEL} was interrupted"):
        models.create(MODEL, 3, weights="pretrained")
    with pytest.raises(UserError, match=f"^Could not build hf-hub:timm/{MODEL}: it needs the Hub"):
        models.create(f"hf-hub:timm/{MODEL}", 3)  # its config comes from the Hub, even from scratch


@pytest.mark.slow
def test_the_cli_downloading_a_hub_dataset_says_so_in_one_line(hub_online, monkeypatch, tmp_path):
    """A real process, which reads HF_ENDPOINT at import as a user's would (and waits as long as huggingface_hub does:
    its 5 resumes of the cut file, 1 s apart)."""
    from tests.engine.test_cli import cli

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the process's own caches
    hub_online.cut[TRAIN_FILE] = 5000
    r = cli("train", "--data", f"hub:{DATASET}", "--model", "resnet10t", "--epochs", "1", "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == f"error: {hub_data.lost_message(DATASET)}", r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "m").exists()
    assert 1 < len(hub_online.file_gets(TRAIN_FILE)) <= 6
