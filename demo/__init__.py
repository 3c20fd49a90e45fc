"""Snapfit's Gradio UI. It imports the engine and holds no training math.

`build_demo()` assembles six tabs (Data, Train, LR finder, Evaluate, Classify, Export) around one per-session key and one
server-wide job manager. See demo/workspace.py for why the key lives both in gr.State and gr.BrowserState.
"""
from __future__ import annotations

import os

import gradio as gr
from gradio.utils import get_upload_folder

from demo import space
from demo.context import Context
from demo.housekeeping import Housekeeper
from demo.jobs import JobManager
from demo.tabs import classify, data, evaluate, export, lr_finder, train
from demo.workspace import Workspaces
from engine import hub

TITLE = "Snapfit: train an image classifier on your own pictures"
# A fixed key and secret let a reloaded page, or a restarted server, read back the workspace key it stored.
# The value is only a random workspace id, so the secret protects nothing sensitive.
BROWSER_STORAGE_KEY = "snapfit-workspace"
BROWSER_SECRET = os.environ.get("SNAPFIT_BROWSER_SECRET", "snapfit-workspace-key")
# Events that may run side by side (per event; Gradio's default is 1). Long work runs in jobs, not in events,
# so this only decides how many users' quick actions (a preview, an evaluation) overlap.
CONCURRENCY = 4
QUEUE_SIZE = 64  # events waiting beyond that get Gradio's "Queue is full" (ZeroGPU's default would be 1)


def build_demo(offline: bool | None = None, workspaces: Workspaces | None = None, jobs: JobManager | None = None,
               place: space.Place | None = None) -> gr.Blocks:
    ctx = Context(workspaces or Workspaces(), jobs or JobManager.from_env(), hub.is_offline() if offline is None else offline,
                  place or space.detect())
    ctx.housekeeper = Housekeeper(ctx.workspaces, ctx.jobs, get_upload_folder(), every=min(300.0, ctx.workspaces.ttl))
    ttl = max(1, int(ctx.workspaces.ttl))
    # Gradio ages out what it cached (uploads, images and files sent to pages) on the sessions' time-to-live.
    with gr.Blocks(title="Snapfit", delete_cache=(max(1, ttl // 4), ttl)) as demo:
        gr.Markdown(f"# {TITLE}")
        if ctx.offline:
            gr.Markdown(f"> **{hub.OFFLINE_MESSAGE}**", elem_id="offline-notice")
        key = gr.State(None)
        browser_key = gr.BrowserState(None, storage_key=BROWSER_STORAGE_KEY, secret=BROWSER_SECRET)
        with gr.Tabs(selected="data") as tabs:
            with gr.Tab("Data", id="data"):
                data_tab = data.build(ctx, key)
            with gr.Tab("Train", id="train") as train_tab_item:
                train_tab = train.build(ctx, key, train_tab_item)
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

        def open_best_recipe():
            """The Data tab's way on from a first model: the Train tab, set to fine-tune the whole network."""
            return [*train_tab["choose_recipe"]("best"), gr.Tabs(selected="train")]

        settings = list(train_tab["settings"].values())
        data_tab["best"].click(open_best_recipe, None, [train_tab["recipe"], *settings, tabs], api_visibility="private").then(
            train_tab["show_runs"], [key], [train_tab["runs"]], api_visibility="private")

        def restore(stored):
            """On page load: find this browser's workspace again (or start one) and show its dataset."""
            ws = ctx.workspace(stored if ctx.workspaces.known(stored) else None)
            return ws.key, ws.key, *data.render_workspace(ctx, ws)

        loaded = demo.load(restore, [browser_key], [key, browser_key, *data_tab["outputs"][1:]], api_visibility="private")
        # The re-attaching streams only wait on a job: no slot limit, or one reloaded page's stream would hold
        # every other page's re-attach until its training ended.
        loaded.then(train_tab["restore_settings"], [key], [train_tab["recipe"], *settings], api_visibility="private").then(
            train_tab["reattach"], [key], train_tab["outputs"], api_visibility="private", concurrency_limit=None
        ).then(train_tab["show_runs"], [key], [train_tab["runs"]], api_visibility="private")
        loaded.then(train_tab["show_runs"], [key], [train_tab["runs"]], api_visibility="private")
        loaded.then(data_tab["reattach_first"], [key], data_tab["first_outputs"], api_visibility="private",
                    concurrency_limit=None)
        loaded.then(lr_tab["reattach"], [key], lr_tab["outputs"], api_visibility="private", concurrency_limit=None)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


def launch_kwargs() -> dict:
    """Arguments for demo.launch() shared by app.py and the tests.

    No `allowed_paths`: Gradio then serves only what it cached itself (uploads, and files this app returned,
    under unguessable content-hash folders), never the sessions' folders or anything else on the server.
    show_error: an input Gradio itself rejects (a malformed API call) is answered with Gradio's reason
    rather than a bare "Error"; the app's own handlers turn every failure into a one-line message anyway.
    """
    return dict(max_file_size=os.environ.get("SNAPFIT_MAX_UPLOAD", "").strip() or "500mb", show_error=True,
                footer_links=["api", "gradio", "settings"])
