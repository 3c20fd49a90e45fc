"""Before a run, the Train tab says what it will train on, offers only the weights that can work here (a weights
file the person uploads among them, never a file of the server), and warns when data and settings predict a poor
result; a model is named without a pretrained tag it did not start from."""
import gradio as gr
import pytest
import torch
from safetensors.torch import save_file

from demo import advice
from demo.handlers import train
from demo.train_form import config_from
from engine import data as data_lib
from engine import models
from engine.errors import UserError
from tests.live_app import colour_zip

BETTER = "tf_efficientnet_lite0.in1k"


@pytest.fixture
def ui(ui):
    """The Train tab of the page (tests/demo/conftest.py)."""
    return ui.train


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 photos-like images per class: too few for random weights."""
    folder = tmp_path_factory.mktemp("small")
    return data_lib.load_zip(colour_zip(folder / "colours.zip"), folder / "unzipped")


def test_a_poor_run_is_warned_of_with_the_better_choice(small):
    scratch = advice.poor_run_warnings(small, "scratch", "auto", 48, "none", BETTER)
    assert any("From random weights (12 images in the smallest class)" in w and BETTER in w for w in scratch)
    assert any("without augmentation" in w for w in scratch)  # the whole network, on 12 images a class
    tiny_images = advice.poor_run_warnings(small, "pretrained", "head", 48, "none", BETTER)
    assert tiny_images == [f"At 48 px, ImageNet features see little: use {advice.PRETRAINED_MIN_SIZE} px or more "
                           "(224, as the quick and best recipes do)."]
    assert advice.poor_run_warnings(small, "pretrained", "head", 224, "none", BETTER) == []  # the quick recipe: fine


def test_the_recipes_made_for_the_built_in_set_are_not_flagged():
    shapes = data_lib.load_builtin()
    assert advice.poor_run_warnings(shapes, "scratch", "auto", 48, "none", BETTER) == []  # 150 a class: enough
    assert advice.poor_run_warnings(shapes, "pretrained", "finetune", 224, "none", BETTER) == []


def test_the_plan_names_the_dataset_and_its_warnings(ctx, ui, small):
    ws = ctx.workspace(None)
    plan = train.show_plan(ctx, ui, BETTER, "pretrained", "head", 224, "none", ws.key)[ui.plan]
    assert plan == "Trains on **900 images in 6 classes** from `builtin:shapes` (chosen on the **Data** tab)."
    ws.set_dataset(small)
    plan = train.show_plan(ctx, ui, "resnet10t", "scratch", "auto", 48, "none", ws.key)[ui.plan]
    assert "**36 images in 3 classes**" in plan and "**Likely a poor run:**" in plan and BETTER in plan


def test_pretrained_is_offered_only_where_the_weights_are(ctx, ui):
    key = ctx.workspace(None).key
    update = train.show_note(ctx, ui, "resnet18.a1_in1k", "pretrained", key)
    weights = update[ui.settings["weights"]]
    assert [value for _, value in weights.choices] == ["scratch"] and weights.value == "scratch"
    assert "no pretrained weights here" in update[ui.note].value
    built_in = train.show_note(ctx, ui, BETTER, "pretrained", key)[ui.settings["weights"]]
    assert [value for _, value in built_in.choices] == ["pretrained", "scratch"] and built_in.value == "pretrained"


def test_an_uploaded_weights_file_is_what_the_run_starts_from(ctx, ui, tmp_path):
    source = models.create("resnet10t", num_classes=3, weights="scratch")[0]
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    ws = ctx.workspace(None)
    chosen = train.upload_weights(ctx, ui, str(path), "resnet10t", ws.key)[ui.settings["weights"]]
    assert chosen.value == train.YOUR_FILE and train.YOUR_FILE in [value for _, value in chosen.choices]
    cfg = config_from(train.with_weights_file(ws, dict(model="resnet10t", weights=train.YOUR_FILE)))
    assert cfg.weights == str(ws.weights_file) and ws.weights_file.is_relative_to(ws.folder)
    target = models.create("resnet10t", num_classes=3, weights="scratch")[0]
    report = models.load_weights_file(target, cfg.weights)
    assert report.loaded == len(source.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    # cleared: back to the weights that need no file
    cleared = train.upload_weights(ctx, ui, None, "resnet10t", ws.key)[ui.settings["weights"]]
    assert ws.weights_file is None and train.YOUR_FILE not in [value for _, value in cleared.choices]


def test_weights_that_cannot_work_are_refused_with_what_to_do(ctx, ui, tmp_path):
    ws = ctx.workspace(None)
    with pytest.raises(UserError, match="Upload a weights file first"):
        train.with_weights_file(ws, dict(weights=train.YOUR_FILE))
    with pytest.raises(UserError, match="files on the server are not read"):
        train.with_weights_file(ws, dict(weights="/etc/passwd"))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(gr.Error, match="notes.txt: a weights file is"):
        train.upload_weights(ctx, ui, str(tmp_path / "notes.txt"), "resnet10t", ws.key)


def test_a_model_is_named_without_a_tag_it_did_not_start_from():
    assert models.display_name("resnet10t.c3_in1k", "scratch") == "resnet10t"
    assert models.display_name("resnet10t.c3_in1k", "/some/file.safetensors") == "resnet10t"
    assert models.display_name("resnet10t.c3_in1k", "pretrained") == "resnet10t.c3_in1k"
