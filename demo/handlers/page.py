"""Handlers that span tabs: the page load, and the moves from one tab to another (an LR from the finder to the
Train tab, the Data tab's first model on to the Train tab's best recipe).

`Page` holds what they need of each tab. demo/__init__.py builds it from the tabs' components, so no tab imports
another: a tab offers its components, and the page wires them together.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.context import Context
from demo.handlers import data, train
from demo.handlers.capture import CaptureUI
from demo.handlers.clean import CleanUI
from demo.handlers.data import DataUI
from demo.handlers.lr_finder import FinderUI
from demo.handlers.train import TrainUI


@dataclass
class Page:
    key: gr.State  # the session's workspace key, for this page
    browser_key: gr.BrowserState  # the same key, kept by the browser across reloads
    tabs: gr.Tabs
    data: DataUI
    train: TrainUI
    finder: FinderUI
    capture: CaptureUI
    use_captured: gr.Button  # the Capture tab's "use these pictures as the dataset": it loads them into the Data tab
    clean: CleanUI
    clean_apply: gr.Button  # the Clean tab's Apply and Undo: they change the dataset the Data tab shows
    clean_undo: gr.Button


def restore(ctx: Context, page: Page, stored) -> dict:
    """On page load: find this browser's workspace again (or start one) and show its dataset."""
    ws = ctx.workspace(stored if ctx.workspaces.known(stored) else None)
    return {page.key: ws.key, page.browser_key: ws.key, **data.show_workspace(ctx, page.data, ws)}


def use_lr(page: Page, choice) -> dict:
    """The LR finder's chosen suggestion into the Train tab's learning rate, and that tab opened."""
    if not choice:
        return {page.train.settings["lr"]: gr.skip(), page.tabs: gr.skip()}
    return {page.train.settings["lr"]: gr.Number(value=float(choice)), page.tabs: gr.Tabs(selected="train")}


def open_best_recipe(ctx: Context, page: Page, key=None) -> dict:
    """The Data tab's way on from a first model: the Train tab, set to fine-tune the whole network."""
    return {**train.choose_recipe(ctx, page.train, "best", key), page.tabs: gr.Tabs(selected="train")}
