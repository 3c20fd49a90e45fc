"""Data tab: pick a source (built-in, a Hub dataset, a folder from disk, a .zip), then see a preview per class,
the class counts, the split sizes and what looks wrong (skipped or corrupt files, tiny or imbalanced classes).

Each load runs with a progress bar fed by the engine's own progress callback, and lands in the session's
workspace only: another browser session never sees it. Uploads are unpacked in the workspace's folder;
older uploads are removed once a new dataset has replaced them.

Right after a load, "Train a first model now" runs the quick recipe (a new head on the built-in ImageNet
EfficientNet-Lite0's features) as an ordinary training job of the session: its model is the session's at once,
and the Train tab lists it beside later runs. Layout and wiring only: the handlers are in demo/handlers/data.py.
"""
from __future__ import annotations

import gradio as gr

from demo import folder_upload
from demo.context import Context
from demo.handlers import data as h
from demo.handlers.data import DataUI
from demo.notice import notice
from demo.wiring import bind
from engine import data as data_lib

CONCURRENCY = dict(concurrency_limit=2, concurrency_id="data")  # two loads at once; training has its own slots


def build(ctx: Context, key: gr.State) -> DataUI:
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tab("Built-in"):
                gr.Markdown("Six classes of generated shapes (900 images): no download, works offline.")
                builtin_btn = gr.Button("Use the built-in shapes dataset", variant="primary")
                source = gr.Textbox(value=data_lib.BUILTIN, visible=False)
                gr.Markdown("Multi-label: 900 images holding one to three shapes each, labelled with every shape "
                            "they show.")
                builtin_multi_btn = gr.Button("Use the built-in multi-label shapes", elem_id="builtin-multi-btn")
                source_multi = gr.Textbox(value=data_lib.BUILTIN_MULTI, visible=False)
            with gr.Tab("Hub dataset"):
                hub_id = gr.Dropdown([(f"{k} ({v})", k) for k, v in h.SUGGESTED.items()], value=None,
                                     allow_custom_value=True, label="Hub dataset id", elem_id="hub-id",
                                     info="Type owner/name, or pick a suggestion" + (
                                         " (offline here: only a dataset cached on this machine loads)" if ctx.offline else ""))
                max_per_class = gr.Number(h.DEFAULT_MAX_PER_CLASS, precision=0, minimum=2, label="At most this many images per class",
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
                        "<code>validation/</code> folders of class subfolders.</p>",
                        js_on_load=folder_upload.INSTALL_JS)
                # A button, not a drop box: a dropped folder arrives without its subfolder names (STACK.md)
                folder = gr.UploadButton("Choose a folder of class subfolders", file_count="directory", type="filepath",
                                         elem_id="data-folder", variant="primary")
                relpaths = gr.Textbox(visible=False)  # filled in the browser: the files' paths inside the folder
            with gr.Tab(".zip"):
                zip_file = gr.File(label="Dataset .zip (one sub-folder per class)", file_types=[".zip"],
                                   type="filepath", elem_id="data-zip", height=140)
            load_notice = notice("data-notice")
        with gr.Column(scale=2):
            summary = gr.Markdown("No dataset loaded yet.", elem_id="data-summary")
            warnings = gr.Markdown("", elem_id="data-warnings")
            with gr.Group():
                first_btn = gr.Button("Train a first model now (seconds)", variant="primary", elem_id="first-model-btn")
                first_status = gr.Markdown(h.FIRST_PROMPT, elem_id="first-model-status", padding=True)
                with gr.Row():
                    first_stop = gr.Button("Stop the first model", variant="stop", size="sm", visible=False)
                    best_btn = gr.Button("Fine-tune the whole network: open Train with the best recipe", size="sm",
                                         visible=False, elem_id="best-recipe-btn")
            # y_lim starts the bars at 0: Gradio's native plots fit the y axis to the data, so equal class counts
            # (the built-in set has 150 of each) would otherwise draw zero-height bars.
            counts = gr.BarPlot(x="class", y="images", title="Images per class", height=220, sort=None, y_lim=[0, None])
    gallery = gr.Gallery(label="Preview", columns=8, height=300, object_fit="contain", elem_id="data-preview")
    ui = DataUI(key=key, summary=summary, warnings=warnings, counts=counts, gallery=gallery, folder=folder,
                first_status=first_status, first_stop=first_stop, best=best_btn, notice=load_notice)

    shown = [*ui.dataset_outputs, load_notice]
    loads = [
        builtin_btn.click(bind(h.load_data, ctx, ui), [source, key], shown, api_name="load_data", **CONCURRENCY),
        # /load_data takes any source: this button is the same call with the multi-label set
        builtin_multi_btn.click(bind(h.load_data, ctx, ui), [source_multi, key], shown, api_visibility="private",
                                **CONCURRENCY),
        hub_btn.click(bind(h.load_hub, ctx, ui), [hub_id, max_per_class, config, split, image_column, label_column, key],
                      shown, api_name="load_hub", **CONCURRENCY),
        folder.upload(bind(h.load_folder, ctx, ui), [folder, relpaths, key], shown, js=folder_upload.UPLOAD_JS,
                      api_name="load_folder", **CONCURRENCY),
        zip_file.upload(bind(h.load_zip, ctx, ui), [zip_file, key], shown, api_name="load_zip", **CONCURRENCY),
    ]
    prompt = bind(h.first_prompt, ctx, ui)
    for load in loads:  # a new dataset: its own first model, not the last one's result
        load.success(prompt, [key], ui.first_outputs[1:], api_visibility="private")
    # Like /train: the handler only follows a job, so it takes no event slot (the job manager limits trainings).
    first_btn.click(bind(h.first_model, ctx, ui), [key], ui.first_outputs, api_name="first_model",
                    api_visibility="undocumented", concurrency_limit=None)
    first_stop.click(bind(h.stop_first, ctx, ui), [key], [first_stop], api_visibility="private")
    return ui
