"""Evaluate tab: where the model is right and wrong on its validation images.

Accuracy and per-class precision/recall/F1, the confusion matrix as a figure and as a table (choose a cell to
see the images behind it: actual -> predicted), the images with the highest loss, and the most-confused pairs.
Layout and wiring only: the handlers are in demo/handlers/evaluate.py.
"""
from __future__ import annotations

import gradio as gr

from demo.context import Context
from demo.handlers import evaluate as h
from demo.handlers.evaluate import EvaluateUI
from demo.notice import notice
from demo.wiring import bind


def build(ctx: Context, key: gr.State) -> EvaluateUI:
    gr.Markdown("Run the trained model over its validation images (the ones it never trained on) and see where it "
                "goes wrong. Choose a cell of the table to see the images behind it.")
    run = gr.Button("Evaluate the model", variant="primary")
    run_notice = notice("eval-notice")
    summary = gr.Markdown("No evaluation yet.", elem_id="eval-summary")
    with gr.Row():
        with gr.Column():
            scores = gr.Dataframe(label="Per class", interactive=False)
            pairs = gr.Markdown("", elem_id="eval-pairs")
        figure = gr.Plot(label="Confusion matrix")
    table = gr.Dataframe(label="Confusion matrix (rows: actual, columns: predicted): choose a cell", interactive=False,
                         elem_id="eval-confusion")
    with gr.Row():
        actual = gr.Dropdown([], label="Actual class")
        predicted = gr.Dropdown([], label="Predicted class")
    # The original images (demo/actions.py evaluation_images), two full rows in view. fit_columns=False: a cell of
    # two images would otherwise blow them up to half the page's width each.
    cell = gr.Gallery(label="Images in this cell", columns=8, height=340, object_fit="contain", fit_columns=False,
                      elem_id="eval-cell")
    losses = gr.Gallery(label="Highest losses (actual / predicted / probability of the actual class)", columns=8,
                        height=340, object_fit="contain", fit_columns=False, elem_id="eval-top-losses")
    ui = EvaluateUI(key=key, summary=summary, scores=scores, figure=figure, table=table, actual=actual,
                    predicted=predicted, cell=cell, losses=losses, pairs=pairs, notice=run_notice)

    run.click(bind(h.run_evaluation, ctx, ui), [key], [*ui.outputs, run_notice], api_name="evaluate")
    table.select(bind(h.choose_cell, ctx, ui), [key], [actual, predicted], api_visibility="private")
    gr.on([actual.change, predicted.change], bind(h.show_cell, ctx, ui), [actual, predicted, key], [cell, run_notice],
          api_name="cell_images")
    return ui
