"""The app's event handlers called directly, without a server: each returns {component: new value} for the
components it changes, and the wiring (demo.wiring.bind) gives Gradio what it reads from a handler."""
import inspect
import typing
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.helpers import special_args

from demo import notice as notices
from demo import plots
from demo.handlers import classify, data, evaluate, export, page, train
from demo.progress import TrainingProgress
from demo.tabs import classify as classify_tab
from demo.tabs import evaluate as evaluate_tab
from demo.tabs import export as export_tab
from demo.train_form import form_values
from demo.wiring import bind
from demo.workspace import decoded_key
from engine.config import DEFAULT_RECIPE
from engine.events import EpochEnd, Finished, Log, Started, Step, describe
from engine.train import RECIPES
from tests.live_app import colour_zip


def no_progress(*args, **kwargs):
    """Stands in for the gr.Progress that Gradio passes to a load during an event."""


def test_a_recipe_sets_every_setting_by_component(ctx, ui):
    update = train.apply_recipe(ctx, ui.train, "best")
    assert set(update) == {*ui.train.settings.values(), ui.train.notice}  # and the notice cleared
    shown = lambda v: v.value if isinstance(v, gr.Dropdown) else v  # noqa: E731 (Weights comes with its choices)
    assert {field: shown(update[control]) for field, control in ui.train.settings.items()} == form_values(RECIPES["best"])
    assert update[ui.train.settings["weights"]].choices == [("pretrained", "pretrained"), ("scratch", "scratch")]
    assert update[ui.train.notice] == ""
    chosen = train.choose_recipe(ctx, ui.train, "scratch")
    assert chosen[ui.train.recipe] == "scratch" and chosen[ui.train.settings["img_size"]] == form_values(RECIPES["scratch"])["img_size"]
    with pytest.raises(gr.Error, match="Unknown recipe 'fastest'"):
        train.apply_recipe(ctx, ui.train, "fastest")


def test_restoring_settings_changes_only_what_the_run_set(ctx, ui):
    def changed(update: dict) -> dict:
        assert set(update) == {ui.train.recipe, *ui.train.settings.values()}  # every output named, as Gradio needs
        return {component: value for component, value in update.items() if value != gr.skip()}

    ws = ctx.workspace(None)
    # no run yet: only the boxes the default recipe leaves empty, as an update (then they show empty, not a "0")
    fresh = changed(train.restore_settings(ctx, ui.train, ws.key))
    empty = [field for field, value in form_values(RECIPES[DEFAULT_RECIPE]).items() if value is None]
    assert "lr" in empty and fresh == {ui.train.settings[field]: None for field in empty}
    ws.train_settings = form_values(RECIPES["best"])
    restored = changed(train.restore_settings(ctx, ui.train, ws.key))
    assert restored[ui.train.recipe] == "best" and len(restored) == 1 + len(ws.train_settings)
    ws.train_settings = dict(epochs=7, model="resnet10t")  # not a recipe: the radio is left alone
    restored = changed(train.restore_settings(ctx, ui.train, ws.key))
    assert restored == {ui.train.settings["epochs"]: 7, ui.train.settings["model"]: "resnet10t"}


def scripted_run(model_dir: str):
    """A job body that yields what a short training yields, without training."""
    def run(token):
        yield Log("Decoding 8 images once at 32 px")
        yield Started(epochs=1, steps_per_epoch=2, total_steps=2, num_train=6, num_val=2, model="resnet10t",
                      strategy="full", device="cpu")
        yield Step(step=1, epoch=1, loss=1.5, lr=1e-3, images_per_s=100.0)
        yield Step(step=2, epoch=1, loss=1.2, lr=4e-4, images_per_s=100.0)
        yield EpochEnd(epoch=1, train_loss=1.3, val_loss=1.1, val_acc=0.5, seconds=0.1, lr=4e-4)
        yield Finished(model_dir=model_dir, best_epoch=1, best_val_acc=0.5, seconds=0.2)
    return run


