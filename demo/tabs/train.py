"""Train tab: choose model and recipe, start a background training job, watch it live, stop it.

The job belongs to the server, not to the page: closing or reloading the tab leaves it running, and a
reloaded page re-attaches (demo/__init__.py calls `reattach` on load). Stop asks the job to end after its
current step; it keeps the best epoch so far.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, fields
from pathlib import Path

import gradio as gr
import torch

from demo import plots
from demo.compute import compute
from demo.context import Context, user_errors
from demo.zerogpu import train_in_chunks
from engine import data as data_lib
from engine import models
from engine.errors import UserError
from engine.export import read_metrics, zip_model_folder
from engine.model_card import LR_FIND_JSON
from engine.train import DEFAULT_RECIPE, HEAD_LR, RECIPES, STRATEGIES, TrainConfig, fit, preflight

STREAM_INTERVAL = 0.5  # seconds between page updates: enough to look live, cheap for the server


def build(ctx: Context, key: gr.State, tab: gr.Tab):
    v, caps = form_values(ctx.recipe()), ctx.place.limits
    on_cpu = not (torch.cuda.is_available() or ctx.place.zero_gpu)  # where a "needs a GPU" model would crawl
    if ctx.place.on_space:
        gr.Markdown(ctx.place.storage_note(), elem_id="space-note")
    s = {}  # TrainConfig field -> the component that sets it; the /train API takes them as keyword arguments
    with gr.Row():
        with gr.Column(scale=1):
            recipe = gr.Radio([(f"{name}: {note}", name) for name, note in RECIPE_NOTES.items()], value=DEFAULT_RECIPE,
                              label="Recipe", elem_id="train-recipe",
                              info="Sets every setting below to a tested starting point; change any of them after")
            s["model"] = gr.Dropdown(model_choices(ctx.offline, on_cpu), value=v["model"], label="Model",
                                     allow_custom_value=True, elem_id="train-model",
                                     info="Pick one, or type any timm model name")
            first_note = model_note(v["model"], v["weights"], ctx.offline, on_cpu)
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
            loss_plot = gr.LinePlot(plots.loss_frame([]), x="step", y="loss", color="series", title="Loss", height=250)
            acc_plot = gr.LinePlot(plots.accuracy_frame([]), x="epoch", y="val accuracy %", title="Validation accuracy",
                                   height=200, y_lim=[0, 100])
            results = gr.Markdown("", elem_id="train-results")
            download = gr.DownloadButton("Download the model folder (.zip)", visible=False)
            log = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True)
    outputs = [key, status, loss_plot, acc_plot, log, start, stop, results, download]

    @user_errors
    def train(key=None, lr=None, head_lr=None, **settings):
        """Start training in the background (or re-attach to the run already going) and stream its progress."""
        # lr and head_lr are named so that an API caller may leave them out: Gradio makes a setting whose box starts
        # empty a required parameter unless the function gives it a default of None
        settings = dict(settings, lr=lr, head_lr=head_lr)
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is None or job.finished:
            cfg = ctx.place.check(config_from(settings))
            chunked = ctx.place.zero_gpu  # GPU work in time-limited calls: see demo/zerogpu.py
            label = recipe_of(ctx, cfg) or cfg.resolved_strategy()
            job = ctx.jobs.submit(ws.key, "train", lambda token: run_training(ws, cfg, token, chunked, label))
            ws.train_settings = dict(settings)
        yield from stream(ctx, ws.key, job)

    def stop_training(key=None):
        ctx.stop_latest(key, "train")
        return gr.Button(interactive=False)

    @user_errors
    def preview_augmentation(augment, img_size, seed, key=None):
        """A few training images as decoded, then as the chosen augmentation changes them."""
        ws = ctx.workspace(key)
        cfg = config_from(dict(augment=augment, img_size=img_size, seed=seed))
        samples = compute.run(data_lib.augmentation_preview, ws.dataset_or_builtin(), cfg.augment, cfg.img_size, seed=cfg.seed)
        return gr.Gallery(value=samples, visible=True)

    @user_errors
    def apply_recipe(name):
        """Every Train setting for a named recipe (quick, best, scratch): its values, the rest at their defaults."""
        values = form_values(ctx.recipe(name))
        return [values[field] for field in s]

    def show_note(model, weights):
        text = model_note(model, weights, ctx.offline, on_cpu)
        return gr.Markdown(value=text, visible=bool(text))

    def show_runs(key=None):
        """This session's trainings side by side, and which one the Classify tab uses."""
        return runs_markdown(ctx.workspace(key))

    # The streaming handler only waits on the job, so it needs no concurrency slot of its own: the job
    # manager is what limits how many trainings run at once.
    start.click(train, [key], outputs, inputs_kwargs=s, api_name="train", concurrency_limit=None).then(
        show_runs, [key], [runs], api_visibility="private")
    stop.click(stop_training, [key], [stop], api_name="stop_training")
    preview_btn.click(preview_augmentation, [s["augment"], s["img_size"], s["seed"], key], [preview],
                      api_name="preview_augmentation")
    # `input`, not `change`: a recipe the page sets itself (restoring a reloaded run's settings, the Data tab's
    # "best" button) comes with its settings, which a `change` would overwrite with the recipe's own.
    recipe.input(apply_recipe, [recipe], list(s.values()), api_name="apply_recipe", api_visibility="undocumented")
    for component in (s["model"], s["weights"]):
        component.change(show_note, [s["model"], s["weights"]], [note], api_visibility="private")
    tab.select(show_runs, [key], [runs], api_name="train_runs", api_visibility="undocumented")

    def reattach(key=None):
        """After a reload: show the workspace's latest training, live if it is still running."""
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is None:
            yield (ws.key, "Not started.", plots.loss_frame([]), plots.accuracy_frame([]), "",
                   gr.Button(interactive=True), gr.Button(interactive=False), "", gr.DownloadButton(visible=False))
            return
        yield from stream(ctx, ws.key, job)

    def restore_settings(key=None):
        """After a reload: show the settings of the run being re-attached (and its recipe, if it was one), not the
        defaults."""
        saved = ctx.workspace(key).train_settings or {}
        try:
            name = recipe_of(ctx, config_from(saved)) if saved else None
        except UserError:
            name = None
        return [gr.update(value=name) if name else gr.update(), *(saved.get(field, gr.update()) for field in s)]

    def choose_recipe(name: str):
        """The recipe radio and every setting for `name` (the Data tab's "best" button; no `input` event follows)."""
        return [name, *apply_recipe(name)]

    return dict(settings=s, recipe=recipe, outputs=outputs, lr=s["lr"], runs=runs, show_runs=show_runs,
                reattach=reattach, restore_settings=restore_settings, choose_recipe=choose_recipe)


