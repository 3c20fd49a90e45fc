"""Export tab: take the session's model anywhere: its folder as a .zip, an ONNX file, or a Hub model repo.

The Hub token is an input like any other, but it is only handed to engine.push for the one request (see
demo/handlers/export.py). Layout and wiring only.
"""
from __future__ import annotations

import gradio as gr

from demo.context import Context
from demo.handlers import export as h
from demo.handlers.export import ExportUI
from demo.notice import notice
from demo.wiring import bind


def build(ctx: Context, key: gr.State, tab: gr.Tab) -> ExportUI:
    if ctx.place.on_space:
        gr.Markdown(ctx.place.storage_note(), elem_id="space-note")
    current = gr.Markdown("No model yet: train one on the **Train** tab (or load one on **Classify**).", elem_id="export-model")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Download\nThe model folder (`model.safetensors`, `config.json`, `metrics.json`) loads in "
                        "plain timm: `timm.create_model(\"local-dir:FOLDER\", pretrained=True)`, and back into **Classify**.")
            download = gr.DownloadButton("Download the model folder (.zip)", visible=False)
            onnx_btn = gr.Button("Export to ONNX")
            onnx_notice = notice("onnx-notice")
            onnx_file = gr.File(label="ONNX model (dynamic batch; class names and preprocessing in its metadata)",
                                visible=False, elem_id="onnx-file")
        with gr.Column():
            gr.Markdown("### Push to the Hugging Face Hub\nUploads the weights, config and a model card (metrics, "
                        "per-class table, confusion matrix, LR-finder plot, hyper-parameters, how to load it)."
                        + ("\n\n*Offline here: pushing needs the Hub.*" if ctx.offline else ""))
            repo = gr.Textbox(label="Repo id", placeholder="your-name/my-classifier", elem_id="push-repo")
            token = gr.Textbox(label="Hub token (write access)", type="password", elem_id="push-token",
                               info="Used for this push only: never stored, logged or shown again.")
            private = gr.Checkbox(True, label="Private repo")
            push_btn = gr.Button("Push to the Hub", variant="primary")
            pushed = gr.Markdown("", elem_id="push-result")
    ui = ExportUI(current=current, download=download, onnx_file=onnx_file, pushed=pushed, notice=onnx_notice)

    tab.select(bind(h.show, ctx, ui), [key], [current, download], api_visibility="private")
    onnx_btn.click(bind(h.export_onnx, ctx, ui), [key], [onnx_file, onnx_notice], api_name="export_onnx")
    push_btn.click(bind(h.push, ctx, ui), [repo, token, private, key], [pushed], api_name="push_to_hub")
    return ui
