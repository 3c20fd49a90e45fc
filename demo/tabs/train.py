"""Train tab: choose model and recipe, start a background training job, watch it live (loss, accuracy and the
learning rate as the schedule moves it), stop it.

The job belongs to the server, not to the page: closing or reloading the tab leaves it running, and a reloaded page
re-attaches (demo/__init__.py wires the page load to `reattach`). Stop asks the job to end after its current step;
it keeps the best epoch so far. Layout and wiring only: the handlers are in demo/handlers/train.py.
"""
from __future__ import annotations

import gradio as gr

from demo import plots
from demo.context import Context
from demo.handlers import train as h
from demo.handlers.train import TrainUI
from demo.train_form import TRISTATE, form_values
from demo.wiring import bind
from engine.train import DEFAULT_RECIPE, HEAD_LR, STRATEGIES

# One line per recipe for the Recipe radio (the values are engine.train.RECIPES, measured in benchmarks/).
RECIPE_NOTES = {
    "quick": "a new head on the built-in ImageNet EfficientNet-Lite0's features, 224 px. Seconds for a few hundred "
             "images, about a minute for 2,000 on a laptop CPU",
    "best": "the quick head, then 3 epochs fine-tuning the whole network. The most accurate; minutes on a CPU",
    "scratch": "a small ResNet from random weights at 48 px. Quick on simple images like the built-in shapes, "
               "weak on photos",
}


