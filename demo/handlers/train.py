"""The Train tab's handlers: start a training job (or re-attach to the running one) and stream its progress, stop
it, set a recipe, preview the augmentation, say what to know about a model, list the session's runs."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch

from demo import actions, advice, plots
from demo.compute import compute
from demo.context import Context, user_errors
from demo.handlers.runs import RunsUI, runs_markdown
from demo.notice import Notice
from demo.progress import TrainingProgress
from demo.train_form import config_from, form_values, recipe_of
from engine import data as data_lib
from engine import models
from engine.config import DEFAULT_RECIPE
from engine.errors import UserError
from engine.export import read_metrics

STREAM_INTERVAL = 0.5  # seconds between page updates: enough to look live, cheap for the server
YOUR_FILE = "your file"  # the Weights choice for a weights file uploaded on the Train tab


@dataclass
class TrainUI:
    """The Train tab's components that handlers read or change."""

    key: gr.State
    recipe: gr.Radio
    settings: dict  # TrainConfig field -> the control that sets it; the /train API takes them as keyword arguments
    note: gr.Markdown
    preview: gr.Gallery
    runs: gr.Markdown
    status: gr.Markdown
    loss_plot: gr.LinePlot
    acc_plot: gr.LinePlot
    lr_plot: gr.LinePlot
    log: gr.Textbox
    start: gr.Button
    stop: gr.Button
    resume: gr.Button  # shown when the latest run stopped or failed and can go on from its checkpoint
    results: gr.Markdown
    download: gr.DownloadButton
    notice: Notice  # under Start: why a run did not start
    plan: gr.Markdown  # the dataset it will train on, and what predicts a poor run
    compare: RunsUI  # the runs compared (its summary is `runs`)

    @property
    def progress_outputs(self) -> list:
        """What following a training run updates (the order is /train's API output)."""
        return [self.key, self.status, self.loss_plot, self.acc_plot, self.lr_plot, self.log, self.start, self.stop,
                self.results, self.download]


@user_errors
def train(ctx: Context, ui: TrainUI, key=None, lr=None, head_lr=None, **settings):
    """Start training in the background (or re-attach to the run already going) and stream its progress."""
    # lr and head_lr are named so that an API caller may leave them out: Gradio makes a setting whose box starts
    # empty a required parameter unless the function gives it a default of None
    settings = dict(settings, lr=lr, head_lr=head_lr)
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    if job is None or job.finished:
        cfg = ctx.place.check(config_from(with_weights_file(ws, settings)))
        job = actions.start_training(ctx, ws, cfg, recipe_of(ctx, cfg) or cfg.resolved_strategy())
        ws.train_settings = dict(settings)
    yield from stream(ctx, ui, ws.key, job)


@user_errors
def resume(ctx: Context, ui: TrainUI, key=None):
    """Go on with the session's stopped or failed run from its last checkpoint, with its own settings."""
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    if job is not None and not job.finished:
        raise UserError("A training run is going: wait for it to end, or stop it, before resuming another.")
    run = actions.resumable(ws)
    if run is None:
        raise UserError("Nothing to resume: the latest run finished, or stopped before its first checkpoint (one is "
                        "saved at an epoch end, once a minute). Start a new run instead.")
    cfg, out_dir, label = run
    job = actions.start_training(ctx, ws, cfg, label, out_dir)
    yield from stream(ctx, ui, ws.key, job)


def show_resume(ctx: Context, ui: TrainUI, key=None) -> dict:
    """The Resume button: shown when the session's latest run can go on (it ended early and left a checkpoint)."""
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    running = job is not None and not job.finished
    return {ui.resume: gr.Button(visible=not running and actions.resumable(ws) is not None)}


def stop_training(ctx: Context, ui: TrainUI, key=None) -> dict:
    ctx.stop_latest(key, "train")
    return {ui.stop: gr.Button(interactive=False)}


