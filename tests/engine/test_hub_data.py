"""Hub datasets through the real `datasets` code path, offline, against local stand-ins (hub_standin.py)."""
import json

import pytest

from engine import data, hub_data
from engine.errors import UserError
from tests.engine.hub_standin import make_repo, make_split, seed_cache
from tests.hub_read_standin import HubReadStandIn, go_online

CLASSES = ["cat", "dog", "emu"]


def _features(label_feature, image_column="img", label_column="label", extra=None):
    from datasets import Features, Image

    return Features({image_column: Image(), label_column: label_feature, **(extra or {})})


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Two configs: `default` (ClassLabel, train/validation/test, the test split unlabelled as -1) and
    `strings` (text labels in a column named `species`, a decimal column, a list column; one split)."""
    from datasets import ClassLabel, List, Value

    classes = _features(ClassLabel(names=CLASSES))
    default = dict(train=make_split([0] * 6 + [1] * 6 + [2] * 6, classes, seed=1),
                   validation=make_split([0, 0, 1, 1, 2, 2], classes, seed=2),
                   test=make_split([-1, -1], classes, seed=3))
    extra = {"weight": Value("float32"), "tags": List(Value("string"))}
    strings = make_split(["zebra"] * 4 + ["ant"] * 4 + ["mole"] * 4, _features(Value("string"), "photo", "species", extra),
                         label_column="species", image_column="photo", seed=4,
                         extra={"weight": [1.5] * 12, "tags": [["a", "b"]] * 12})
    return make_repo(tmp_path_factory.mktemp("hub") / "pets", {}, configs={"default": default, "strings": dict(train=strings)})


@pytest.fixture(scope="module")
def cache(repo, tmp_path_factory):
    """A datasets cache where `someone/pets` (config `default`) and `someone/zoo` (config `strings`) were
    downloaded before. (Offline, datasets cannot tell which of several cached configs is the default.)"""
    cache = tmp_path_factory.mktemp("hf-cache")
    seed_cache(repo, "someone/pets", cache, "default")
    seed_cache(repo, "someone/zoo", cache, "strings")
    return cache


@pytest.fixture
def offline_cache(cache, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def test_hub_id_loads_from_the_cache_offline_with_its_own_splits(offline_cache):
    ds = data.load("someone/pets")
    assert ds.class_names == CLASSES and len(ds) == 24 and ds.source == "hub:someone/pets"
    assert sorted(ds.splits) == ["train", "validation"] and len(ds.splits["train"]) == 18
    assert data.holdout(ds, 0.5, seed=3) == (ds.splits["train"], ds.splits["validation"])  # own split wins
    assert any("test split has no labelled images" in w for w in ds.warnings)
    assert ds.origin == dict(source="hub:someone/pets", config=None, split=None, image_column="img", label_column="label",
                             max_per_class=None)
    tensors, bad = data.decode(ds, ds.splits["validation"], 16)
    assert not bad and tensors.x.shape == (6, 3, 16, 16) and tensors.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.name(ds.splits["validation"][0]) == "validation row 0"
    assert data.load("hub:someone/pets").counts() == ds.counts()  # the explicit prefix is the same thing


def test_max_per_class_streams_only_that_many(offline_cache):
    ds = data.load("someone/pets", max_per_class=2)
    train = [ds.labels[i] for i in ds.splits["train"]]
    assert train == [0, 0, 1, 1, 2, 2] and len(ds.splits["validation"]) == 6  # validation: a quarter, at least 2
    assert all(isinstance(ds.images[i], bytes) for i in range(len(ds)))
    with pytest.raises(UserError, match="whole number of at least 1"):
        data.load("someone/pets", max_per_class=0)


def test_one_split_asked_for_is_split_stratified(offline_cache):
    ds = data.load("someone/pets", split="train")
    assert len(ds) == 18 and ds.splits == {}
    train, val = data.holdout(ds, 0.2, 0)
    assert len(val) == 3 and sorted(train + val) == list(range(18))
    with pytest.raises(UserError, match="Unknown split"):
        data.load("someone/pets", split="holdout")


def test_text_labels_are_encoded_and_columns_found_by_name(offline_cache):
    ds = data.load("someone/zoo", config="strings")
    assert ds.class_names == ["ant", "mole", "zebra"] and ds.counts() == {"ant": 4, "mole": 4, "zebra": 4}
    assert ds.origin["image_column"] == "photo" and ds.origin["label_column"] == "species"
    with pytest.raises(UserError, match="decimal numbers \\(a regression target\\)"):
        data.load("someone/zoo", config="strings", label_column="weight")
    tags = data.load("someone/zoo", config="strings", label_column="tags")  # a list column: multi-label
    assert tags.multi_label and tags.class_names == ["a", "b"] and set(tags.labels) == {(0, 1)}
    with pytest.raises(UserError, match="'species' holds text, not images"):
        data.load("someone/zoo", config="strings", image_column="species")
    with pytest.raises(UserError, match="no column 'nope'.*photo \\(images\\)"):
        data.load("someone/zoo", config="strings", label_column="nope")


def test_unknown_config_names_the_available_ones(offline_cache, repo):
    with pytest.raises(UserError, match="someone/pets.*'birds'.*default"):
        data.load("someone/pets", config="birds")
    with pytest.raises(UserError, match="birds.*not found.*strings"):
        data.load(str(repo), config="birds")
    assert data.load(str(repo), config="strings").class_names == ["ant", "mole", "zebra"]


def test_size_limit_asks_for_a_cap(offline_cache, monkeypatch):
    monkeypatch.setattr(hub_data, "MAX_DOWNLOAD_MB", 0)
    with pytest.raises(UserError, match="max_per_class"):
        data.load("someone/pets")
    assert len(data.load("someone/pets", max_per_class=3)) == 15  # streaming is never refused


def test_local_copy_of_a_repo_loads_without_a_cache(repo):
    ds = data.load(str(repo))
    assert ds.class_names == CLASSES and ds.has_own_split() and ds.origin["source"] == str(repo)


def test_unknown_id_offline_says_offline(offline_cache):
    with pytest.raises(UserError, match="^Offline: .*'someone/nothing' cannot be downloaded"):
        data.load("someone/nothing")
    with pytest.raises(UserError, match="not a Hub dataset id: give it as owner/name"):
        data.load("hub:")


def test_unknown_or_private_id_online_is_named(monkeypatch, tmp_path):
    """Online (a local server standing in for the Hub answers 404, as the Hub does for unknown and private repos)."""
    with HubReadStandIn() as server:
        go_online(server, monkeypatch, tmp_path)
        with pytest.raises(UserError, match="'someone/secret' was not found on the Hub, or it is private"):
            data.load("someone/secret")


def test_unreachable_hub_says_offline_at_once(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UserError, match="^Offline"):
        data.load("someone/pets")


@pytest.mark.parametrize("features,wanted,needle", [
    ({"label": "ClassLabel"}, None, "no image column"),
    ({"img": "Image", "score": "float32"}, None, "no label column"),
    ({"img": "Image", "label": "float32"}, None, "regression target"),
    ({"img": "Image", "labels": "list"}, None, "lists of decimal numbers, not lists of labels"),
])
def test_column_detection_refuses_what_is_not_one_label_per_image(features, wanted, needle):
    from datasets import ClassLabel, Image, List, Value

    make = {"Image": Image, "ClassLabel": lambda: ClassLabel(names=["a", "b"]), "list": lambda: List(Value("float32"))}
    feats = {k: make[v]() if v in make else Value(v) for k, v in features.items()}
    with pytest.raises(UserError, match=needle):
        col = hub_data.find_image_column(feats, None)
        hub_data.find_label_column(feats, wanted, col)


def test_column_detection_prefers_a_class_label_with_a_usual_name():
    from datasets import ClassLabel, Image, Value

    feats = {"image": Image(), "coarse": ClassLabel(names=["x", "y"]), "fine_label": ClassLabel(names=["a", "b"]),
             "caption": Value("string")}
    assert hub_data.find_label_column(feats, None, "image") == "fine_label"
    assert hub_data.find_label_column(feats, "coarse", "image") == "coarse"
    assert hub_data.find_label_column({"image": Image(), "id": Value("int64"), "y": Value("int32")}, None, "image") == "y"


def test_cli_trains_on_a_hub_id_with_its_own_split(cache, tmp_path):
    """End to end: `--data owner/name` offline from the cache; the model folder records the dataset's split."""
    import os

    from tests.engine.test_cli import cli

    os.environ["HF_DATASETS_CACHE"] = str(cache)
    try:
        r = cli("train", "--data", "someone/pets", "--recipe", "scratch", "--model", "resnet10t", "--epochs", "1", "--img-size", "32",
                "--batch-size", "8", "--out", str(tmp_path / "m"))
    finally:
        del os.environ["HF_DATASETS_CACHE"]
    assert r.returncode == 0, r.stderr
    assert "warning: The test split has no labelled images" in r.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["num_train"] == 18 and metrics["num_val"] == 6
    assert metrics["data"]["holdout"]["kind"] == "dataset" and metrics["data"]["load"]["label_column"] == "label"