def build(ctx: Context, key: gr.State, tab: gr.Tab) -> TrainUI:
    v, caps = form_values(ctx.recipe()), ctx.place.limits
    on_cpu = h.on_cpu(ctx)
    if ctx.place.on_space:
        gr.Markdown(ctx.place.storage_note(), elem_id="space-note")
    s = {}  # TrainConfig field -> the component that sets it; the /train API takes them as keyword arguments
    with gr.Row():
        with gr.Column(scale=1):
            recipe = gr.Radio([(f"{name}: {note}", name) for name, note in RECIPE_NOTES.items()], value=DEFAULT_RECIPE,
                              label="Recipe", elem_id="train-recipe",
                              info="Sets every setting below to a tested starting point; change any of them after")
            s["model"] = gr.Dropdown(h.model_choices(ctx.offline, on_cpu), value=v["model"], label="Model",
                                     allow_custom_value=True, elem_id="train-model",
                                     info="Pick one, or type any timm model name")
            first_note = h.model_note(v["model"], v["weights"], ctx.offline, on_cpu)
            note = gr.Markdown(first_note, elem_id="model-note", visible=bool(first_note))
            s["weights"] = gr.Radio(["pretrained", "scratch"], value=v["weights"], label="Weights",
                                    info="pretrained: ImageNet weights, built in for the EfficientNet-Lite models, "
                                         + ("from the Hub for others (offline here)" if ctx.offline else "from the Hub for others"))
            s["strategy"] = gr.Dropdown(["auto", *STRATEGIES], value=v["strategy"], label="Strategy",
                                        info="head: only a new classifier on cached features; finetune: the head, then "
                                             "the whole network; auto: finetune with pretrained weights, full from scratch")
            s["epochs"] = gr.Slider(1, caps.max_epochs, value=v["epochs"], step=1, label="Epochs")
            s["lr"] = gr.Number(value=v["lr"], label="Learning rate", elem_id="train-lr",
                                info="Run the LR finder to pick one; empty: 3e-2 for a head on features, 2e-3 to "
                                     "fine-tune, 1e-2 from scratch")
            with gr.Accordion("Advanced", open=False):
                s["batch_size"] = gr.Slider(8, caps.max_batch_size, value=v["batch_size"], step=8, label="Batch size")
                s["img_size"] = gr.Slider(32, caps.max_img_size, value=v["img_size"], step=16, label="Image size (px)", info="Smaller is faster")
                s["progressive_resize"] = gr.Checkbox(v["progressive_resize"], label="Progressive resizing",
                                                      info="Start at half the size, finish at the full size")
                s["val_fraction"] = gr.Slider(0.05, 0.5, value=v["val_fraction"], step=0.05, label="Validation fraction")
                s["augment"] = gr.Radio(["none", "light", "standard"], value=v["augment"], label="Augmentation")
                preview_btn = gr.Button("Preview augmentation", size="sm")
                preview = gr.Gallery(label="Augmented samples (first column: as decoded)", columns=4, height=260,
                                     object_fit="contain", visible=False, elem_id="augment-preview")
                s["mixup"] = gr.Slider(0, 1, value=v["mixup"], step=0.1, label="Mixup alpha", info="0 = off")
                s["cutmix"] = gr.Slider(0, 1, value=v["cutmix"], step=0.1, label="CutMix alpha", info="0 = off")
                s["label_smoothing"] = gr.Slider(0, 0.3, value=v["label_smoothing"], step=0.05, label="Label smoothing")
                s["weight_decay"] = gr.Number(v["weight_decay"], label="Weight decay (AdamW)")
                s["freeze_epochs"] = gr.Slider(0, 50, value=v["freeze_epochs"], step=1, label="Frozen epochs",
                                               info="finetune: head-only epochs (on cached features) before unfreezing")
                s["head_lr"] = gr.Number(value=v["head_lr"], label="Head learning rate", elem_id="train-head-lr",
                                         info=f"finetune: the LR of those head-only epochs; empty: {HEAD_LR:g}")
                s["freeze_bn"] = gr.Radio(list(TRISTATE), value=v["freeze_bn"], label="Freeze BatchNorm statistics",
                                          info="auto: on with pretrained weights (keeps their ImageNet statistics while "
                                               "fine-tuning), off from scratch")
                s["freeze_layers"] = gr.Slider(0, 8, value=v["freeze_layers"], step=1, label="Frozen layer groups",
                                               info="The first K layer groups never train")
                s["lr_mult"] = gr.Number(v["lr_mult"], label="Discriminative LR ratio",
                                         info="finetune / progressive: the stem trains at LR / this")
                s["drop_rate"] = gr.Slider(0, 0.5, value=v["drop_rate"], step=0.05, label="Dropout before the classifier")
                s["drop_path_rate"] = gr.Slider(0, 0.5, value=v["drop_path_rate"], step=0.05, label="Drop path (stochastic depth)")
                s["patience"] = gr.Slider(0, 10, value=v["patience"], step=1, label="Early stopping patience",
                                          info="Epochs without a better validation loss; 0 = off")
                s["grad_clip"] = gr.Number(v["grad_clip"], label="Gradient clipping (max norm, 0 = off)")
                s["accum_steps"] = gr.Slider(1, 16, value=v["accum_steps"], step=1, label="Gradient accumulation steps")
                s["bf16"] = gr.Radio(list(TRISTATE), value=v["bf16"], label="bf16 autocast", info="auto: where the hardware supports it")
                s["channels_last"] = gr.Radio(list(TRISTATE), value=v["channels_last"], label="channels_last",
                                              info="auto: with bf16, or for depthwise convolutions (EfficientNet)")
                s["seed"] = gr.Number(v["seed"], precision=0, label="Seed")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                stop = gr.Button("Stop", variant="stop", interactive=False)
        with gr.Column(scale=2):
            runs = gr.Markdown("", elem_id="train-runs")
            status = gr.Markdown("Not started.", elem_id="train-status")
            with gr.Row():
                loss_plot = gr.LinePlot(plots.loss_frame([]), x="step", y="loss", color="series", title="Loss", height=250,
                                        scale=2)
                lr_plot = gr.LinePlot(plots.lr_frame([]), x="step", y="learning rate", title="Learning rate per step", height=250,
                                      scale=1, elem_id="train-lr-plot")
            acc_plot = gr.LinePlot(plots.accuracy_frame([]), x="epoch", y="val accuracy %", title="Validation accuracy",
                                   height=200, y_lim=[0, 100])
            results = gr.Markdown("", elem_id="train-results")
            download = gr.DownloadButton("Download the model folder (.zip)", visible=False)
            log = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True)
    ui = TrainUI(key=key, recipe=recipe, settings=s, note=note, preview=preview, runs=runs, status=status,
                 loss_plot=loss_plot, acc_plot=acc_plot, lr_plot=lr_plot, log=log, start=start, stop=stop,
                 results=results, download=download)

    # The streaming handler only waits on the job, so it needs no concurrency slot of its own: the job
    # manager is what limits how many trainings run at once.
    show_runs = bind(h.show_runs, ctx, ui)
    start.click(bind(h.train, ctx, ui), [key], ui.progress_outputs, inputs_kwargs=s, api_name="train",
                concurrency_limit=None).then(show_runs, [key], [runs], api_visibility="private")
    stop.click(bind(h.stop_training, ctx, ui), [key], [stop], api_name="stop_training")
    preview_btn.click(bind(h.preview_augmentation, ctx, ui), [s["augment"], s["img_size"], s["seed"], key], [preview],
                      api_name="preview_augmentation")
    # `input`, not `change`: a recipe the page sets itself (restoring a reloaded run's settings, the Data tab's
    # "best" button) comes with its settings, which a `change` would overwrite with the recipe's own.
    recipe.input(bind(h.apply_recipe, ctx, ui), [recipe], list(s.values()), api_name="apply_recipe",
                 api_visibility="undocumented")
    show_note = bind(h.show_note, ctx, ui)
    for component in (s["model"], s["weights"]):
        component.change(show_note, [s["model"], s["weights"]], [note], api_visibility="private")
    tab.select(show_runs, [key], [runs], api_name="train_runs", api_visibility="undocumented")
    return ui
