"""Runs compared: the data fingerprint training saves (the same pictures give the same one at any size and in any
order; a relabelled or removed picture gives another), and `engine.runs` / `python -m engine runs DIR` listing the
model folders under a folder with their data version, recipe and accuracies."""
import json
import shutil
from dataclasses import asdict, replace

import pytest

from engine import data as data_lib
from engine import runs
from engine.config import recipe
from engine.errors import UserError
from engine.train import TrainConfig, decode_once, fit
from tests.engine.test_cli import cli, save_folder

TINY = TrainConfig(model="resnet10t", epochs=1, img_size=32, batch_size=32)


def without(data: data_lib.LabelledImages, drop: set[int]) -> data_lib.LabelledImages:
    keep = [i for i in range(len(data)) if i not in drop]
    return replace(data, images=[data.images[i] for i in keep], labels=[data.labels[i] for i in keep])


def test_the_fingerprint_follows_labels_and_pictures_not_order_or_size(small_shapes):
    everything = range(len(small_shapes))
    first = data_lib.fingerprint(small_shapes, everything)
    shuffled = replace(small_shapes, images=small_shapes.images[::-1], labels=small_shapes.labels[::-1])
    assert data_lib.fingerprint(shuffled, everything) == first
    moved = replace(small_shapes, labels=[(small_shapes.labels[0] + 1) % 3] + small_shapes.labels[1:])
    assert data_lib.fingerprint(moved, everything) != first
    assert data_lib.fingerprint(without(small_shapes, {5}), range(len(small_shapes) - 1)) != first
    # what training saves: the same at every working size
    at_32, at_48 = decode_once(small_shapes, 32).data_info, decode_once(small_shapes, 48).data_info
    assert at_32["fingerprint"] == at_48["fingerprint"] == first


def test_the_same_files_give_the_same_fingerprint_wherever_they_lie(small_shapes, tmp_path):
    """An upload extracted twice (two folders) is the same data; a file changed in place is not."""
    picks = list(range(0, len(small_shapes), 20))
    images, labels = [small_shapes.images[i] for i in picks], [small_shapes.labels[i] for i in picks]
    one = save_folder(tmp_path / "one", images, labels, small_shapes.class_names)
    two = shutil.copytree(one, tmp_path / "two")
    a, b = data_lib.load_folder(one), data_lib.load_folder(two)
    assert data_lib.fingerprint(a, range(len(a))) == data_lib.fingerprint(b, range(len(b)))
    changed = next((two / "circle").iterdir())
    images[0].resize((80, 80)).save(changed)
    assert data_lib.fingerprint(a, range(len(a))) != data_lib.fingerprint(data_lib.load_folder(two), range(len(b)))


def saved_hyperparameters(cfg: TrainConfig) -> dict:
    """What training writes to metrics.json's hyperparameters (engine/train.py, _save), through JSON."""
    return json.loads(json.dumps(asdict(cfg) | dict(strategy=cfg.resolved_strategy(), lr=cfg.resolved_lr(), bf16=False,
                                                    head_lr=cfg.resolved_head_lr(), freeze_bn=cfg.resolved_freeze_bn(),
                                                    channels_last=True)))


def test_a_run_is_named_by_its_recipe_only_when_it_is_exactly_that_recipe():
    assert runs.recipe_of(saved_hyperparameters(recipe("quick"))) == "quick"
    assert runs.recipe_of(saved_hyperparameters(recipe("best"))) == "best"
    assert runs.recipe_of(saved_hyperparameters(recipe("scratch"))) == "scratch"
    assert runs.recipe_of(saved_hyperparameters(recipe("quick", epochs=5))) is None


@pytest.fixture(scope="module")
def two_runs(small_shapes, tmp_path_factory):
    """Two tiny runs under one folder, the second on the data with 10 pictures removed (as after a cleaning), and
    a folder whose metrics.json is broken."""
    root = tmp_path_factory.mktemp("runs")
    list(fit(small_shapes, TINY, str(root / "first")))
    list(fit(without(small_shapes, set(range(10))), replace(TINY, epochs=2), str(root / "later" / "cleaned")))
    broken = root / "broken"
    broken.mkdir()
    shutil.copy(root / "first" / "config.json", broken / "config.json")
    (broken / "metrics.json").write_text("{not json")
    return root


def test_runs_are_listed_oldest_first_with_data_versions_and_accuracies(two_runs):
    first, cleaned, broken = runs.find(two_runs)
    assert (first.name, cleaned.name, broken.name) == ("first", "later/cleaned", "broken")
    metrics = json.loads((two_runs / "first" / "metrics.json").read_text())
    assert first.val_accuracy == metrics["val_accuracy"] and first.per_class == metrics["per_class_accuracy"]
    assert (first.model, first.recipe, first.epochs, first.img_size) == ("resnet10t", "full", 1, 32)
    assert cleaned.epochs == 2 and len(cleaned.history) == 2 and first.data and cleaned.data != first.data
    assert broken.error == "unreadable metrics.json (JSONDecodeError)" and broken.val_accuracy is None

    lines = runs.table([first, cleaned, broken]).splitlines()
    assert lines[0].split()[:3] == ["run", "model", "recipe"]
    assert lines[1].split()[:6] == ["first", "resnet10t", "full", "1", "32", "v1"] and f"{first.val_accuracy:.1%}" in lines[1]
    assert lines[2].split()[:6] == ["later/cleaned", "resnet10t", "full", "2", "32", "v2"]
    assert f"{cleaned.val_accuracy:.1%}" in lines[2] and "circle " in lines[2]
    assert lines[3].startswith("broken ") and lines[3].endswith("unreadable metrics.json (JSONDecodeError)")


def test_the_runs_command_prints_the_table_or_json(two_runs, tmp_path):
    r = cli("runs", str(two_runs))
    assert r.returncode == 0, r.stderr
    assert r.stdout == runs.table(runs.find(two_runs))
    r = cli("runs", str(two_runs), "--json")
    rows = json.loads(r.stdout)
    assert r.returncode == 0 and [row["name"] for row in rows] == ["first", "later/cleaned", "broken"]
    assert [row["data_version"] for row in rows] == ["v1", "v2", None] and rows[2]["error"].startswith("unreadable")
    assert rows[1]["per_class_accuracy"].keys() == {"circle", "square", "triangle"}


def test_a_folder_without_runs_or_no_folder_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="No model folders under"):
        runs.find(tmp_path)
    r = cli("runs", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f"error: {tmp_path / 'nowhere'} does not exist: give the folder that holds your model "
                                "folders (the --out of `python -m engine train`, or a folder above several).")