# One line per recipe for the Recipe radio (the values are engine.train.RECIPES, measured in benchmarks/).
RECIPE_NOTES = {
    "quick": "a new head on the built-in ImageNet EfficientNet-Lite0's features, 224 px. Seconds for a few hundred "
             "images, about a minute for 2,000 on a laptop CPU",
    "best": "the quick head, then 3 epochs fine-tuning the whole network. The most accurate; minutes on a CPU",
    "scratch": "a small ResNet from random weights at 48 px. Quick on simple images like the built-in shapes, "
               "weak on photos",
}


def form_values(recipe: dict) -> dict:
    """The Train tab's value for every setting: the recipe's, the rest TrainConfig's defaults, in the form's terms
    (auto/on/off for the tri-state options, an empty box for an LR the engine picks)."""
    cfg = asdict(TrainConfig(**recipe))
    return {name: FORM_TRISTATE[value] if name in TRISTATE_FIELDS else value for name, value in cfg.items()
            if name in FORM_FIELDS}


def recipe_of(ctx: Context, cfg: TrainConfig) -> str | None:
    """The name of the recipe `cfg` is exactly (as this place offers it), or None when any setting differs."""
    return next((name for name in RECIPES if TrainConfig(**ctx.recipe(name)) == cfg), None)


def model_choices(offline: bool, on_cpu: bool) -> list[tuple[str, str]]:
    """The catalog as (label, name) choices: name, size, and whether its weights are here or it wants a GPU."""
    return [(entry.label(offline, on_cpu), entry.name) for entry in models.catalog(offline)]


def model_note(name, weights, offline: bool, on_cpu: bool) -> str:
    """What a person should know before training this model here, and what to pick instead ("" when nothing)."""
    if not isinstance(name, str) or not name.strip():
        return ""
    name = name.strip()
    entry = models.catalog_entry(name) or models.CatalogEntry(name, 0.0, "")
    built_in = [e.name for e in models.catalog(offline) if e.built_in]
    instead = f"**{built_in[0]}** (ImageNet weights built in, quick on a CPU)" if built_in else "a smaller model"
    if weights == "pretrained" and not entry.weights_available(offline):
        return (f"**{name}** has no pretrained weights here: the Hugging Face Hub is offline, and only the "
                f"EfficientNet-Lite weights are built in. Pick {instead}, or set Weights to *scratch* to train "
                "this one from random weights.")
    if on_cpu and not entry.cpu:
        return (f"**{name}** needs a GPU: this machine has none, and training it on the CPU would take very long. "
                f"Pick {instead}, or run Snapfit on a machine with a GPU.")
    return ""


