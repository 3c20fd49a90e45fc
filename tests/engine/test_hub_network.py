"""Hub datasets and pretrained weights over real HTTP, from a local stand-in for the Hub (tests/hub_read_standin.py),
and what a user sees when the connection to it breaks in the middle of a download."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save

from engine import data, hub_data, models
from engine.errors import UserError
from tests.engine.hub_standin import make_repo, make_split
from tests.hub_read_standin import HubReadStandIn, go_online, quick_retries

CLASSES = ["cat", "dog", "emu"]
DATASET = "someone/pets"
TRAIN_FILE = "default/train-00000-of-00001.parquet"  # 20 kB: cut at 5 kB, mid-file
MODEL = "resnet10t.c3_in1k"  # timm fetches its weights from the Hub repo timm/resnet10t.c3_in1k
WEIGHTS = "model.safetensors"  # 21 MB: cut at 15 MB, after huggingface_hub wrote its first 10 MB chunk, so it resumes
WEIGHTS_CUT = 15_000_000


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A dataset repo: train (6 images of each class) and validation (2 of each)."""
    from datasets import ClassLabel, Features, Image

    features = Features({"img": Image(), "label": ClassLabel(names=CLASSES)})
    return make_repo(tmp_path_factory.mktemp("hub") / "pets", dict(train=make_split([0] * 6 + [1] * 6 + [2] * 6, features, seed=1),
                                                                   validation=make_split([0, 0, 1, 1, 2, 2], features, seed=2)))


@pytest.fixture(scope="module")
def weights():
    """Random resnet10t weights, as the Hub repo of its pretrained tag would hold them: {name: tensor}, file bytes."""
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet10t").state_dict().items()}
    return state, save(state)


@pytest.fixture
def hub(pets, weights, monkeypatch, tmp_path):
    """The stand-in serving both repos, with the hub libraries pointed at it and fresh caches."""
    with HubReadStandIn() as server:
        server.add_folder("dataset", DATASET, pets)
        server.add("model", f"timm/{MODEL}", {WEIGHTS: weights[1], "config.json": json.dumps({"architecture": "resnet10t"}).encode()})
        go_online(server, monkeypatch, tmp_path / "cache")
        quick_retries(monkeypatch)
        yield server


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


def test_a_hub_dataset_downloads_over_http(hub):
    check_pets(load())
    assert hub.file_gets(TRAIN_FILE) == [None]  # downloaded whole, once


def test_a_hub_dataset_streams_over_http(hub):
    ds = load(max_per_class=2)
    check_pets(ds, per_class=2)
    assert all(isinstance(ds.images[i], bytes) for i in range(len(ds)))
    assert hub.file_gets(TRAIN_FILE) and all(r and r.startswith("bytes=") for r in hub.file_gets(TRAIN_FILE))  # read in ranges


def test_pretrained_weights_download_over_http(hub, weights):
    model, report = models.create(MODEL, 3, weights="pretrained")
    check_weights(model, weights[0])
    assert report.source == "pretrained" and report.skipped == ["fc.bias", "fc.weight"]
    assert hub.file_gets(WEIGHTS) == [None]


# ---------------------------------------------------------------------------------------------- a lost connection


@pytest.mark.parametrize("go_away", [False, True], ids=["cut", "server-gone"])
@pytest.mark.parametrize("max_per_class", [2, None], ids=["streamed", "downloaded"])
def test_a_connection_lost_mid_file_says_so_and_trying_again_works(hub, go_away, max_per_class):
    """Every read of the file stops at 5 kB (or the server goes away there): one plain line, and once the
    connection is back the same load works."""
    hub.cut[TRAIN_FILE], hub.go_away_at_cut = 5000, go_away
    with pytest.raises(UserError) as caught:
        load(max_per_class)
    assert str(caught.value) == hub_data.lost_message(DATASET)
    assert_one_plain_line(str(caught.value))
    # tried again, but not for minutes: huggingface_hub's own 5 retries, and datasets' retries of a stream bounded
    # to one (its default, 20 more rounds 5 s apart, would read the file 120 times over 9 minutes)
    assert 1 < len(hub.file_gets(TRAIN_FILE)) <= 6
    hub.heal()
    check_pets(load(max_per_class), max_per_class)


@pytest.mark.parametrize("go_away", [False, True], ids=["cut", "server-gone"])
def test_pretrained_weights_cut_mid_download_name_the_model_and_leave_nothing_half_done(hub, weights, tmp_path, go_away):
    hub.cut[WEIGHTS], hub.go_away_at_cut = WEIGHTS_CUT, go_away
    with pytest.raises(UserError) as caught:
        models.create(MODEL, 3, weights="pretrained")
    message = str(caught.value)
    assert message.startswith(f"The download of the pretrained weights for {MODEL} was interrupted: the connection to the "
                              "Hugging Face Hub was lost."), message
    assert "try again" in message
    assert_one_plain_line(message)
    gets = hub.file_gets(WEIGHTS)
    if not go_away:  # huggingface_hub resumed from its first 10 MB, and each resume was cut too
        assert gets[0] is None and len(gets) == 6 and all(r == "bytes=10485760-" for r in gets[1:]), gets
    cache = tmp_path / "cache" / "hub"
    assert not [p for p in cache.rglob("*") if p.is_file() and ("blobs" in p.parts or "snapshots" in p.parts)]  # no partial file
    hub.heal()
    model, _ = models.create(MODEL, 3, weights="pretrained")
    check_weights(model, weights[0])
    [blob] = [p for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts]
    assert blob.read_bytes() == weights[1]


def test_a_hub_that_drops_every_request_is_one_plain_line_too(hub):
    """The server gone before a download starts: the dataset, and the weights."""
    hub.gone = True
    with pytest.raises(UserError) as caught:
        load(max_per_class=2)
    assert str(caught.value) == hub_data.lost_message(DATASET)
    with pytest.raises(UserError, match=f"^The download of the pretrained weights for {MODEL} was interrupted"):
        models.create(MODEL, 3, weights="pretrained")