def reattach(ctx: Context, ui: TrainUI, key=None):
    """After a reload: show the workspace's latest training, live if it is still running."""
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    if job is None:
        yield {ui.key: ws.key, ui.status: "Not started.", ui.loss_plot: plots.loss_frame([]),
               ui.acc_plot: plots.accuracy_frame([]), ui.lr_plot: plots.lr_frame([]), ui.log: "",
               ui.start: gr.Button(interactive=True), ui.stop: gr.Button(interactive=False), ui.results: "",
               ui.download: gr.DownloadButton(visible=False)}
        return
    yield from stream(ctx, ui, ws.key, job)


def stream(ctx: Context, ui: TrainUI, owner: str, job):
    """Page updates for a training job until it ends (or until the page goes away).

    A plot with no new points is left as the page has it (gr.skip): the page redraws a plot whole whenever its
    value comes, and between steps (validation, embedding, waiting in the queue) updates still come every second.
    The last update always carries everything.
    """
    progress, drawn = TrainingProgress(), {}
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            progress.add(event)
        update = progress_update(ctx, ui, owner, job, progress)
        points = {ui.loss_plot: (len(progress.train_loss), len(progress.val_loss)), ui.lr_plot: len(progress.lrs),
                  ui.acc_plot: len(progress.history)}
        if not job.finished:
            update |= {plot: gr.skip() for plot, count in points.items() if drawn.get(plot) == count}
        drawn = points
        yield update


def progress_update(ctx: Context, ui: TrainUI, owner: str, job, progress: TrainingProgress) -> dict:
    """Everything the tab shows of a training job as it stands."""
    done = job.finished and progress.final is not None
    return {ui.key: owner, ui.status: progress.status(job, ctx.jobs.queue_position(job)),
            ui.loss_plot: plots.loss_frame(progress.train_loss, progress.val_loss),
            ui.acc_plot: plots.accuracy_frame(progress.history), ui.lr_plot: plots.lr_frame(progress.lrs),
            ui.log: progress.log_tail(),
            ui.start: gr.Button(interactive=job.finished), ui.stop: gr.Button(interactive=not job.finished),
            ui.results: final_metrics(progress.final.model_dir) if done else "",
            ui.download: (gr.DownloadButton(value=f"{progress.final.model_dir}.zip", visible=True) if done
                          else gr.DownloadButton(visible=False))}


@user_errors
def preview_augmentation(ctx: Context, ui: TrainUI, augment, img_size, seed, key=None) -> dict:
    """A few training images as decoded, then as the chosen augmentation changes them."""
    ws = ctx.workspace(key)
    cfg = config_from(dict(augment=augment, img_size=img_size, seed=seed))
    samples = compute.run(data_lib.augmentation_preview, ws.dataset_or_builtin(), cfg.augment, cfg.img_size, seed=cfg.seed)
    return {ui.preview: gr.Gallery(value=samples, visible=True)}


@user_errors
def apply_recipe(ctx: Context, ui: TrainUI, name, key=None) -> dict:
    """Every Train setting for a named recipe (quick, best, scratch): its values, the rest at their defaults."""
    return recipe_settings(ctx, ui, name, key)


def recipe_settings(ctx: Context, ui: TrainUI, name: str, key=None) -> dict:
    values = form_values(ctx.recipe(name))
    settings = {control: values[field] for field, control in ui.settings.items()}
    # with the Weights choices of the recipe's model: those of the model it replaces may lack its "pretrained"
    settings[ui.settings["weights"]] = gr.Dropdown(weights_choices(ctx, ctx.workspace(key), values["model"]),
                                                value=values["weights"])
    return settings


def choose_recipe(ctx: Context, ui: TrainUI, name: str, key=None) -> dict:
    """The recipe radio and every setting for `name`, as a page sets them itself (no `input` event follows)."""
    return {ui.recipe: name, **recipe_settings(ctx, ui, name, key)}


