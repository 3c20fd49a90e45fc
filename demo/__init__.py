"""Snapfit's Gradio UI. It imports the engine and holds no training math.

`build_demo()` assembles eight tabs (Data, Capture, Train, LR finder, Evaluate, Clean, Classify, Export) around one per-session key and one
server-wide job manager. See demo/workspace.py for why the key lives both in gr.State and gr.BrowserState.

Three layers: demo/tabs/ lay out each tab and wire its events; demo/handlers/ hold what each event returns (module-level
functions of the Context, a tab's components and the inputs, returning {component: value}); demo/actions.py holds the
work itself (job bodies, evaluating, classifying), without Gradio. Tabs never import each other: each `build` returns
its components, and `wire_page` here joins them (a `Page`) for the events between tabs and the page load.
"""
from __future__ import annotations

import os

import gradio as gr
from gradio.utils import get_upload_folder

from demo import space
from demo.context import Context
from demo.handlers import capture as capture_handlers
from demo.handlers import clean as clean_handlers
from demo.handlers import data as data_handlers
from demo.handlers import lr_finder as finder_handlers
from demo.handlers import page as page_handlers
from demo.handlers import runs as runs_handlers
from demo.handlers import train as train_handlers
from demo.handlers.page import Page
from demo.housekeeping import Housekeeper
from demo.jobs import JobManager
from demo.tabs import capture, classify, clean, data, evaluate, export, lr_finder, train
from demo.wiring import bind
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
# Gradio 6.31 announces a finished event to screen readers as its raw key: its English table lacks it
MISSING_TRANSLATIONS = gr.I18n(en={"common.complete": "Done"})
CSS = f".{capture.HIDDEN} {{display: none !important;}}"  # rendered for scripts, not shown (visible=False renders nothing)
QUEUE_SIZE = 64  # events waiting beyond that get Gradio's "Queue is full" (ZeroGPU's default would be 1)


