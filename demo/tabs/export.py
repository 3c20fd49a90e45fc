"""Export tab: take the session's model anywhere: its folder as a .zip, an ONNX file, or a Hub model repo.

The Hub token is an input like any other, but it is only handed to engine.push for the one request: it is
never stored in the workspace, written to disk, logged, or part of what the page gets back.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo.compute import compute
from demo.context import Context, user_errors
from engine import push as push_lib
from engine.errors import UserError
from engine.export import read_config, read_metrics, to_onnx, zip_model_folder


def build(ctx: Context, key: gr.State, tab: gr.Tab):
    if ctx.place.on_space:
        gr.Markdown(ctx.place.storage_note(), elem_id="space-note")
    current = gr.Markdown("No model yet: train one on the **Train** tab (or load one on **Classify**).", elem_id="export-model")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Download\nThe model folder (`model.safetensors`, `config.json`, `metrics.json`) loads in "
                        "plain timm: `timm.create_model(\"local-dir:FOLDER\", pretrained=True)`, and back into **Classify**.")
            download = gr.DownloadButton("Download the model folder (.zip)", visible=False)
            onnx_btn = gr.Button("Export to ONNX")
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

    def show(key=None):
        """The session's model and its download, whenever the tab is opened."""
        ws = ctx.workspace(key)
        if ws.model_dir is None:
            return gr.Markdown(), gr.DownloadButton(visible=False)
        zip_path = Path(f"{ws.model_dir}.zip")
        if not zip_path.exists():  # a model loaded on Classify has no zip yet
            zip_model_folder(ws.model_dir, ws.model_dir)
        return describe(ws.model_dir), gr.DownloadButton(value=str(zip_path), visible=True)

    @user_errors
    def export_onnx(key=None):
        """Write the session's model as ONNX and offer it for download."""
        model_dir = _model_dir(ctx, key)
        return gr.File(value=str(compute.run(to_onnx, model_dir, model_dir.parent / f"{model_dir.name}.onnx")), visible=True)

    @user_errors
    def push(repo_id: str, hub_token: str, make_private: bool = True, key=None):
        """Push the session's model to a Hub model repo (the token is used for this request only)."""
        model_dir = _model_dir(ctx, key)
        url = push_lib.push(model_dir, repo_id, token=hub_token, private=bool(make_private))
        return (f"Pushed to [{url}]({url}) ({'private' if make_private else 'public'}). Load it anywhere with "
                f"`timm.create_model(\"hf-hub:{push_lib.check_repo_id(repo_id)}\", pretrained=True)`.")

    tab.select(show, [key], [current, download], api_visibility="private")
    onnx_btn.click(export_onnx, [key], [onnx_file], api_name="export_onnx")
    push_btn.click(push, [repo, token, private, key], [pushed], api_name="push_to_hub")


def _model_dir(ctx: Context, key) -> Path:
    model_dir = ctx.workspace(key).model_dir
    if model_dir is None:
        raise UserError("No model to export yet: train one on the Train tab, or load one on the Classify tab.")
    return Path(model_dir)


def describe(model_dir) -> str:
    m = read_metrics(model_dir)
    if "val_accuracy" not in m:  # a folder uploaded without Snapfit's metrics
        return f"Model: `{read_config(model_dir).get('architecture')}` (uploaded)."
    return (f"Model: `{m['hyperparameters']['model']}` trained on {m['num_train']} images, validation accuracy "
            f"**{m['val_accuracy']:.1%}** (epoch {m['best_epoch']}).")
