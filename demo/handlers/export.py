"""The Export tab's handlers: the session's model as a .zip, as ONNX, or pushed to a Hub model repo.

The Hub token is only handed to engine.push for the one request: it is never stored in the workspace, written to
disk, logged, or part of what the page gets back.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo import actions
from demo.compute import compute
from demo.context import Context, user_errors
from demo.handlers.classify import model_in_use
from demo.notice import Notice
from engine import push as push_lib
from engine.export import to_onnx


@dataclass
class ExportUI:
    """The Export tab's components that handlers read or change."""

    current: gr.Markdown
    download: gr.DownloadButton
    onnx_file: gr.File
    pushed: gr.Markdown
    notice: Notice  # under the ONNX button


def show(ctx: Context, ui: ExportUI, key=None) -> dict:
    """The session's model and its download, whenever the tab is opened."""
    ws = ctx.workspace(key)
    if ws.model_dir is None:
        return {ui.current: gr.skip(), ui.download: gr.DownloadButton(visible=False)}
    return {ui.current: model_in_use(ws), ui.download: gr.DownloadButton(value=str(actions.model_zip(ws)), visible=True)}


@user_errors
def export_onnx(ctx: Context, ui: ExportUI, key=None) -> dict:
    """Write the session's model as ONNX and offer it for download."""
    model_dir = actions.model_dir_of(ctx.workspace(key))
    onnx = compute.run(to_onnx, model_dir, model_dir.parent / f"{model_dir.name}.onnx")
    return {ui.onnx_file: gr.File(value=str(onnx), visible=True)}


@user_errors(notice="pushed")
def push(ctx: Context, ui: ExportUI, repo_id: str, hub_token: str, make_private: bool = True, key=None) -> dict:
    """Push the session's model to a Hub model repo (the token is used for this request only)."""
    model_dir = actions.model_dir_of(ctx.workspace(key))
    url = push_lib.push(model_dir, repo_id, token=hub_token, private=bool(make_private))
    return {ui.pushed: f"Pushed to [{url}]({url}) ({'private' if make_private else 'public'}). Load it anywhere with "
                       f"`timm.create_model(\"hf-hub:{push_lib.check_repo_id(repo_id)}\", pretrained=True)`."}