def runs_markdown(ws) -> str:
    """The session's runs as a Markdown table (the first and the latest nine when there are more)."""
    runs = ws.runs if len(ws.runs) <= 10 else ws.runs[:1] + ws.runs[-9:]
    if not runs:
        return ""
    in_use = str(ws.model_dir) if ws.model_dir is not None else None
    rows = []
    for r in runs:
        label = r["label"] if r["status"] == "done" else f"{r['label']} ({r['status']})"
        rows.append(f"| {'**in use**' if r['model_dir'] == in_use else ''} | {label} | {r['model']} | {r['img_size']} px "
                    f"| {r['val_acc']:.1%} | {r['seconds']:.0f} |")
    other = in_use is not None and all(r["model_dir"] != in_use for r in ws.runs)
    return ("**Runs in this session**\n\n| | recipe / strategy | model | image size | validation accuracy | seconds |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows)
            + ("\n\nIn use on the Classify tab: a model loaded there, not one of these." if other else ""))


TRISTATE = {"auto": None, "on": True, "off": False}  # bf16, channels_last, freeze_bn: None lets the engine decide
FORM_TRISTATE = {value: name for name, value in TRISTATE.items()}
TRISTATE_FIELDS = {"bf16", "channels_last", "freeze_bn"}
FORM_FIELDS = {f.name for f in fields(TrainConfig)} - {"memory_budget_mb"}  # what the Train tab sets
WHOLE = {"epochs", "batch_size", "img_size", "freeze_epochs", "freeze_layers", "patience", "accum_steps", "seed"}
NUMBERS = {"lr", "head_lr", "val_fraction", "weight_decay", "label_smoothing", "mixup", "cutmix", "lr_mult", "drop_rate",
           "drop_path_rate", "grad_clip"}
OPTIONAL = {"lr", "head_lr"}  # an empty box: the engine's default for these weights and strategy


def config_from(settings: dict) -> TrainConfig:
    """The tab's values (keyed by TrainConfig field) as a checked TrainConfig; a UserError names a bad value."""
    return preflight(TrainConfig.from_dict({name: _convert(name, value) for name, value in settings.items()}))


def _convert(name: str, value):
    label = name.replace("_", " ").capitalize()
    if name in TRISTATE_FIELDS:
        if value not in TRISTATE:
            raise UserError(f"{label} must be auto, on or off (got {value!r}).")
        return TRISTATE[value]
    if name == "progressive_resize":
        return bool(value)
    if name not in WHOLE | NUMBERS:
        return value
    if name in OPTIONAL and value in (None, ""):
        return None  # empty: the engine's default for these weights
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{label} must be a number (got {value!r}).") from None
    if name in WHOLE:
        if not number.is_integer():
            raise UserError(f"{label} must be a whole number (got {value!r}).")
        if name == "seed" and not 0 <= number < 2**32:  # numpy's generators take no other seeds
            raise UserError(f"Seed must be a whole number from 0 to {2**32 - 1} (got {value!r}).")
        return int(number)
    return number


def run_training(ws, cfg: TrainConfig, stop, chunked: bool = False, label: str = ""):
    """The job body: decode once (cached per workspace), train (in GPU-sized chunks on a ZeroGPU Space), and
    hand the model to the workspace, listed among its runs as `label` (its recipe, or else its strategy)."""
    prepared = yield from ws.decoded(cfg)
    out_dir = Path(ws.folder) / f"model-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    events = train_in_chunks(prepared, cfg, str(out_dir), stop) if chunked else fit(prepared, cfg, str(out_dir), stop)
    for event in events:
        if event.kind in ("finished", "stopped", "saved_before_failure") and event.model_dir:
            keep_lr_result(ws, cfg, event.model_dir)
            ws.set_model(event.model_dir, (cfg.val_fraction, cfg.seed))
            zip_model_folder(event.model_dir, event.model_dir)  # beside it: <model_dir>.zip, for the download button
            ws.add_run(run_record(event, cfg, label or cfg.resolved_strategy()))
        yield event


def run_record(event, cfg: TrainConfig, label: str) -> dict:
    """One row of the Train tab's table of runs, from the model folder the run saved."""
    m = read_metrics(event.model_dir)
    status = {"finished": "done", "stopped": "stopped"}.get(event.kind, "failed")
    return dict(label=label, model=cfg.model, img_size=cfg.img_size, val_acc=m.get("val_accuracy", 0.0),
                seconds=m.get("seconds", 0.0), status=status, model_dir=str(event.model_dir))