def test_following_a_training_shows_its_curves_learning_rate_and_log(ctx, ui, tmp_path):
    ws = ctx.workspace(None)
    none_yet = next(train.reattach(ctx, ui.train, ws.key))
    assert set(none_yet) == set(ui.train.progress_outputs) and none_yet[ui.train.status] == "Not started."
    ctx.jobs.submit(ws.key, "train", scripted_run(str(tmp_path / "model")))
    *_, last = train.reattach(ctx, ui.train, ws.key)
    t = ui.train
    assert set(last) == set(t.progress_outputs) and last[t.key] == ws.key
    assert last[t.status].startswith("Finished in") and "50.0%" in last[t.status]
    assert last[t.lr_plot].values.tolist() == [[0.5, 1e-3], [1.0, 4e-4]]  # x in epochs
    assert last[t.log].splitlines() == ["Decoding 8 images once at 32 px",
                                        "training resnet10t (full) on cpu: 6 training / 2 validation images",
                                        "epoch 1: train loss 1.3000, val loss 1.1000, val accuracy 50.0% (0.1 s)"]
    loss = last[t.loss_plot].dropna()
    assert loss.values.tolist() == [[1, 1.1, plots.LOSS_SERIES[1]], [0.5, 1.5, plots.LOSS_SERIES[0]], [1.0, 1.2, plots.LOSS_SERIES[0]]]
    assert last[t.start].interactive is True and last[t.stop].interactive is False
    assert last[t.download].constructor_args["value"] == f"{tmp_path / 'model'}.zip" and last[t.download].visible


def test_the_status_line_shows_the_learning_rate_as_it_changes():
    job = SimpleNamespace(status="running", elapsed=2.0, error=None)  # what the status line reads of a demo.jobs.Job
    progress = TrainingProgress()
    progress.add(Started(2, 5, 10, 40, 10, "resnet10t", "full", "cpu"))
    for step, lr in [(1, 4e-4), (2, 1e-3)]:
        progress.add(Step(step=step, epoch=1, loss=1.0, lr=lr, images_per_s=50.0))
        assert f"step {step}/10 · learning rate {lr:.2e}" in progress.status(job, 0)


def test_a_load_shows_the_dataset_and_decodes_it_for_the_first_model(ctx, ui, tmp_path):
    update = data.load_zip(ctx, ui.data, str(colour_zip(tmp_path / "colours.zip")), None, no_progress)
    assert set(update) == {*ui.data.dataset_outputs, ui.data.notice}  # the notice cleared
    ws = ctx.workspace(update[ui.data.key])
    assert "36 images in 3 classes" in update[ui.data.summary] and update[ui.data.warnings] == "No problems found."
    assert update[ui.data.counts]["images"].tolist() == [12, 12, 12] and len(update[ui.data.gallery]) == 12
    assert list(ws.decode_cache) == [decoded_key(data.first_model_config(ctx))]  # the Data tab's own run, decoded once
    assert data.first_prompt(ctx, ui.data, ws.key)[ui.data.first_status] == data.FIRST_PROMPT
    with pytest.raises(gr.Error, match="Choose a .zip file first"):
        data.load_zip(ctx, ui.data, None, ws.key, no_progress)


def test_the_page_load_restores_a_known_workspace_and_starts_one_otherwise(ctx, ui):
    fresh = page.restore(ctx, ui, "not-a-key")
    assert fresh[ui.key] == fresh[ui.browser_key] and fresh[ui.key] != "not-a-key"
    assert "900 images in 6 classes" in fresh[ui.data.summary]  # the built-in set until the session picks one
    again = page.restore(ctx, ui, fresh[ui.key])
    assert again[ui.key] == fresh[ui.key]


def test_moves_between_tabs(ctx, ui):
    lr = ui.train.settings["lr"]
    chosen = page.use_lr(ui, "0.003")
    assert chosen[lr].value == 0.003 and chosen[ui.tabs].selected == "train"
    assert page.use_lr(ui, None) == {lr: gr.skip(), ui.tabs: gr.skip()}
    best = page.open_best_recipe(ctx, ui)
    assert best[ui.tabs].selected == "train" and best[ui.train.recipe] == "best"
    assert best[ui.train.settings["strategy"]] == "finetune"