def restore_settings(ctx: Context, ui: TrainUI, key=None) -> dict:
    """After a reload: the settings of the run being re-attached (and its recipe, if it was one), not the defaults."""
    ws = ctx.workspace(key)
    saved = ws.train_settings or {}
    if not saved:  # a new page: Gradio 6 draws a Number built with value=None as "0", which is then sent as an LR
        # of 0; an update with None leaves it empty (the engine's LR). Only those boxes: the person may be changing
        # the rest already, and a late Weights value would not match the choices of the model they picked.
        empty = {field for field, value in form_values(ctx.recipe(DEFAULT_RECIPE)).items() if value is None}
        return {ui.recipe: gr.skip(), **{control: None if field in empty else gr.skip()
                                          for field, control in ui.settings.items()}}
    try:
        name = recipe_of(ctx, config_from(with_weights_file(ws, saved))) if saved else None
    except UserError:
        name = None
    restored = {control: saved.get(field, gr.skip()) for field, control in ui.settings.items()}
    if "weights" in saved:  # with the choices that work for its model ("your file" is not among the page's first ones)
        restored[ui.settings["weights"]] = gr.Dropdown(weights_choices(ctx, ws, saved.get("model")), value=saved["weights"])
    return {ui.recipe: name or gr.skip(), **restored}


def show_note(ctx: Context, ui: TrainUI, model, weights, key=None) -> dict:
    """What to know about the model chosen, and the Weights choices that work for it here."""
    choices = weights_choices(ctx, ctx.workspace(key), model)
    # a model without weights here is told so whichever Weights is shown: scratch is then its only start
    text = model_note(model, weights if "pretrained" in choices else "pretrained", ctx.offline, on_cpu(ctx))
    if weights not in choices:  # pretrained, for a model whose weights are not here: it would only fail
        weights = "scratch"
    return {ui.note: gr.Markdown(value=text, visible=bool(text)), ui.settings["weights"]: gr.Dropdown(choices, value=weights)}


def weights_choices(ctx: Context, ws, model) -> list[str]:
    """The Weights a run of `model` can start from here: pretrained only where its weights can be had (built in,
    or the Hub online), and the session's uploaded weights file once there is one."""
    return ([*(["pretrained"] if pretrained_available(model, ctx.offline) else []), "scratch"]
            + ([YOUR_FILE] if ws is not None and ws.weights_file is not None else []))


def built_in_model(offline: bool) -> str | None:
    """The first catalog model whose ImageNet weights are built in: what to suggest for transfer learning."""
    return next((e.name for e in models.catalog(offline) if e.built_in), None)


def pretrained_available(name, offline: bool) -> bool:
    name = name.strip() if isinstance(name, str) else ""
    return bool(name) and (models.catalog_entry(name) or models.CatalogEntry(name, 0.0, "")).weights_available(offline)


@user_errors
def upload_weights(ctx: Context, ui: TrainUI, path, model, key=None) -> dict:
    """Keep an uploaded weights file in the session's folder and train from it ("your file")."""
    ws = ctx.workspace(key)
    if not path:  # cleared: back to pretrained or scratch
        ws.weights_file = None
        choices = weights_choices(ctx, ws, model)
        return {ui.settings["weights"]: gr.Dropdown(choices, value=choices[0])}
    name = Path(path).name
    if not name.lower().endswith(models.WEIGHTS_SUFFIXES):
        raise UserError(f"{name}: a weights file is .safetensors, .pth, .pt or .bin (a state dict, or Snapfit's "
                        "model.safetensors).")
    folder = ws.folder / "weights"
    shutil.rmtree(folder, ignore_errors=True)  # one file at a time: the newest
    folder.mkdir(parents=True)
    ws.weights_file = Path(shutil.copyfile(path, folder / name))
    return {ui.settings["weights"]: gr.Dropdown(weights_choices(ctx, ws, model), value=YOUR_FILE)}


def with_weights_file(ws, settings: dict) -> dict:
    """The form's settings with "your file" as the path of the session's uploaded weights. A path typed into the
    API is refused: a visitor must not make the server read its own files."""
    weights = settings.get("weights")
    if weights == YOUR_FILE:
        if ws.weights_file is None or not ws.weights_file.is_file():
            raise UserError("Upload a weights file first (Train tab, under Weights), or choose pretrained or scratch.")
        return dict(settings, weights=str(ws.weights_file))
    if weights not in (None, "", "pretrained", "scratch"):
        raise UserError(f"Weights: choose pretrained, scratch or '{YOUR_FILE}' (after uploading one on the Train tab); "
                        "files on the server are not read.")
    return settings


