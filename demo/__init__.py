"""Snapfit's Gradio UI. It imports the engine and holds no training math.

`build_demo()` assembles six tabs (Data, Train, LR finder, Evaluate, Classify, Export) around one per-session key and one
server-wide job manager. See demo/workspace.py for why the key lives both in gr.State and gr.BrowserState.
"""
from __future__ import annotations

import os

import gradio as gr

from demo import space
from demo.context import Context
from demo.jobs import JobManager
from demo.tabs import classify, data, evaluate, export, lr_finder, train
from demo.workspace import Workspaces
from engine import hub

TITLE = "Snapfit: train an image classifier on your own pictures"
# A fixed key and secret let a reloaded page, or a restarted server, read back the workspace key it stored.
# The value is only a random workspace id, so the secret protects nothing sensitive.
BROWSER_STORAGE_KEY = "snapfit-workspace"
BROWSER_SECRET = os.environ.get("SNAPFIT_BROWSER_SECRET", "snapfit-workspace-key")


def build_demo(offline: bool | None = None, workspaces: Workspaces | None = None, jobs: JobManager | None = None,
               place: space.Place | None = None) -> gr.Blocks:
    ctx = Context(workspaces or Workspaces(), jobs or JobManager.from_env(), hub.is_offline() if offline is None else offline,
                  place or space.detect())
    with gr.Blocks(title="Snapfit") as demo:
        gr.Markdown(f"# {TITLE}")
        if ctx.offline:
            gr.Markdown(f"> **{hub.OFFLINE_MESSAGE}**", elem_id="offline-notice")
        key = gr.State(None)
        browser_key = gr.BrowserState(None, storage_key=BROWSER_STORAGE_KEY, secret=BROWSER_SECRET)
        with gr.Tabs(selected="data") as tabs:
            with gr.Tab("Data", id="data"):
                data_tab = data.build(ctx, key)
            with gr.Tab("Train", id="train"):
                train_tab = train.build(ctx, key)
            with gr.Tab("LR finder", id="lr_finder"):
                lr_tab = lr_finder.build(ctx, key, train_tab["settings"])
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate.build(ctx, key)
            with gr.Tab("Classify", id="classify") as classify_tab:
                classify.build(ctx, key, classify_tab)
            with gr.Tab("Export", id="export") as export_tab:
                export.build(ctx, key, export_tab)

        def use_lr(choice):
            if not choice:
                return gr.Number(), gr.Tabs()
            return gr.Number(value=float(choice)), gr.Tabs(selected="train")

        lr_tab["use"].click(use_lr, [lr_tab["choice"]], [train_tab["lr"], tabs], api_name="use_lr")

        def restore(stored):
            """On page load: find this browser's workspace again (or start one) and show its dataset."""
            ws = ctx.workspace(stored if ctx.workspaces.known(stored) else None)
            return ws.key, ws.key, *data.render_workspace(ctx, ws)

        loaded = demo.load(restore, [browser_key], [key, browser_key, *data_tab["outputs"][1:]], api_visibility="private")
        loaded.then(train_tab["restore_settings"], [key], list(train_tab["settings"].values()), api_visibility="private").then(
            train_tab["reattach"], [key], train_tab["outputs"], api_visibility="private"
        )
        loaded.then(lr_tab["reattach"], [key], lr_tab["outputs"], api_visibility="private")
    return demo


def launch_kwargs() -> dict:
    """Arguments for demo.launch() shared by app.py and the tests."""
    return dict(max_file_size="500mb", footer_links=["api", "gradio", "settings"])
