"""The Train tab: form values become a TrainConfig (or a message naming the bad value); recipes set every setting;
the model list says which weights are here; the Data tab's first model is a real run that Classify uses at once and
the Train tab lists beside later runs."""

from pathlib import Path

import gradio as gr
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demo.context import Context
from demo.handlers.train import model_note
from demo.jobs import JobManager
from demo.space import Place
from demo.train_form import config_from, form_values, recipe_of
from demo.workspace import Workspaces
from engine import hub
from engine.errors import UserError
from engine.train import DEFAULT_RECIPE, RECIPES, TrainConfig
from tests.live_app import GENERIC_ERROR, TINY_TRAIN, TrackingJobs, client, colour_png, colour_zip, live_app


def test_form_values_convert_to_the_engine_types():
    cfg = config_from(dict(model="resnet10t", weights="scratch", epochs=3.0, lr=None, batch_size=32.0, bf16="off",
                           channels_last="auto", progressive_resize=True, mixup=0.2, seed=4.0, head_lr="",
                           freeze_bn="on"))
    assert cfg == TrainConfig(model="resnet10t", epochs=3, batch_size=32, bf16=False, channels_last=None,
                              progressive_resize=True, mixup=0.2, seed=4, freeze_bn=True)
    assert cfg.resolved_lr() == 1e-2  # an empty LR box: the engine's default for scratch weights
    assert config_from(dict(head_lr=0.05, freeze_bn="auto")).head_lr == 0.05


@pytest.mark.parametrize("values,needle", [
    (dict(epochs=2.5), "Epochs must be a whole number"),
    (dict(weight_decay="lots"), "Weight decay must be a number"),
    (dict(bf16="maybe"), "bf16 autocast must be auto, on, off"),
    (dict(freeze_bn="yes"), "Freeze BatchNorm statistics must be auto, on, off"),
    (dict(head_lr="fast"), "Head learning rate must be a number"),
    (dict(head_lr=-1), "Head learning rate must be a number from 1e-08 to 10"),
    (dict(batch_size=1), "Batch size must be a whole number from 2 to 4096"),
    (dict(lr_mult=0.5), "Discriminative LR ratio must be a number from 1 to 10000"),
])
def test_bad_form_values_name_the_setting(values, needle):
    with pytest.raises(UserError, match=needle):
        config_from(values)


def test_recipes_in_form_terms_and_back(tmp_path):
    ctx = Context(Workspaces(tmp_path), JobManager(), offline=True)
    for name in RECIPES:
        form = form_values(ctx.recipe(name))
        assert recipe_of(ctx, config_from(form)) == name  # what the form sends for a recipe is that recipe
    assert form_values(RECIPES["quick"])["lr"] is None and form_values(RECIPES["quick"])["freeze_bn"] == "auto"
    assert recipe_of(ctx, config_from(dict(form_values(RECIPES["quick"]), epochs=7))) is None
    with pytest.raises(UserError, match="Unknown recipe 'fastest'"):
        ctx.recipe("fastest")
    # a free CPU Space caps image size and epochs: its recipes fit under the caps instead of being refused
    space = Context(Workspaces(tmp_path), JobManager(), offline=True, place=Place("alice/snapfit"))
    assert space.place.check(TrainConfig(**space.recipe("quick"))).img_size == space.place.limits.max_img_size