def keep_lr_result(ws, cfg: TrainConfig, model_dir: str) -> None:
    """Put the LR finder's curve in the model folder when it was run for this model and strategy: the model
    card (engine/model_card.py) shows it."""
    if ws.lr_result and ws.lr_result[:2] == (cfg.model, cfg.resolved_strategy()):
        (Path(model_dir) / LR_FIND_JSON).write_text(json.dumps(asdict(ws.lr_result[2])))


class View:
    """Accumulates a job's events into what the page shows."""

    def __init__(self) -> None:
        self.losses, self.history, self.log = [], [], []
        self.started = None
        self.last_step = None
        self.final = None

    def add(self, event) -> None:
        kind = getattr(event, "kind", "")
        if kind == "started":
            self.started = event
            self.log.append(f"Training {event.model} ({event.strategy}) on {event.device}: "
                            f"{event.num_train} training / {event.num_val} validation images")
        elif kind == "step":
            self.last_step = event
            self.losses.append((event.step, event.loss, plots.LOSS_SERIES[0]))
        elif kind == "epoch_end":
            self.history.append(event.__dict__)
            if self.started:
                self.losses.append((event.epoch * self.started.steps_per_epoch, event.val_loss, plots.LOSS_SERIES[1]))
            self.log.append(f"Epoch {event.epoch}: train loss {event.train_loss:.3f}, val loss {event.val_loss:.3f}, "
                            f"val accuracy {event.val_acc:.1%} ({event.seconds:.1f} s)")
        elif kind == "log":
            self.log.append(event.message)
        elif kind == "paused":
            self.log.append(f"Checkpoint after epoch {event.epochs_done}; going on in the next GPU call")
        elif kind in ("finished", "stopped", "saved_before_failure"):
            self.final = event

    def status(self, job, position: int) -> str:
        if job.status == "queued":
            return f"Waiting for a free training slot: position {position} in the queue."
        if job.status == "failed" and self.final is not None:
            return (f"Training failed: {job.error.rstrip('.')}. The best epoch before the failure (epoch {self.final.best_epoch}, "
                    f"{self.final.best_val_acc:.1%} validation accuracy) is saved and ready on the **Classify** tab.")
        if job.status == "failed":
            return f"Training failed: {job.error}"
        if job.status in ("done", "stopped") and self.final is not None:
            best = max((h["val_acc"] for h in self.history), default=0.0)
            head = "Finished" if job.status == "done" else "Stopped"
            return (f"{head} in {job.elapsed:.0f} s. Best validation accuracy **{best:.1%}**. "
                    "The model is ready on the **Classify** tab.")
        return self._progress(job)

    def _progress(self, job) -> str:
        if self.started is None or self.last_step is None:
            return f"Preparing… ({job.elapsed:.0f} s)"
        s, total = self.last_step, self.started.total_steps
        eta = job.elapsed / max(s.step, 1) * max(total - s.step, 0)
        return (f"Epoch {s.epoch}/{self.started.epochs} · step {s.step}/{total} · "
                f"{s.images_per_s:.0f} images/s · loss {s.loss:.3f} · ETA {eta:.0f} s")


def stream(ctx: Context, owner: str, job):
    """Yield page updates for a job until it ends (or until the page goes away)."""
    view = View()
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            view.add(event)
        done = job.finished and view.final is not None
        yield (owner, view.status(job, ctx.jobs.queue_position(job)), plots.loss_frame(view.losses),
               plots.accuracy_frame(view.history), "\n".join(view.log[-200:]),
               gr.Button(interactive=job.finished), gr.Button(interactive=not job.finished),
               final_metrics(view.final.model_dir) if done else "",
               gr.DownloadButton(value=f"{view.final.model_dir}.zip", visible=True) if done else gr.DownloadButton(visible=False))


def final_metrics(model_dir: str) -> str:
    """The saved model's validation results as Markdown: overall, then one row per class."""
    m = read_metrics(model_dir)
    if not m:
        return ""
    rows = "\n".join(f"| {name} | {'n/a' if acc is None else f'{acc:.1%}'} |" for name, acc in m["per_class_accuracy"].items())
    return (f"**Saved model** (epoch {m['best_epoch']}): validation accuracy **{m['val_accuracy']:.1%}**, "
            f"loss {m['val_loss']:.3f}, on {m['num_val']} images; trained on {m['num_train']} in {m['seconds']:.0f} s. "
            f"Weights: {m['weights']}\n\n| class | accuracy |\n|---|---|\n{rows}")