def test_the_other_tabs_say_what_is_missing_without_a_model(ctx):
    with gr.Blocks():
        key = gr.State(None)
        with gr.Tab("Evaluate"):
            ev = evaluate_tab.build(ctx, key)
        with gr.Tab("Classify") as tab:
            cl = classify_tab.build(ctx, key, tab)
        with gr.Tab("Export") as tab:
            ex = export_tab.build(ctx, key, tab)
    key = ctx.workspace(None).key
    with pytest.raises(gr.Error, match="no trained model yet"):
        evaluate.run_evaluation(ctx, ev, key)
    assert evaluate.choose_cell(ctx, ev, gr.SelectData(None, dict(index=[1, 1], value=0)), key) == {
        ev.actual: gr.skip(), ev.predicted: gr.skip()}
    with pytest.raises(gr.Error, match="Add an image first"):
        classify.predict(ctx, cl, None, key=key)
    assert classify.show_model(ctx, cl, key)[cl.in_use].startswith("No model yet")
    assert export.show(ctx, ex, key)[ex.download].visible is False
    with pytest.raises(gr.Error, match="No model to export yet"):
        export.export_onnx(ctx, ex, key)


def test_bind_keeps_what_gradio_reads_from_a_handler(ctx, ui):
    with gr.Blocks():
        key = gr.State(None)
        with gr.Tab("Classify") as tab:
            cl = classify_tab.build(ctx, key, tab)
    bound = bind(classify.use_example, ctx, cl)
    assert bound.__name__ == "use_example" and bound.__doc__ == classify.use_example.__doc__
    assert list(inspect.signature(bound).parameters) == ["evt", "use_tta", "show_cam", "key"]
    assert typing.get_type_hints(bound)["evt"] is gr.SelectData
    _, _, event_data_index, _ = special_args(bound, inputs=[False, True, None])
    assert event_data_index == 0  # Gradio passes the gallery's SelectData first, found by its type hint
    streaming = bind(train.train, ctx, ui.train)
    assert inspect.isgeneratorfunction(streaming) and streaming.__name__ == "train"
    assert list(inspect.signature(streaming).parameters) == ["key", "lr", "head_lr", "settings"]
    loading = inspect.signature(bind(data.load_zip, ctx, ui.data)).parameters
    assert isinstance(loading["progress"].default, gr.Progress)  # Gradio's marker for a progress bar


def test_the_log_uses_the_same_words_as_the_command_line():
    progress = TrainingProgress()
    events = [Started(1, 2, 2, 6, 2, "resnet10t", "full", "cpu"), EpochEnd(1, 1.3, 1.1, 0.5, 0.1, 4e-4)]
    for event in events:
        progress.add(event)
    assert progress.log == [describe(e) for e in events]


def test_an_expected_problem_from_the_page_is_told_in_the_notice_and_changes_nothing_else(ctx, ui, from_page):
    # a plain handler: only the notice is updated, so the dataset shown stays as it was
    update = data.load_hub(ctx, ui.data, "  ", 100, "", "", "", "", None, no_progress)
    assert list(update) == [ui.data.notice] and "Type a Hub dataset id" in update[ui.data.notice]
    # a streaming one: a run that cannot start says why under Start, and yields nothing else
    values = form_values(RECIPES["scratch"])
    updates = list(train.train(ctx, ui.train, None, **dict(values, epochs=0)))
    assert len(updates) == 1 and list(updates[0]) == [ui.train.notice] and "epochs" in updates[0][ui.train.notice].lower()
    # a recipe that does not exist: the message names it
    update = train.apply_recipe(ctx, ui.train, "fastest")
    assert update == {ui.train.notice: notices.text(update[ui.train.notice].removeprefix("⚠️ "))}
    assert "Unknown recipe 'fastest'" in update[ui.train.notice]
    # the next call that works clears the notice
    assert train.apply_recipe(ctx, ui.train, "best")[ui.train.notice] == ""


def test_a_bug_is_still_an_error_on_the_page(ctx, ui, from_page, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("oops")
    monkeypatch.setattr(data.data_lib, "load_builtin", broken)
    with pytest.raises(gr.Error, match=r"Internal error \(KeyError\)"):
        data.load_data(ctx, ui.data, "builtin:shapes", None, no_progress)


def test_an_api_caller_gets_the_problem_as_an_error(ctx, ui):
    with pytest.raises(gr.Error, match="Type a Hub dataset id"):
        data.load_hub(ctx, ui.data, "  ", 100, "", "", "", "", None, no_progress)
