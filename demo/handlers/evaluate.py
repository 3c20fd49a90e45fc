"""The Evaluate tab's handlers: run the session's model over its validation images, and show the images behind
one cell of the confusion matrix."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from demo import actions
from demo.compute import compute
from demo.context import Context, user_errors
from demo.notice import Notice
from engine.errors import UserError
from engine.figures import confusion

CELL_LIMIT = 48  # images shown for one confusion-matrix cell


@dataclass
class EvaluateUI:
    """The Evaluate tab's components that handlers read or change."""

    key: gr.State
    summary: gr.Markdown
    scores: gr.Dataframe
    figure: gr.Plot
    table: gr.Dataframe
    actual: gr.Dropdown
    predicted: gr.Dropdown
    cell: gr.Gallery
    losses: gr.Gallery
    pairs: gr.Markdown
    notice: Notice  # under the Evaluate button

    @property
    def outputs(self) -> list:
        """What an evaluation updates (the order is /evaluate's API output)."""
        return [self.key, self.summary, self.scores, self.figure, self.table, self.actual, self.predicted, self.cell,
                self.losses, self.pairs]


@user_errors
def run_evaluation(ctx: Context, ui: EvaluateUI, key=None) -> dict:
    """Evaluate the workspace's model on its validation images."""
    ws = ctx.workspace(key)
    ev = compute.run(actions.evaluate_workspace, ws)
    r, names = ev["result"], ev["result"]["class_names"]
    first = r["most_confused"][0] if r["most_confused"] else dict(actual=names[0], predicted=names[0])
    return {ui.key: ws.key, ui.summary: render_summary(r), ui.scores: scores_frame(r),
            ui.figure: confusion(r["confusion_matrix"], names), ui.table: confusion_frame(r),
            ui.actual: gr.Dropdown(names, value=first["actual"]), ui.predicted: gr.Dropdown(names, value=first["predicted"]),
            ui.cell: cell_images(ev, first["actual"], first["predicted"]), ui.losses: top_loss_images(ev),
            ui.pairs: render_pairs(r)}


@user_errors
def show_cell(ctx: Context, ui: EvaluateUI, actual_name, predicted_name, key=None) -> dict:
    """The validation images of one confusion-matrix cell (actual class -> predicted class)."""
    ev = ctx.workspace(key).evaluation
    if ev is None:
        raise UserError("Evaluate the model first.")
    return {ui.cell: cell_images(ev, actual_name, predicted_name)}


def choose_cell(ctx: Context, ui: EvaluateUI, evt: gr.SelectData, key=None) -> dict:
    """A cell chosen in the table: its classes in the two lists (which then show its images)."""
    ev = ctx.workspace(key).evaluation
    row, col = evt.index
    if ev is None or col == 0:  # column 0 holds the actual class names
        return {ui.actual: gr.skip(), ui.predicted: gr.skip()}
    names = ev["result"]["class_names"]
    return {ui.actual: gr.Dropdown(value=names[row]), ui.predicted: gr.Dropdown(value=names[col - 1])}


def cell_images(ev: dict, actual_name: str, predicted_name: str) -> list:
    names = ev["result"]["class_names"]
    if actual_name not in names or predicted_name not in names:
        raise UserError("Choose an actual and a predicted class from the lists.")
    a, p = names.index(actual_name), names.index(predicted_name)
    hits = [i for i, (y, q) in enumerate(zip(ev["labels"], ev["result"]["predictions"])) if y == a and q == p][:CELL_LIMIT]
    return [(image, f"{actual_name} -> {predicted_name}") for image in actions.evaluation_images(ev, hits)]


def top_loss_images(ev: dict) -> list:
    losses = ev["result"]["top_losses"]
    images = actions.evaluation_images(ev, [t["index"] for t in losses])
    return [(image, f"{t['actual']} / {t['predicted']} / {t['p_actual']:.2f}") for image, t in zip(images, losses)]


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
