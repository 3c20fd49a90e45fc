"""The Data tab's handlers: load a dataset (built-in, Hub, folder, .zip) and show what it holds and what looks wrong;
train a first model on it (the quick recipe, as an ordinary training job of the session) and follow it."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from demo import actions, data_report, folder_upload, plots
from demo.context import Context, user_errors
from demo.notice import Notice
from demo.progress import TrainingProgress
from demo.workspace import Workspace, decoded_key
from engine import data as data_lib
from engine.errors import UserError
from engine.events import metrics_score, saved_score
from engine.export import read_metrics
from engine.train import Decoded, TrainConfig, preflight

PREVIEW_IMAGES = 96  # about this many thumbnails in the gallery (at least one per class), at most 4 per class
PREVIEW_PER_CLASS = 4
THUMBNAIL = 128
DEFAULT_MAX_PER_CLASS = 100  # a free Space should not download a 100 GB dataset to train for five minutes
# Small, public image-classification datasets on the Hub (id: what it is), offered in the dataset box.
SUGGESTED = {
    "AI-Lab-Makerere/beans": "bean leaf diseases, 3 classes",
    "uoft-cs/cifar10": "CIFAR-10, 10 classes of 32 px photos",
    "zalando-datasets/fashion_mnist": "Fashion-MNIST, 10 classes of clothing",
    "ylecun/mnist": "handwritten digits",
    "microsoft/cats_vs_dogs": "cats and dogs photos",
    "ethz/food101": "Food-101, 101 dishes",
}
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
PROGRESS = gr.Progress()  # the marker Gradio looks for; each call gets its own tracker in its place
FIRST_RECIPE = "quick"  # engine.train.RECIPES: seconds for a few hundred images on a CPU
FIRST_LABEL = "quick (first model)"  # how the Train tab's table of runs names it
FIRST_PROMPT = ("**Train a first model now**: a new classifier head on ImageNet features of these images (the *quick* "
                "recipe, weights built in). Seconds for a few hundred images, about a minute for 2,000 on a laptop CPU.")
STREAM_INTERVAL = 0.5  # seconds between updates of the first model's status


@dataclass
class DataUI:
    """The Data tab's components that handlers read or change."""

    key: gr.State
    summary: gr.Markdown
    warnings: gr.Markdown
    counts: gr.BarPlot
    gallery: gr.Gallery
    folder: gr.UploadButton
    first_status: gr.Markdown
    first_stop: gr.Button
    best: gr.Button  # "fine-tune with the best recipe": the page wires it to the Train tab
    notice: Notice  # beside the sources: why a load did not happen

    @property
    def dataset_outputs(self) -> list:
        """What loading a dataset updates (the order is the load APIs' output)."""
        return [self.key, self.summary, self.warnings, self.counts, self.gallery]

    @property
    def first_outputs(self) -> list:
        """What following the first model updates."""
        return [self.key, self.first_status, self.first_stop, self.best]


def first_model_config(ctx: Context) -> TrainConfig:
    """The first model's run (the quick recipe as this place offers it). A dataset is decoded for it right after
    loading, which finds unreadable and duplicated images and lets the first model start at once."""
    return TrainConfig(**ctx.recipe(FIRST_RECIPE))


@user_errors
def load_data(ctx: Context, ui: DataUI, source: str, key=None, progress=PROGRESS) -> dict:
    """Load a built-in dataset (builtin:shapes, builtin:shapes-multi) or a Hub dataset id (owner/name) with default options."""
    return load_hub(ctx, ui, source, DEFAULT_MAX_PER_CLASS, "", "", "", "", key, progress)


@user_errors
def load_hub(ctx: Context, ui: DataUI, dataset_id: str, max_per_class: float, config: str, split: str, image_column: str,
             label_column: str, key=None, progress=PROGRESS) -> dict:
    """Load a Hub dataset (owner/name), at most max_per_class images per class; empty options: automatic."""
    ws = ctx.workspace(key)
    source = resolve(dataset_id)
    if source == data_lib.BUILTIN:
        return show(ctx, ui, ws, data_lib.load_builtin(), progress)
    if source == data_lib.BUILTIN_MULTI:
        return show(ctx, ui, ws, data_lib.load_builtin_multi(), progress)
    if not max_per_class or max_per_class < 2:
        raise UserError("At most how many images per class? Give a number of at least 2.")
    dataset = data_lib.load(source, config=_opt(config), split=_opt(split), image_column=_opt(image_column),
                            label_column=_opt(label_column), max_per_class=int(max_per_class),
                            progress=reporter(progress, "Reading the dataset"))
    return show(ctx, ui, ws, dataset, progress)


