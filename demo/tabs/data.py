"""Data tab: pick a source (built-in, a Hub dataset, a folder from disk, a .zip), then see a preview per class,
the class counts, the split sizes and what looks wrong (skipped or corrupt files, tiny or imbalanced classes).

Each load runs with a progress bar fed by the engine's own progress callback, and lands in the session's
workspace only: another browser session never sees it. Uploads are unpacked in the workspace's folder;
older uploads are removed once a new dataset has replaced them.

Right after a load, "Train a first model now" runs the quick recipe (a new head on the built-in ImageNet
EfficientNet-Lite0's features) as an ordinary training job of the session (demo/tabs/train.py): its model is the
session's at once, and the Train tab lists it beside later runs.
"""
from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import gradio as gr

from demo import data_report, folder_upload, plots
from demo.context import Context, user_errors
from demo.tabs.train import STREAM_INTERVAL, View, run_training
from demo.workspace import Workspace, prepared_key
from engine import data as data_lib
from engine.errors import UserError
from engine.export import read_metrics
from engine.train import Prepared, TrainConfig, preflight

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
CONCURRENCY = dict(concurrency_limit=2, concurrency_id="data")  # two loads at once; training has its own slots
FIRST_RECIPE = "quick"  # engine.train.RECIPES: seconds for a few hundred images on a CPU
FIRST_LABEL = "quick (first model)"  # how the Train tab's table of runs names it
FIRST_PROMPT = ("**Train a first model now**: a new classifier head on ImageNet features of these images (the *quick* "
                "recipe, weights built in). Seconds for a few hundred images, about a minute for 2,000 on a laptop CPU.")