def build_demo(offline: bool | None = None, workspaces: Workspaces | None = None, jobs: JobManager | None = None,
               place: space.Place | None = None) -> gr.Blocks:
    ctx = Context(workspaces or Workspaces(), jobs or JobManager.from_env(), hub.is_offline() if offline is None else offline,
                  place or space.detect())
    ctx.housekeeper = Housekeeper(ctx.workspaces, ctx.jobs, get_upload_folder(), every=min(300.0, ctx.workspaces.ttl))
    ttl = max(1, int(ctx.workspaces.ttl))
    # Gradio ages out what it cached (uploads, images and files sent to pages) on the sessions' time-to-live.
    with gr.Blocks(title="Snapfit", delete_cache=(max(1, ttl // 4), ttl)) as demo:
        wire_page(ctx, build_page(ctx), demo)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


def build_page(ctx: Context) -> Page:
    """The page's layout (title, offline notice, the six tabs, each wiring its own events), inside a gr.Blocks;
    returns what the tabs share, for `wire_page`."""
    gr.Markdown(f"# {TITLE}")
    if ctx.offline:
        gr.Markdown(f"> **{hub.OFFLINE_MESSAGE}**", elem_id="offline-notice")
    key = gr.State(None)
    browser_key = gr.BrowserState(None, storage_key=BROWSER_STORAGE_KEY, secret=BROWSER_SECRET)
    with gr.Tabs(selected="data") as tabs:
        with gr.Tab("Data", id="data"):
            data_ui = data.build(ctx, key)
        with gr.Tab("Capture", id="capture"):
            capture_ui, use_captured = capture.build(ctx, key)
        with gr.Tab("Train", id="train") as train_tab:
            train_ui = train.build(ctx, key, train_tab)
        with gr.Tab("LR finder", id="lr_finder"):
            finder_ui = lr_finder.build(ctx, key, train_ui.settings)
        with gr.Tab("Evaluate", id="evaluate"):
            evaluate.build(ctx, key)
        with gr.Tab("Clean", id="clean") as clean_tab:
            clean_ui, clean_apply, clean_undo = clean.build(ctx, key, clean_tab)
        with gr.Tab("Classify", id="classify") as classify_tab:
            classify.build(ctx, key, classify_tab)
        with gr.Tab("Export", id="export") as export_tab:
            export.build(ctx, key, export_tab)
    return Page(key, browser_key, tabs, data_ui, train_ui, finder_ui, capture_ui, use_captured, clean_ui, clean_apply,
                clean_undo)


def wire_page(ctx: Context, page: Page, blocks: gr.Blocks) -> None:
    """The events between tabs, and the page load: it restores the session and re-attaches to its running jobs."""
    settings = list(page.train.settings.values())
    show_runs = bind(runs_handlers.show, ctx, page.train.compare)  # the summary table and the comparison
    runs_outputs = page.train.compare.outputs
    page.finder.use.click(bind(page_handlers.use_lr, page), [page.finder.choice], [page.train.settings["lr"], page.tabs],
                          api_name="use_lr")
    page.data.best.click(bind(page_handlers.open_best_recipe, ctx, page), [page.key], [page.train.recipe, *settings, page.tabs],
                         api_visibility="private").then(show_runs, [page.key], runs_outputs, api_visibility="private")

    first_prompt = bind(data_handlers.first_prompt, ctx, page.data)  # a new dataset: its own first model
    page.use_captured.click(bind(capture_handlers.use_as_dataset, ctx, page.capture, page.data, page.tabs), [page.key],
                            [*page.data.dataset_outputs, page.tabs, page.capture.notice], api_name="capture_use").success(
        first_prompt, [page.key], page.data.first_outputs[1:], api_visibility="private")

    cleaned = [*page.data.dataset_outputs, page.clean.suspects, page.clean.duplicates, page.clean.selected,
               page.clean.pending, page.clean.notice]
    for button, handler, name in ((page.clean_apply, clean_handlers.apply, "clean_apply"),
                                  (page.clean_undo, clean_handlers.undo, "clean_undo")):
        button.click(bind(handler, ctx, page.clean, page.data), [page.key], cleaned, api_name=name).success(
            first_prompt, [page.key], page.data.first_outputs[1:], api_visibility="private")

    loaded = blocks.load(bind(page_handlers.restore, ctx, page), [page.browser_key],
                         [page.key, page.browser_key, *page.data.dataset_outputs[1:]], api_visibility="private")
    # The re-attaching streams only wait on a job: no slot limit, or one reloaded page's stream would hold
    # every other page's re-attach until its training ended.
    loaded.then(bind(train_handlers.restore_settings, ctx, page.train), [page.key], [page.train.recipe, *settings],
                api_visibility="private").then(
        bind(train_handlers.reattach, ctx, page.train), [page.key], page.train.progress_outputs, api_visibility="private",
        concurrency_limit=None).then(show_runs, [page.key], runs_outputs, api_visibility="private").then(
        bind(train_handlers.show_resume, ctx, page.train), [page.key], [page.train.resume], api_visibility="private")
    loaded.then(show_runs, [page.key], runs_outputs, api_visibility="private")
    loaded.then(bind(capture_handlers.restore, ctx, page.capture), [page.key], page.capture.class_outputs[1:],
                api_visibility="private")
    loaded.then(bind(data_handlers.reattach_first, ctx, page.data), [page.key], page.data.first_outputs,
                api_visibility="private", concurrency_limit=None)
    loaded.then(bind(finder_handlers.reattach, ctx, page.finder), [page.key], [*page.finder.outputs, page.finder.steps],
                api_visibility="private", concurrency_limit=None)


def launch_kwargs() -> dict:
    """Arguments for demo.launch() shared by app.py and the tests.

    No `allowed_paths`: Gradio then serves only what it cached itself (uploads, and files this app returned,
    under unguessable content-hash folders), never the sessions' folders or anything else on the server.
    show_error: an input Gradio itself rejects (a malformed API call) is answered with Gradio's reason
    rather than a bare "Error"; the app's own handlers turn every failure into a one-line message anyway.
    """
    return dict(max_file_size=os.environ.get("SNAPFIT_MAX_UPLOAD", "").strip() or "500mb", show_error=True,
                footer_links=["api", "gradio", "settings"], i18n=MISSING_TRANSLATIONS, head=capture.CAMERA_ERRORS_JS,
                css=CSS)