def show_plan(ctx: Context, ui: TrainUI, model, weights, strategy, img_size, augment, key=None) -> dict:
    """The dataset the next run trains on, and warnings when these settings predict a poor result on it."""
    dataset = ctx.workspace(key).dataset_or_builtin()
    found = advice.poor_run_warnings(dataset, weights, strategy, img_size, augment,
                                     f"**{built_in_model(ctx.offline) or 'a pretrained model'}**")
    text = advice.training_on(dataset)
    if found:
        text += "\n\n**Likely a poor run:**\n" + "\n".join(f"- {line}" for line in found)
    return {ui.plan: text}


def show_runs(ctx: Context, ui: TrainUI, key=None) -> dict:
    """This session's trainings side by side, and which one the Classify tab uses."""
    return {ui.runs: runs_markdown(ctx.workspace(key))}


def on_cpu(ctx: Context) -> bool:
    """Whether training runs on a CPU here (where a model that wants a GPU would crawl)."""
    return not (torch.cuda.is_available() or ctx.place.zero_gpu)


def model_choices(offline: bool, on_cpu: bool) -> list[tuple[str, str]]:
    """The catalog as (label, name) choices: name, size, and whether its weights are here or it wants a GPU."""
    return [(entry.label(offline, on_cpu), entry.name) for entry in models.catalog(offline)]


def model_note(name, weights, offline: bool, on_cpu: bool) -> str:
    """What a person should know before training this model here, and what to pick instead ("" when nothing)."""
    if not isinstance(name, str) or not name.strip():
        return ""
    name = name.strip()
    entry = models.catalog_entry(name) or models.CatalogEntry(name, 0.0, "")
    built_in = built_in_model(offline)
    instead = f"**{built_in}** (ImageNet weights built in, quick on a CPU)" if built_in else "a smaller model"
    if weights == "pretrained" and not pretrained_available(name, offline):
        return (f"**{name}** has no pretrained weights here: the Hugging Face Hub is offline, and only the "
                f"EfficientNet-Lite weights are built in. It trains from random weights (*scratch*); pick {instead} "
                "to start from ImageNet features.")
    if on_cpu and not entry.cpu:
        return (f"**{name}** needs a GPU: this machine has none, and training it on the CPU would take very long. "
                f"Pick {instead}, or run Snapfit on a machine with a GPU.")
    return ""


def final_metrics(model_dir: str) -> str:
    """The saved model's validation results as Markdown: overall, then one row per class."""
    m = read_metrics(model_dir)
    if not m:
        return ""
    if m.get("multi_label"):
        return multi_label_metrics(m)
    rows = "\n".join(f"| {name} | {'n/a' if acc is None else f'{acc:.1%}'} |" for name, acc in m["per_class_accuracy"].items())
    return (f"**Saved model** (epoch {m['best_epoch']}): validation accuracy **{m['val_accuracy']:.1%}**, "
            f"loss {m['val_loss']:.3f}, on {m['num_val']} images; trained on {m['num_train']} in {m['seconds']:.0f} s. "
            f"Weights: {m['weights']}\n\n| class | accuracy |\n|---|---|\n{rows}")


def multi_label_metrics(m: dict) -> str:
    """A multi-label model's validation results: mAP and F1 at its thresholds, then one row per label."""
    summary = m.get("multilabel") or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "\n".join(f"| {r['name']} | {fmt(r['ap'])} | {fmt(r['f1'])} | {r['threshold']:.2f} | {r['support']} |"
                     for r in summary.get("per_label", []))
    f1 = f", micro F1 {fmt(summary.get('micro_f1'))}, macro F1 {fmt(summary.get('macro_f1'))}" if summary else ""
    return (f"**Saved model** (epoch {m['best_epoch']}, multi-label): validation mAP **{m['val_map']:.3f}**{f1}, loss "
            f"{m['val_loss']:.3f}, on {m['num_val']} images; trained on {m['num_train']} in {m['seconds']:.0f} s. "
            f"Weights: {m['weights']}\n\n| label | AP | F1 | threshold | images |\n|---|---|---|---|---|\n{rows}")
