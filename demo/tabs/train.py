"""Train tab: choose model and recipe, start a background training job, watch it live (loss, accuracy and the
learning rate as the schedule moves it), stop it.

The job belongs to the server, not to the page: closing or reloading the tab leaves it running, and a reloaded page
re-attaches (demo/__init__.py wires the page load to `reattach`). Stop asks the job to end after its current step;
it keeps the best epoch so far. Layout and wiring only: the handlers are in demo/handlers/train.py.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from demo import plots
from demo.context import Context
from demo.handlers import runs as runs_h
from demo.handlers import train as h
from demo.handlers.runs import RunsUI
from demo.handlers.train import TrainUI
from demo.notice import notice
from demo.train_form import controls, form_values
from demo.wiring import bind
from demo.workspace import MAX_RUNS
from engine import models
from engine.config import DEFAULT_RECIPE, TrainConfig, options, recipe

# The settings the form shows, from engine/config.py's table: model and weights first (made here: the model list is
# the catalog, and "weights" takes a file too on the command line), then the basic ones, then the Advanced section.
BASIC = ["strategy", "epochs", "lr"]
ADVANCED = [name for name, opt in options(TrainConfig).items() if opt.in_form and opt.advanced]

# One line per recipe for the Recipe radio; the values are engine/config.py's RECIPES (measured in benchmarks/).
_QUICK, _BEST, _SCRATCH = recipe("quick"), recipe("best"), recipe("scratch")
RECIPE_NOTES = {
    "quick": f"a new head on the built-in ImageNet EfficientNet-Lite0's features, {_QUICK.img_size} px. Seconds for a "
             "few hundred images, about a minute for 2,000 on a laptop CPU",
    "best": f"the quick head, then {_BEST.epochs} epochs fine-tuning the whole network. The most accurate; minutes on "
            "a CPU",
    "scratch": f"a small ResNet from random weights at {_SCRATCH.img_size} px. Quick on simple images like the "
               "built-in shapes, weak on photos",
}


# The curves' x axis: epochs from 0, ticks on whole epochs (Vega-Lite gives a "d" format a tick step of at least 1)
# whatever the width of the plot; the steps between are drawn at fractional epochs.
EPOCH_AXIS = dict(x_lim=[0, None], x_axis_format="d")


def build(ctx: Context, key: gr.State, tab: gr.Tab) -> TrainUI:
    v, caps, table = form_values(ctx.recipe()), ctx.place.limits, options(TrainConfig)
    limits = dict(epochs=caps.max_epochs, freeze_epochs=caps.max_epochs, img_size=caps.max_img_size,
                  batch_size=caps.max_batch_size)
    on_cpu = h.on_cpu(ctx)
    if ctx.place.on_space:
        gr.Markdown(ctx.place.storage_note(), elem_id="space-note")
    s = {}  # TrainConfig field -> the component that sets it; the /train API takes them as keyword arguments
    with gr.Row():
        with gr.Column(scale=1):
            plan = gr.Markdown("", elem_id="train-plan")
            recipe = gr.Radio([(f"{name}: {note}", name) for name, note in RECIPE_NOTES.items()], value=DEFAULT_RECIPE,
                              label="Recipe", elem_id="train-recipe",
                              info="Sets every setting below to a tested starting point; change any of them after")
            s["model"] = gr.Dropdown(h.model_choices(ctx.offline, on_cpu), value=v["model"], label=table["model"].label,
                                     allow_custom_value=True, elem_id="train-model",
                                     info="Pick one, or type any timm model name")
            first_note = h.model_note(v["model"], v["weights"], ctx.offline, on_cpu)
            note = gr.Markdown(first_note, elem_id="model-note", visible=bool(first_note))
            # A list, not radio buttons: its choices follow the model (h.weights_choices), and Gradio checks a radio's
            # value against the choices it last sent, which a change event can race with; the handlers check instead
            s["weights"] = gr.Dropdown(h.weights_choices(ctx, None, v["model"]), value=v["weights"], label=table["weights"].label,
                                       allow_custom_value=True, elem_id="train-weights",
                                    info="pretrained: ImageNet weights, built in for the EfficientNet-Lite models, "
                                         + ("from the Hub for others (offline here)" if ctx.offline else "from the Hub for others"))
            weights_file = gr.File(label="Or start from your own weights (.safetensors, .pth)", file_types=list(models.WEIGHTS_SUFFIXES),
                                   type="filepath", height=90, elem_id="train-weights-file")
            s |= controls(TrainConfig, v, BASIC, caps=limits, elem_prefix="train-")
            with gr.Accordion("Advanced", open=False):
                s |= controls(TrainConfig, v, ADVANCED[:ADVANCED.index("augment") + 1], caps=limits, elem_prefix="train-")
                preview_btn = gr.Button("Preview augmentation", size="sm")
                preview = gr.Gallery(label="Augmented samples (first column: as decoded)", columns=4, height=260,
                                     object_fit="contain", visible=False, elem_id="augment-preview")
                s |= controls(TrainConfig, v, ADVANCED[ADVANCED.index("augment") + 1:], caps=limits, elem_prefix="train-")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                stop = gr.Button("Stop", variant="stop", interactive=False)
                resume = gr.Button("Resume the stopped run", visible=False, elem_id="train-resume")
            start_notice = notice("train-notice")
        with gr.Column(scale=2):
            runs = gr.Markdown("", elem_id="train-runs")
            status = gr.Markdown("Not started.", elem_id="train-status")
            with gr.Row():
                loss_plot = gr.LinePlot(plots.loss_frame([]), x="epoch", y="loss", color="series", title="Loss", height=250,
                                        scale=2, elem_id="train-loss-plot", **EPOCH_AXIS)
                lr_plot = gr.LinePlot(plots.lr_frame([]), x="epoch", y="learning rate", title="Learning rate per step", height=250,
                                      scale=1, elem_id="train-lr-plot", y_axis_format="~g", **EPOCH_AXIS)
            acc_plot = gr.LinePlot(plots.accuracy_frame([]), x="epoch", y=plots.SCORE_COLUMN, title=plots.SCORE_TITLE,
                                   height=200, y_lim=[0, 100], y_axis_format="d", elem_id="train-acc-plot", **EPOCH_AXIS)
            results = gr.Markdown("", elem_id="train-results")
            download = gr.DownloadButton("Download the model folder (.zip)", visible=False)
            log = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True)
            compare = build_comparison(runs)
    ui = TrainUI(key=key, recipe=recipe, settings=s, note=note, preview=preview, runs=runs, status=status,
                 loss_plot=loss_plot, acc_plot=acc_plot, lr_plot=lr_plot, log=log, start=start, stop=stop, resume=resume,
                 results=results, download=download, notice=start_notice,
                 plan=plan, compare=compare)

    # The streaming handler only waits on the job, so it needs no concurrency slot of its own: the job
    # manager is what limits how many trainings run at once.
    show_runs = bind(h.show_runs, ctx, ui)
    show_comparison = bind(runs_h.show, ctx, compare)
    show_resume = bind(h.show_resume, ctx, ui)
    start.click(bind(h.train, ctx, ui), [key], [*ui.progress_outputs, start_notice], inputs_kwargs=s, api_name="train",
                concurrency_limit=None).then(show_comparison, [key], compare.outputs, api_visibility="private").then(
        show_resume, [key], [resume], api_visibility="private")
    for button in (start, resume):  # a run going: nothing to resume until it ends
        button.click(lambda: gr.Button(visible=False), None, [resume], api_visibility="private", queue=False)
    resume.click(bind(h.resume, ctx, ui), [key], [*ui.progress_outputs, start_notice], api_name="resume_training",
                 concurrency_limit=None).then(show_comparison, [key], compare.outputs, api_visibility="private").then(
        show_resume, [key], [resume], api_visibility="private")
    stop.click(bind(h.stop_training, ctx, ui), [key], [stop], api_name="stop_training")
    preview_btn.click(bind(h.preview_augmentation, ctx, ui), [s["augment"], s["img_size"], s["seed"], key], [preview, start_notice],
                      api_name="preview_augmentation")
    # `input`, not `change`: a recipe the page sets itself (restoring a reloaded run's settings, the Data tab's
    # "best" button) comes with its settings, which a `change` would overwrite with the recipe's own.
    recipe.input(bind(h.apply_recipe, ctx, ui), [recipe, key], [*s.values(), start_notice], api_name="apply_recipe",
                 api_visibility="undocumented")
    show_note = bind(h.show_note, ctx, ui)
    for component in (s["model"], s["weights"]):
        component.change(show_note, [s["model"], s["weights"], key], [note, s["weights"]], api_visibility="private")
    gr.on([weights_file.upload, weights_file.clear], bind(h.upload_weights, ctx, ui), [weights_file, s["model"], key],
          [s["weights"], start_notice], api_visibility="private")
    tab.select(show_runs, [key], [runs], api_name="train_runs", api_visibility="undocumented")
    tab.select(show_comparison, [key], compare.outputs, api_visibility="private")
    compare.chosen.input(bind(runs_h.choose, ctx, compare), [compare.chosen, key], [compare.loss_plot, compare.acc_plot],
                         api_visibility="private")
    compare.use_btn.click(bind(runs_h.use_run, ctx, compare), [compare.use, key], [*compare.outputs, compare.notice],
                          api_name="use_run")
    plan_inputs = [s[name] for name in ("model", "weights", "strategy", "img_size", "augment")]
    # One at a time, in order: a recipe changes several of these at once, and side by side an update made from the
    # older values could finish last and leave the plan stale (seen on CI: no warning after the size was set to 48 px)
    gr.on([tab.select, *(control.change for control in plan_inputs)], bind(h.show_plan, ctx, ui), [*plan_inputs, key],
          [plan], api_visibility="private", concurrency_limit=1, concurrency_id="train-plan")
    return ui


def build_comparison(summary: gr.Markdown) -> RunsUI:
    """The runs of the session side by side: a table, their validation curves overlaid, and the run to use."""
    with gr.Accordion("Compare runs", open=False, elem_id="runs-compare"):
        table = gr.Dataframe(pd.DataFrame(columns=runs_h.COLUMNS), label=f"Runs kept (at most {MAX_RUNS}: the oldest goes "
                             "first, never the one in use)", interactive=False, wrap=True, elem_id="runs-table")
        chosen = gr.CheckboxGroup([], label="Curves of", info="Validation loss and accuracy per epoch, overlaid",
                                  elem_id="runs-chosen")
        with gr.Row():
            loss_plot = gr.Plot(label="Validation loss", elem_id="runs-loss-plot")
            acc_plot = gr.Plot(label="Validation accuracy (mAP for multi-label runs)", elem_id="runs-acc-plot")
        with gr.Row(equal_height=True):
            # custom values allowed: the handler checks the name (an API caller never got the choices)
            use = gr.Dropdown([], label="Run", info="Classify, Evaluate and Export use this run's model", allow_custom_value=True,
                              elem_id="runs-use", scale=3)
            use_btn = gr.Button("Use this run", elem_id="runs-use-btn", scale=1)
        use_notice = notice("runs-notice")
    return RunsUI(summary=summary, table=table, chosen=chosen, loss_plot=loss_plot, acc_plot=acc_plot, use=use,
                  use_btn=use_btn, notice=use_notice)