@user_errors
def load_folder(ctx: Context, ui: DataUI, files, paths: str, key=None, progress=PROGRESS) -> dict:
    """Load an uploaded folder: its files, and a JSON list of their paths inside it (cats/1.png, ...), same order."""
    ws = ctx.workspace(key)
    try:
        root = folder_upload.rebuild(files, paths, actions.uploads(ws), progress=reporter(progress, "Receiving the folder"))
        return show(ctx, ui, ws, data_lib.load_folder(root, progress=reporter(progress, "Checking the images")), progress)
    finally:
        actions.tidy_uploads(ctx, ws)


@user_errors
def load_zip(ctx: Context, ui: DataUI, path, key=None, progress=PROGRESS) -> dict:
    """Load an uploaded .zip holding one folder per class."""
    if not path:
        raise UserError("Choose a .zip file first.")
    ws = ctx.workspace(key)
    try:
        dest = actions.uploads(ws) / f"zip-{uuid.uuid4().hex[:8]}"
        return show(ctx, ui, ws, data_lib.load_zip(Path(path), dest, progress=reporter(progress, "Checking the images")),
                    progress)
    finally:
        actions.tidy_uploads(ctx, ws)


def show(ctx: Context, ui: DataUI, ws: Workspace, dataset: data_lib.LabelledImages, progress) -> dict:
    """Make `dataset` the session's, decode it for the first model, and show it."""
    decoded, problem = actions.use_dataset(ctx, ws, dataset, first_model_config(ctx), reporter(progress, "Decoding"))
    return {ui.key: ws.key, **render(ui, dataset, decoded, problem)}


def show_workspace(ctx: Context, ui: DataUI, ws: Workspace) -> dict:
    """The tab for a session's dataset (page load): the built-in one when none was chosen."""
    decoded = ws.decode_cache.get(decoded_key(first_model_config(ctx)))
    return render(ui, ws.dataset_or_builtin(), decoded)


def render(ui: DataUI, dataset: data_lib.LabelledImages, decoded: Decoded | None = None, problem: str | None = None) -> dict:
    """Summary with split sizes, warnings, class counts and preview for a dataset (and its decoded form)."""
    warnings = data_report.warnings_markdown(dataset, decoded)
    if problem:
        warnings = f"**Not ready to train:** {problem}\n\n{warnings}"
    return {ui.summary: data_report.summary(dataset, decoded), ui.warnings: warnings,
            ui.counts: plots.class_counts(dataset.counts()), ui.gallery: preview(dataset)}


def first_prompt(ctx: Context, ui: DataUI, key=None) -> dict:
    """A new dataset: the offer of its own first model, not the last one's result. A load that did not happen
    (its notice says why) leaves the dataset, and so its first model, as they were."""
    if ctx.workspace(key).first_model_job is not None:
        return {ui.first_status: gr.skip(), ui.first_stop: gr.skip(), ui.best: gr.skip()}
    return {ui.first_status: FIRST_PROMPT, ui.first_stop: gr.Button(visible=False), ui.best: gr.Button(visible=False)}


@user_errors(notice="first_status")
def first_model(ctx: Context, ui: DataUI, key=None):
    """Train the quick recipe on this session's dataset in the background (or re-attach to it), stream its
    progress, and make its model the session's."""
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    if job is not None and not job.finished and job.id != ws.first_model_job:
        raise UserError("A training run of this session is going already (Train tab): wait for it to end, or stop "
                        "it there, then train a first model.")
    if job is None or job.finished:
        cfg = ctx.place.check(preflight(first_model_config(ctx)))
        job = actions.start_training(ctx, ws, cfg, FIRST_LABEL)
        ws.first_model_job = job.id
    yield from stream_first(ctx, ui, ws.key, job)


