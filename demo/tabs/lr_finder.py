"""LR finder tab: run a range test with the Train tab's settings, read the plot, use a suggestion.

Layout and wiring only: the handlers are in demo/handlers/lr_finder.py. The Train tab's settings come in as an
argument, and "Use this LR" is wired to the Train tab by the page (demo/__init__.py).
"""
from __future__ import annotations

from dataclasses import asdict

import gradio as gr

from demo.context import Context
from demo.handlers import lr_finder as h
from demo.handlers.lr_finder import FinderUI
from demo.notice import notice
from demo.train_form import control, controls
from demo.wiring import bind
from engine.config import FinderConfig, options


def build(ctx: Context, key: gr.State, train_settings: dict) -> FinderUI:
    """The tab; `train_settings` (TrainConfig field -> the Train tab's control) are the range test's settings."""
    gr.Markdown("The range test trains briefly while raising the learning rate from tiny to huge, and records the "
                "loss. Pick a rate where the loss still falls steeply, well before it shoots up. It uses the model, "
                "strategy and sizes chosen on the **Train** tab, and leaves the model untouched.")
    with gr.Row():
        with gr.Column(scale=1):
            start_lr, end_lr = controls(FinderConfig, asdict(FinderConfig()), ["start_lr", "end_lr"], elem_prefix="lr-").values()
            # empty: the engine sizes the test to the training run (engine.config.auto_steps); the page load empties
            # it (handlers.lr_finder.reattach), since Gradio 6.31 draws the None it is built with as 0
            steps = control(options(FinderConfig)["num_steps"], None, elem_prefix="lr-", placeholder="auto")
            with gr.Row():
                run = gr.Button("Run LR finder", variant="primary")
                stop = gr.Button("Stop", variant="stop", interactive=False)
            run_notice = notice("lr-notice")
            choice = gr.Radio([], label="Suggestion to use", elem_id="lr-choice")
            use = gr.Button("Use this LR", interactive=False)
        with gr.Column(scale=2):
            status = gr.Markdown("Not run yet.", elem_id="lr-status")
            plot = gr.Plot(label="Loss vs learning rate", elem_id="lr-plot")
            values = gr.Markdown("", elem_id="lr-values")
    ui = FinderUI(key=key, status=status, plot=plot, values=values, choice=choice, use=use, run=run, stop=stop,
                   notice=run_notice, steps=steps)

    run.click(bind(h.lr_find, ctx, ui), [start_lr, end_lr, steps, key], [*ui.outputs, run_notice], inputs_kwargs=train_settings,
              api_name="lr_find", concurrency_limit=None)
    stop.click(bind(h.stop_finder, ctx, ui), [key], [stop], api_name="stop_lr_find")
    return ui
