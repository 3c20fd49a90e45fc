"""Data tab: pick a dataset (built-in shapes or a zip of class folders), preview it, see class counts."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo import plots
from demo.context import Context, user_errors
from engine import data as data_lib
from engine.errors import UserError

PREVIEW_PER_CLASS = 4


def build(ctx: Context, key: gr.State):
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("Use the built-in shapes dataset, or upload a **.zip** holding one folder per class "
                        "(for example `cats/…`, `dogs/…`).")
            builtin_btn = gr.Button("Use the built-in shapes dataset", variant="primary")
            zip_file = gr.File(label="Dataset .zip (one sub-folder per class)", file_types=[".zip"], type="filepath")
            source = gr.Textbox(value=data_lib.BUILTIN, visible=False)
        with gr.Column(scale=2):
            summary = gr.Markdown("No dataset loaded yet.", elem_id="data-summary")
            # y_lim starts the bars at 0: Gradio's native plots fit the y axis to the data, so equal class counts
            # (the built-in set has 150 of each) would otherwise draw zero-height bars.
            counts = gr.BarPlot(x="class", y="images", title="Images per class", height=220, sort=None, y_lim=[0, None])
    gallery = gr.Gallery(label="Preview", columns=8, height=300, object_fit="contain")
    outputs = [key, summary, counts, gallery]

    @user_errors
    def load_data(source: str, key=None):
        """Load a dataset by name or path (builtin:shapes, a server-side folder or .zip)."""
        ws = ctx.workspace(key)
        ws.set_dataset(data_lib.load(source))
        return (ws.key, *render(ws.dataset))

    @user_errors
    def load_zip(path, key=None):
        if not path:
            raise UserError("Choose a .zip file first.")
        ws = ctx.workspace(key)
        dest = ws.folder / "data" / Path(path).stem
        ws.set_dataset(data_lib.load_zip(Path(path), dest))
        return (ws.key, *render(ws.dataset))

    builtin_btn.click(load_data, [source, key], outputs, api_name="load_data")
    zip_file.upload(load_zip, [zip_file, key], outputs, api_name="load_zip")
    return dict(outputs=outputs, load_data=load_data)


def render(dataset: data_lib.LabelledImages):
    """Summary text, class-count frame and preview images for a dataset."""
    counts = dataset.counts()
    train, val = data_lib.split_dataset(dataset)
    lines = [
        f"**{len(dataset)} images in {len(counts)} classes** from `{Path(dataset.source).name or dataset.source}`",
        f"Split: {len(train)} for training, {len(val)} for validation (stratified, 20 %).",
        "Classes: " + ", ".join(f"{name} ({n})" for name, n in counts.items()),
    ]
    lines += [f"Warning: {w}" for w in dataset.warnings]
    preview, seen = [], {}
    for image, label in zip(dataset.images, dataset.labels):
        if seen.get(label, 0) < PREVIEW_PER_CLASS:
            seen[label] = seen.get(label, 0) + 1
            preview.append((image, dataset.class_names[label]))
    return "\n\n".join(lines), plots.class_counts(counts), preview