def stop_first(ctx: Context, ui: DataUI, key=None) -> dict:
    ws = ctx.workspace(key)
    job = ctx.jobs.latest(ws.key, "train")
    if job is not None and job.id == ws.first_model_job:
        ctx.jobs.stop(job.id, ws.key)
    return {ui.first_stop: gr.Button(interactive=False)}


def reattach_first(ctx: Context, ui: DataUI, key=None):
    """After a reload: the session's first model, live if it is still training."""
    ws = ctx.workspace(key)
    job = ctx.jobs.get(ws.first_model_job, ws.key)
    if job is None:
        yield {ui.key: ws.key, **first_prompt(ctx, ui, ws.key)}
        return
    yield from stream_first(ctx, ui, ws.key, job)


def stream_first(ctx: Context, ui: DataUI, owner: str, job):
    """Updates of the first model's status, Stop button and "best recipe" button until its job ends."""
    progress = TrainingProgress()
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            progress.add(event)
        done = job.finished
        yield {ui.key: owner, ui.first_status: first_status_text(ctx, job, progress),
               ui.first_stop: gr.Button(visible=not done, interactive=not done),
               ui.best: gr.Button(visible=done and progress.saved)}


def first_status_text(ctx: Context, job, progress: TrainingProgress) -> str:
    if job.status == "queued":
        return f"Waiting for a free training slot: position {ctx.jobs.queue_position(job)} in the queue."
    if not job.finished:
        if progress.last_step is None:  # decoding, loading the weights, embedding the images once
            doing = progress.log[-1].rstrip(".") if progress.log else "Preparing"
            return f"Training a first model: {doing}… ({job.elapsed:.0f} s)"
        return f"Training a first model: {progress.status(job, 0)}"
    if not progress.saved:
        return (f"The first model failed: {job.error}" if job.status == "failed"
                else "Stopped before the first epoch ended: no model was saved.")
    if job.status != "done":
        return progress.status(job, 0)  # stopped, or failed after saving its best epoch: says which, and that it is in use
    m = read_metrics(progress.final.model_dir)
    hp = m.get("hyperparameters", {})
    score, metric = metrics_score(m)
    return (f"**First model ready: {saved_score(score or 0.0, metric)}** on {m.get('num_val', 0)} "
            f"held-out images, after {job.elapsed:.0f} s ({hp.get('model', '?')}: a new head on its ImageNet features "
            f"at {hp.get('img_size', '?')} px). It is in use on the **Classify** tab now.\n\n"
            "For a better model, fine-tune the whole network with the **best** recipe (minutes on a CPU): the button "
            "below opens the Train tab set up for it, and lists both runs side by side.")


def resolve(text: str) -> str:
    """The engine source for what was typed: the built-in set, or `hub:owner/name`. Never a server path: a
    session must not read the server's own files."""
    text = (text or "").strip()
    if text in (data_lib.BUILTIN, "builtin"):
        return data_lib.BUILTIN
    if text == data_lib.BUILTIN_MULTI:
        return data_lib.BUILTIN_MULTI
    name = text.removeprefix("hub:")
    if not name:
        raise UserError("Type a Hub dataset id (owner/name), or choose one of the suggestions.")
    if not HUB_ID.fullmatch(name) or name.startswith(".") or ".." in name:
        raise UserError(f"'{text}' is not a Hub dataset id: type owner/name, for example {next(iter(SUGGESTED))}.")
    return "hub:" + name


def _opt(text: str | None) -> str | None:
    return (text or "").strip() or None


def reporter(progress: gr.Progress, desc: str):
    """The engine's progress callback, progress(done, total or None, stage), as a Gradio progress bar."""
    def report(done: int, total: int | None = None, stage: str | None = None) -> None:
        progress((done, total), desc=(stage or desc).capitalize(), unit="images")
    return report


def preview(dataset: data_lib.LabelledImages) -> list:
    """A few thumbnails per class with their labels; fewer per class when there are many classes."""
    per_class = max(1, min(PREVIEW_PER_CLASS, PREVIEW_IMAGES // max(1, len(dataset.class_names))))
    try:
        return data_lib.preview(dataset, per_class=per_class, size=THUMBNAIL)
    except UserError:  # none of the picks could be read: the warnings say which
        return []