def build(ctx: Context, key: gr.State):
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tab("Built-in"):
                gr.Markdown("Six classes of generated shapes (900 images): no download, works offline.")
                builtin_btn = gr.Button("Use the built-in shapes dataset", variant="primary")
                source = gr.Textbox(value=data_lib.BUILTIN, visible=False)
            with gr.Tab("Hub dataset"):
                hub_id = gr.Dropdown([(f"{k} ({v})", k) for k, v in SUGGESTED.items()], value=None,
                                     allow_custom_value=True, label="Hub dataset id", elem_id="hub-id",
                                     info="Type owner/name, or pick a suggestion" + (
                                         " (offline here: only a dataset cached on this machine loads)" if ctx.offline else ""))
                max_per_class = gr.Number(DEFAULT_MAX_PER_CLASS, precision=0, minimum=2, label="At most this many images per class",
                                          info="Keeps big datasets quick to load; raise it for better models")
                with gr.Accordion("Options (all optional)", open=False):
                    config = gr.Textbox(label="Config", placeholder="the dataset's default")
                    split = gr.Textbox(label="Split", placeholder="all: its own train/validation splits are used")
                    image_column = gr.Textbox(label="Image column", placeholder="found automatically")
                    label_column = gr.Textbox(label="Label column", placeholder="found automatically")
                hub_btn = gr.Button("Load from the Hub", variant="primary")
            with gr.Tab("Folder"):
                gr.HTML("<p>Choose a folder on your disk holding one subfolder per class (for example "
                        "<code>pets/cats/…</code>, <code>pets/dogs/…</code>), or <code>train/</code> and "
                        "<code>validation/</code> folders of class subfolders. Click the box to pick it.</p>",
                        js_on_load=folder_upload.INSTALL_JS)
                folder = gr.File(label="Folder of class subfolders (click to choose)", file_count="directory", type="filepath",
                                 elem_id="data-folder", height=140)
                relpaths = gr.Textbox(visible=False)  # filled in the browser: the files' paths inside the folder
            with gr.Tab(".zip"):
                zip_file = gr.File(label="Dataset .zip (one sub-folder per class)", file_types=[".zip"],
                                   type="filepath", elem_id="data-zip", height=140)
        with gr.Column(scale=2):
            summary = gr.Markdown("No dataset loaded yet.", elem_id="data-summary")
            warnings = gr.Markdown("", elem_id="data-warnings")
            with gr.Group():
                first_btn = gr.Button("Train a first model now (seconds)", variant="primary", elem_id="first-model-btn")
                first_status = gr.Markdown(FIRST_PROMPT, elem_id="first-model-status", padding=True)
                with gr.Row():
                    first_stop = gr.Button("Stop the first model", variant="stop", size="sm", visible=False)
                    best_btn = gr.Button("Fine-tune the whole network: open Train with the best recipe", size="sm",
                                         visible=False, elem_id="best-recipe-btn")
            # y_lim starts the bars at 0: Gradio's native plots fit the y axis to the data, so equal class counts
            # (the built-in set has 150 of each) would otherwise draw zero-height bars.
            counts = gr.BarPlot(x="class", y="images", title="Images per class", height=220, sort=None, y_lim=[0, None])
    gallery = gr.Gallery(label="Preview", columns=8, height=300, object_fit="contain", elem_id="data-preview")
    outputs = [key, summary, warnings, counts, gallery]
    first_outputs = [key, first_status, first_stop, best_btn]

    def show(ws: Workspace, dataset: data_lib.LabelledImages, progress):
        """Make `dataset` the session's, decode it for the Train tab's starting recipe (which finds unreadable and
        duplicated images, and saves that run the decoding), and render it."""
        ctx.place.check_dataset(len(dataset))  # on a free Space: a cap on images
        ws.set_dataset(dataset)
        ws.first_model_job = None  # a first model of the previous dataset is not re-attached after a reload
        try:
            prepared, problem = ws.decode_now(TrainConfig(**ctx.recipe()), progress=reporter(progress, "Decoding")), None
        except UserError as exc:  # loaded, but not trainable as it is (say, no class has 2 images): say why
            prepared, problem = None, str(exc)
        return (ws.key, *render(dataset, prepared, problem))

    @user_errors
    def load_data(source: str, key=None, progress=PROGRESS):
        """Load the built-in dataset (builtin:shapes) or a Hub dataset id (owner/name) with default options."""
        return load_hub(source, DEFAULT_MAX_PER_CLASS, "", "", "", "", key, progress)

    @user_errors
    def load_hub(dataset_id: str, max_per_class: float, config: str, split: str, image_column: str,
                 label_column: str, key=None, progress=PROGRESS):
        """Load a Hub dataset (owner/name), at most max_per_class images per class; empty options: automatic."""
        ws = ctx.workspace(key)
        source = resolve(dataset_id)
        if source == data_lib.BUILTIN:
            return show(ws, data_lib.load_builtin(), progress)
        if not max_per_class or max_per_class < 2:
            raise UserError("At most how many images per class? Give a number of at least 2.")
        dataset = data_lib.load(source, config=_opt(config), split=_opt(split), image_column=_opt(image_column),
                                label_column=_opt(label_column), max_per_class=int(max_per_class),
                                progress=reporter(progress, "Reading the dataset"))
        return show(ws, dataset, progress)

    @user_errors
    def load_folder(files, paths: str, key=None, progress=PROGRESS):
        """Load an uploaded folder: its files, and a JSON list of their paths inside it (cats/1.png, ...), same order."""
        ws = ctx.workspace(key)
        try:
            root = folder_upload.rebuild(files, paths, uploads(ws), progress=reporter(progress, "Receiving the folder"))
            return show(ws, data_lib.load_folder(root, progress=reporter(progress, "Checking the images")), progress)
        finally:
            tidy(ws)

    @user_errors
    def load_zip(path, key=None, progress=PROGRESS):
        """Load an uploaded .zip holding one folder per class."""
        if not path:
            raise UserError("Choose a .zip file first.")
        ws = ctx.workspace(key)
        try:
            dest = uploads(ws) / f"zip-{uuid.uuid4().hex[:8]}"
            return show(ws, data_lib.load_zip(Path(path), dest, progress=reporter(progress, "Checking the images")), progress)
        finally:
            tidy(ws)

    def tidy(ws: Workspace) -> None:
        """Remove the upload folders the session's dataset no longer uses (older or failed uploads).

        Not while one of its jobs runs: a starting run may still be reading the previous dataset's files.
        """
        job = ctx.jobs.latest(ws.key)
        if job is not None and not job.finished:
            return
        first = ws.dataset.images[0] if ws.dataset is not None and len(ws.dataset) else None  # uploads: all paths
        for folder in uploads(ws).iterdir():
            if not isinstance(first, str) or not Path(first).is_relative_to(folder):
                shutil.rmtree(folder, ignore_errors=True)

    @user_errors
    def first_model(key=None):
        """Train the quick recipe on this session's dataset in the background (or re-attach to it), stream its
        progress, and make its model the session's."""
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is not None and not job.finished and job.id != ws.first_model_job:
            raise UserError("A training run of this session is going already (Train tab): wait for it to end, or stop "
                            "it there, then train a first model.")
        if job is None or job.finished:
            cfg = ctx.place.check(preflight(TrainConfig(**ctx.recipe(FIRST_RECIPE))))
            job = ctx.jobs.submit(ws.key, "train",
                                  lambda token: run_training(ws, cfg, token, ctx.place.zero_gpu, FIRST_LABEL))
            ws.first_model_job = job.id
        yield from stream_first(ctx, ws.key, job)

    def stop_first(key=None):
        ws = ctx.workspace(key)
        job = ctx.jobs.latest(ws.key, "train")
        if job is not None and job.id == ws.first_model_job:
            ctx.jobs.stop(job.id, ws.key)
        return gr.Button(interactive=False)

    def reattach_first(key=None):
        """After a reload: the session's first model, live if it is still training."""
        ws = ctx.workspace(key)
        job = ctx.jobs.get(ws.first_model_job, ws.key)
        if job is None:
            yield ws.key, FIRST_PROMPT, gr.Button(visible=False), gr.Button(visible=False)
            return
        yield from stream_first(ctx, ws.key, job)

    def first_prompt():
        return FIRST_PROMPT, gr.Button(visible=False), gr.Button(visible=False)

    loads = [
        builtin_btn.click(load_data, [source, key], outputs, api_name="load_data", **CONCURRENCY),
        hub_btn.click(load_hub, [hub_id, max_per_class, config, split, image_column, label_column, key], outputs,
                      api_name="load_hub", **CONCURRENCY),
        folder.upload(load_folder, [folder, relpaths, key], outputs, js=folder_upload.UPLOAD_JS, api_name="load_folder",
                      **CONCURRENCY),
        zip_file.upload(load_zip, [zip_file, key], outputs, api_name="load_zip", **CONCURRENCY),
    ]
    # Gradio lists a directory upload by basename, which shows a few look-alike names: the summary says it better.
    loads[2].then(clear, None, folder, api_visibility="private")
    for load in loads:  # a new dataset: its own first model, not the last one's result
        load.success(first_prompt, None, first_outputs[1:], api_visibility="private")
    # Like /train: the handler only follows a job, so it takes no event slot (the job manager limits trainings).
    first_btn.click(first_model, [key], first_outputs, api_name="first_model", api_visibility="undocumented",
                    concurrency_limit=None)
    first_stop.click(stop_first, [key], [first_stop], api_visibility="private")
    return dict(outputs=outputs, first_outputs=first_outputs, reattach_first=reattach_first, best=best_btn)