def test_the_model_note_says_what_to_pick_instead():
    lite0 = "tf_efficientnet_lite0.in1k"
    assert model_note(lite0, "pretrained", offline=True, on_cpu=True) == ""
    assert model_note("tf_efficientnet_lite1", "pretrained", offline=True, on_cpu=True) == ""  # built in, typed without a tag
    no_weights = model_note("resnet18.a1_in1k", "pretrained", offline=True, on_cpu=True)
    assert "no pretrained weights here" in no_weights and lite0 in no_weights and "scratch" in no_weights
    assert model_note("resnet18.a1_in1k", "scratch", offline=True, on_cpu=True) == ""
    assert model_note("resnet18.a1_in1k", "pretrained", offline=False, on_cpu=True) == ""
    gpu = model_note("convnext_tiny.fb_in22k_ft_in1k", "scratch", offline=False, on_cpu=True)
    assert "needs a GPU" in gpu and lite0 in gpu
    assert model_note("convnext_tiny.fb_in22k_ft_in1k", "scratch", offline=False, on_cpu=False) == ""
    assert model_note("some_custom_net", "pretrained", offline=True, on_cpu=True).startswith("**some_custom_net** has no")
    assert model_note(None, "pretrained", offline=True, on_cpu=True) == ""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A fresh offline app: (url, its job manager)."""
    jobs = TrackingJobs(max_running=1)
    with live_app(jobs, Workspaces(tmp_path_factory.mktemp("ws"))) as url:
        yield url, jobs


def components(c) -> dict:
    return {p["elem_id"]: p for p in (comp["props"] for comp in c.config["components"]) if p.get("elem_id")}


def test_the_page_starts_on_the_default_recipe_with_built_in_weights_first(app):
    c = client(app[0])
    props = components(c)
    assert props["train-recipe"]["value"] == DEFAULT_RECIPE
    assert [value for _, value in props["train-recipe"]["choices"]] == list(RECIPES)
    model = props["train-model"]
    assert model["value"] == RECIPES[DEFAULT_RECIPE]["model"]
    labels = [label for label, _ in model["choices"]]
    assert labels[0].startswith("tf_efficientnet_lite0.in1k · 4.7M params · weights built in")  # offline: these first
    assert any("no weights offline: scratch only" in label for label in labels)
    assert props["model-note"]["visible"] is False  # the default model has its weights here: nothing to say
    assert "built in" in props["offline-notice"]["value"] and "from scratch" not in props["offline-notice"]["value"]
    assert "EfficientNet-Lite weights are built in" in hub.OFFLINE_MESSAGE


def test_choosing_a_recipe_sets_every_setting(app):
    c = client(app[0])
    names = [p["parameter_name"] for p in c.view_api(print_info=False, return_format="dict")["named_endpoints"]["/train"]["parameters"]]
    for name in ("best", "scratch", "quick"):
        values = dict(zip(names, c.predict(name, api_name="/apply_recipe")))
        weights = values.pop("weights")  # an update: the value, with the choices that work for the recipe's model
        assert weights["value"] == form_values(RECIPES[name])["weights"] and [v for v, _ in weights["choices"]][-1] == "scratch"
        assert values == {k: v for k, v in form_values(RECIPES[name]).items() if k != "weights"}, name
    best = dict(zip(names, c.predict("best", api_name="/apply_recipe")))
    assert (best["strategy"], best["freeze_epochs"], best["lr"], best["epochs"]) == ("finetune", 30, 2e-4, 3)
    quick = dict(zip(names, c.predict("quick", api_name="/apply_recipe")))  # back: best's own values are gone
    assert (quick["strategy"], quick["freeze_epochs"], quick["lr"], quick["lr_mult"]) == ("head", 1, None, 100.0)
    with pytest.raises(AppError, match=r"'nope' .* is not in the list of choices: \['quick', 'best', 'scratch'\]"):  # Gradio's
        c.predict("nope", api_name="/apply_recipe")


def test_a_model_without_weights_here_gets_one_plain_message(app):
    c, before = client(app[0]), len(app[1].submitted)
    with pytest.raises(AppError) as err:
        c.submit(**dict(TINY_TRAIN, model="resnet18.a1_in1k", weights="pretrained"), api_name="/train").result(timeout=60)
    text = str(err.value)
    assert "Pretrained weights for resnet18.a1_in1k come from the Hugging Face Hub" in text
    assert "tf_efficientnet_lite0.in1k" in text and "Traceback" not in text and GENERIC_ERROR not in text
    assert len(app[1].submitted) == before, "the refused run started a job"


def test_the_first_model_is_used_by_classify_and_listed_beside_a_later_run(app, tmp_path):
    url, jobs = app
    c = client(url)
    assert "No model yet" in c.predict(api_name="/model_in_use")
    # 36 small images: the real quick recipe (224 px, ImageNet features) in a few seconds; the browser test
    # (tests/e2e/test_browser.py) runs it on the built-in 900
    colours = colour_zip(tmp_path / "colours.zip")
    assert "36 images in 3 classes" in c.predict(handle_file(str(colours)), api_name="/load_zip")[0]
    before = len(jobs.submitted)
    status = c.submit(api_name="/first_model").result(timeout=300)
    assert status.startswith("**First model ready:") and "validation accuracy" in status, status
    assert "in use on the **Classify** tab" in status and "**best** recipe" in status
    (job,) = jobs.submitted[before:]
    assert (job.kind, job.status) == ("train", "done")  # an ordinary training job of the session

    # Classify uses it at once: the lite0 model (the Grad-CAM overlay is at the picture's own size, not the model's)
    assert "tf_efficientnet_lite0.in1k" in c.predict(api_name="/model_in_use")
    label, timing, heatmap = c.predict(handle_file(str(colour_png(tmp_path / "green.png", "green"))), False, True,
                                       api_name="/predict")
    assert label["label"] == "green" and Image.open(heatmap).size == (32, 32)

    # a later run from the Train tab: both in the table, the latest in use
    assert c.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)[0].startswith("Finished")
    table = c.predict(api_name="/train_runs")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "px |" in line]
    assert len(rows) == 2, table
    assert "quick (first model)" in rows[0] and "tf_efficientnet_lite0.in1k" in rows[0] and "224 px" in rows[0]
    assert "**in use**" not in rows[0] and "%" in rows[0]
    assert rows[1].startswith("| **in use** | full | resnet10t | 32 px |"), rows[1]
    assert "resnet10t" in c.predict(api_name="/model_in_use")


def test_a_first_model_that_cannot_train_says_why(app, tmp_path):
    c = client(app[0])
    one_each = colour_zip(tmp_path / "tiny.zip", classes=("red", "green"), per_class=1)
    _, warnings, *_ = c.predict(handle_file(str(one_each)), api_name="/load_zip")
    assert "Not ready to train" in warnings  # loaded, and the Data tab says why it cannot train yet
    status = c.submit(api_name="/first_model").result(timeout=120)
    assert status == ("The first model failed: Too few images for a validation split: give every class at least "
                      "2 images."), status
    assert "No model yet" in c.predict(api_name="/model_in_use")  # nothing was put in place


def test_a_stopped_run_resumes_from_the_train_tab_to_the_weights_of_one_run(ctx, ui, small_shapes, tmp_path, monkeypatch):
    from demo import actions
    from demo.handlers import train as h
    from engine import checkpoint
    from engine.stopping import StopToken
    from engine.train import TrainConfig, fit

    ws = ctx.workspace(None)
    ws.set_dataset(small_shapes)
    cfg = TrainConfig(model="resnet10t", weights="scratch", epochs=3, batch_size=32, img_size=32, bf16=False)
    assert h.show_resume(ctx, ui.train, ws.key)[ui.train.resume].visible is False  # no run yet
    monkeypatch.setattr(checkpoint, "EVERY", 0.0)  # a checkpoint at every epoch end
    stop = StopToken()
    for event in actions.run_training(ws, cfg, stop, label="scratch"):
        if event.kind == "step" and event.epoch == 3:
            stop.stop()  # the Stop button, in the third epoch
    assert ws.runs[-1]["status"] == "stopped"
    assert h.show_resume(ctx, ui.train, ws.key)[ui.train.resume].visible is True
    updates = list(h.resume(ctx, ui.train, ws.key))
    assert "Resumed after epoch 2" in updates[-1][ui.train.log] and updates[-1][ui.train.results]  # its final metrics
    assert [r["status"] for r in ws.runs] == ["done"]  # the same run and folder, listed once, finished now
    assert h.show_resume(ctx, ui.train, ws.key)[ui.train.resume].visible is False  # finished: nothing to resume
    decoded = yield_from(ws.decoded(cfg))
    whole = list(fit(decoded, cfg, str(tmp_path / "whole")))[-1]
    resumed = Path(ws.runs[-1]["model_dir"], "model.safetensors").read_bytes()
    assert resumed == Path(whole.model_dir, "model.safetensors").read_bytes()
    with pytest.raises(gr.Error, match="Nothing to resume"):
        list(h.resume(ctx, ui.train, ws.key))


def yield_from(generator):
    """The return value of a generator that also yields (as `x = yield from g` gives it)."""
    try:
        while True:
            next(generator)
    except StopIteration as end:
        return end.value
