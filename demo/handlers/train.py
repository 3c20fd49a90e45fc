"""The Train tab's handlers: start a training job (or re-attach to the running one) and stream its progress, stop
it, set a recipe, preview the augmentation, say what to know about a model, list the session's runs."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import torch

from demo import actions, plots
from demo.compute import compute
from demo.context import Context, user_errors
from demo.progress import TrainingProgress
from demo.train_form import config_from, form_values, recipe_of
from engine import data as data_lib
from engine import models
from engine.errors import UserError
from engine.export import read_metrics

STREAM_INTERVAL = 0.5  # seconds between page updates: enough to look live, cheap for the server


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
    results: gr.Markdown
    download: gr.DownloadButton

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
        cfg = ctx.place.check(config_from(settings))
        job = actions.start_training(ctx, ws, cfg, recipe_of(ctx, cfg) or cfg.resolved_strategy())
        ws.train_settings = dict(settings)
    yield from stream(ctx, ui, ws.key, job)


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
def apply_recipe(ctx: Context, ui: TrainUI, name) -> dict:
    """Every Train setting for a named recipe (quick, best, scratch): its values, the rest at their defaults."""
    values = form_values(ctx.recipe(name))
    return {control: values[field] for field, control in ui.settings.items()}


def choose_recipe(ctx: Context, ui: TrainUI, name: str) -> dict:
    """The recipe radio and every setting for `name`, as a page sets them itself (no `input` event follows)."""
    return {ui.recipe: name, **apply_recipe(ctx, ui, name)}


def restore_settings(ctx: Context, ui: TrainUI, key=None) -> dict:
    """After a reload: the settings of the run being re-attached (and its recipe, if it was one), not the defaults."""
    saved = ctx.workspace(key).train_settings or {}
    try:
        name = recipe_of(ctx, config_from(saved)) if saved else None
    except UserError:
        name = None
    return {ui.recipe: name or gr.skip(), **{control: saved.get(field, gr.skip()) for field, control in ui.settings.items()}}


def show_note(ctx: Context, ui: TrainUI, model, weights) -> dict:
    text = model_note(model, weights, ctx.offline, on_cpu(ctx))
    return {ui.note: gr.Markdown(value=text, visible=bool(text))}


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


def final_metrics(model_dir: str) -> str:
    """The saved model's validation results as Markdown: overall, then one row per class."""
    m = read_metrics(model_dir)
    if not m:
        return ""
    rows = "\n".join(f"| {name} | {'n/a' if acc is None else f'{acc:.1%}'} |" for name, acc in m["per_class_accuracy"].items())
    return (f"**Saved model** (epoch {m['best_epoch']}): validation accuracy **{m['val_accuracy']:.1%}**, "
            f"loss {m['val_loss']:.3f}, on {m['num_val']} images; trained on {m['num_train']} in {m['seconds']:.0f} s. "
            f"Weights: {m['weights']}\n\n| class | accuracy |\n|---|---|\n{rows}")