def stream_first(ctx: Context, owner: str, job):
    """Page updates for the first-model job until it ends: (key, status, Stop button, "best recipe" button)."""
    view = View()
    for events, job in ctx.follow(owner, job, STREAM_INTERVAL):  # noqa: B020 (job: its latest state)
        for event in events:
            view.add(event)
        done = job.finished
        saved = view.final is not None and bool(view.final.model_dir)
        yield (owner, first_status_text(ctx, job, view), gr.Button(visible=not done, interactive=not done),
               gr.Button(visible=done and saved))


def first_status_text(ctx: Context, job, view: View) -> str:
    if job.status == "queued":
        return f"Waiting for a free training slot: position {ctx.jobs.queue_position(job)} in the queue."
    if not job.finished:
        if view.last_step is None:  # decoding, loading the weights, embedding the images once
            doing = view.log[-1].rstrip(".") if view.log else "Preparing"
            return f"Training a first model: {doing}… ({job.elapsed:.0f} s)"
        return f"Training a first model: {view.status(job, 0)}"
    if view.final is None or not view.final.model_dir:
        return (f"The first model failed: {job.error}" if job.status == "failed"
                else "Stopped before the first epoch ended: no model was saved.")
    if job.status != "done":
        return view.status(job, 0)  # stopped, or failed after saving its best epoch: says which, and that it is in use
    m = read_metrics(view.final.model_dir)
    hp = m.get("hyperparameters", {})
    return (f"**First model ready: {m.get('val_accuracy', 0.0):.1%} validation accuracy** on {m.get('num_val', 0)} "
            f"held-out images, after {job.elapsed:.0f} s ({hp.get('model', '?')}: a new head on its ImageNet features "
            f"at {hp.get('img_size', '?')} px). It is in use on the **Classify** tab now.\n\n"
            "For a better model, fine-tune the whole network with the **best** recipe (minutes on a CPU): the button "
            "below opens the Train tab set up for it, and lists both runs side by side.")


