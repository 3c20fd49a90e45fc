"""Evaluate tab: where the model is right and wrong on its validation images.

Accuracy and per-class precision/recall/F1, the confusion matrix as a figure and as a table (choose a cell to
see the images behind it: actual -> predicted), the images with the highest loss, and the most-confused pairs.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from demo.compute import compute
from demo.context import Context, user_errors
from engine import data as data_lib
from engine.errors import UserError
from engine.evaluate import evaluate, items_of_known_classes
from engine.figures import confusion

CELL_LIMIT = 48  # images shown for one confusion-matrix cell


def build(ctx: Context, key: gr.State):
    gr.Markdown("Run the trained model over its validation images (the ones it never trained on) and see where it "
                "goes wrong. Choose a cell of the table to see the images behind it.")
    run = gr.Button("Evaluate the model", variant="primary")
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
    cell = gr.Gallery(label="Images in this cell", columns=8, height=240, object_fit="contain", elem_id="eval-cell")
    losses = gr.Gallery(label="Highest losses (actual / predicted / probability of the actual class)", columns=8,
                        height=260, object_fit="contain", elem_id="eval-top-losses")

    @user_errors
    def run_evaluation(key=None):
        """Evaluate the workspace's model on its validation images."""
        ws = ctx.workspace(key)
        ev = compute.run(evaluate_workspace, ws)
        r, names = ev["result"], ev["result"]["class_names"]
        first = r["most_confused"][0] if r["most_confused"] else dict(actual=names[0], predicted=names[0])
        return (ws.key, render_summary(r), scores_frame(r), confusion(r["confusion_matrix"], names), confusion_frame(r),
                gr.Dropdown(names, value=first["actual"]), gr.Dropdown(names, value=first["predicted"]),
                cell_images(ev, first["actual"], first["predicted"]), top_loss_images(ev), render_pairs(r))

    @user_errors
    def show_cell(actual_name, predicted_name, key=None):
        """The validation images of one confusion-matrix cell (actual class -> predicted class)."""
        ev = ctx.workspace(key).evaluation
        if ev is None:
            raise UserError("Evaluate the model first.")
        return cell_images(ev, actual_name, predicted_name)

    def choose_cell(evt: gr.SelectData, key=None):
        ev = ctx.workspace(key).evaluation
        row, col = evt.index
        if ev is None or col == 0:  # column 0 holds the actual class names
            return gr.Dropdown(), gr.Dropdown()
        names = ev["result"]["class_names"]
        return gr.Dropdown(value=names[row]), gr.Dropdown(value=names[col - 1])

    run.click(run_evaluation, [key], [key, summary, scores, figure, table, actual, predicted, cell, losses, pairs],
              api_name="evaluate")
    table.select(choose_cell, [key], [actual, predicted], api_visibility="private")
    gr.on([actual.change, predicted.change], show_cell, [actual, predicted, key], [cell], api_name="cell_images")


def evaluate_workspace(ws) -> dict:
    """Predict every validation image of the workspace's dataset with its model; keep the images for the views."""
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("There is no trained model yet: train one on the Train tab (or load one on the Classify tab).")
    dataset = ws.dataset_or_builtin()
    names = predictor.class_names
    _, val_idx = data_lib.split_dataset(dataset, *ws.model_split)
    val_idx = items_of_known_classes(dataset, val_idx, names)
    decoded, _ = data_lib.decode(dataset, val_idx, predictor.img_size)  # unreadable files are skipped, labels follow
    images = list(decoded.x.permute(0, 2, 3, 1).numpy())
    labels = [names.index(dataset.class_names[y]) for y in decoded.y.tolist()]
    ws.evaluation = dict(result=evaluate(predictor, images, labels, names), images=images, labels=labels)
    return ws.evaluation


def cell_images(ev: dict, actual_name: str, predicted_name: str) -> list:
    names = ev["result"]["class_names"]
    if actual_name not in names or predicted_name not in names:
        raise UserError("Choose an actual and a predicted class from the lists.")
    a, p = names.index(actual_name), names.index(predicted_name)
    hits = [i for i, (y, q) in enumerate(zip(ev["labels"], ev["result"]["predictions"])) if y == a and q == p]
    return [(ev["images"][i], f"{actual_name} -> {predicted_name}") for i in hits[:CELL_LIMIT]]


def top_loss_images(ev: dict) -> list:
    return [(ev["images"][t["index"]], f"{t['actual']} / {t['predicted']} / {t['p_actual']:.2f}") for t in ev["result"]["top_losses"]]


def render_summary(r: dict) -> str:
    return f"Accuracy **{r['accuracy']:.1%}** on {r['num_images']} validation images."


def render_pairs(r: dict) -> str:
    if not r["most_confused"]:
        return "No mistakes on the validation images."
    return "**Most confused** (actual → predicted: images)\n\n" + "\n".join(
        f"- {c['actual']} → {c['predicted']}: {c['count']}" for c in r["most_confused"])


def scores_frame(r: dict) -> pd.DataFrame:
    fmt = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    return pd.DataFrame([(c["name"], fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), c["support"]) for c in r["per_class"]],
                        columns=["class", "precision", "recall", "F1", "images"])


def confusion_frame(r: dict) -> pd.DataFrame:
    names = r["class_names"]
    return pd.DataFrame([[name, *row] for name, row in zip(names, r["confusion_matrix"])], columns=["actual \\ predicted", *names])