def clear():
    return None


def resolve(text: str) -> str:
    """The engine source for what was typed: the built-in set, or `hub:owner/name`. Never a server path: a
    session must not read the server's own files."""
    text = (text or "").strip()
    if text in (data_lib.BUILTIN, "builtin"):
        return data_lib.BUILTIN
    name = text.removeprefix("hub:")
    if not name:
        raise UserError("Type a Hub dataset id (owner/name), or choose one of the suggestions.")
    if not HUB_ID.fullmatch(name) or name.startswith(".") or ".." in name:
        raise UserError(f"'{text}' is not a Hub dataset id: type owner/name, for example {next(iter(SUGGESTED))}.")
    return "hub:" + name


def _opt(text: str | None) -> str | None:
    return (text or "").strip() or None


def uploads(ws: Workspace) -> Path:
    folder = ws.folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def reporter(progress: gr.Progress, desc: str):
    """The engine's progress callback, progress(done, total or None, stage), as a Gradio progress bar."""
    def report(done: int, total: int | None = None, stage: str | None = None) -> None:
        progress((done, total), desc=(stage or desc).capitalize(), unit="images")
    return report


def render(dataset: data_lib.LabelledImages, prepared: Prepared | None = None, problem: str | None = None):
    """Summary with split sizes, warnings, class-count frame and preview for a dataset (and its decoded form)."""
    warnings = data_report.warnings_markdown(dataset, prepared)
    if problem:
        warnings = f"**Not ready to train:** {problem}\n\n{warnings}"
    return data_report.summary(dataset, prepared), warnings, plots.class_counts(dataset.counts()), preview(dataset)


def render_workspace(ctx: Context, ws: Workspace):
    """The Data tab for a session's dataset (page load): the built-in one when none was chosen."""
    prepared = ws.prepared.get(prepared_key(TrainConfig(**ctx.recipe())))
    return render(ws.dataset_or_builtin(), prepared)


def preview(dataset: data_lib.LabelledImages) -> list:
    """A few thumbnails per class with their labels; fewer per class when there are many classes."""
    per_class = max(1, min(PREVIEW_PER_CLASS, PREVIEW_IMAGES // max(1, len(dataset.class_names))))
    try:
        return data_lib.preview(dataset, per_class=per_class, size=THUMBNAIL)
    except UserError:  # none of the picks could be read: the warnings say which
        return []
