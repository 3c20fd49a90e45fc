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
from engine.figures import confusion, pr_curves

CELL_LIMIT = 48  # images shown for one confusion-matrix cell
FALSE_POSITIVES, FALSE_NEGATIVES = "false positives", "false negatives"  # a multi-label model's mistakes, per label


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
    if ev.get("multi_label"):
        return multi_label_views(ui, ws, ev)
    r, names = ev["result"], ev["result"]["class_names"]
    first = r["most_confused"][0] if r["most_confused"] else dict(actual=names[0], predicted=names[0])
    return {ui.key: ws.key, ui.summary: render_summary(r), ui.scores: scores_frame(r),
            ui.figure: confusion(r["confusion_matrix"], names), ui.table: confusion_frame(r),
            ui.actual: gr.Dropdown(names, value=first["actual"], label="Actual class"),
            ui.predicted: gr.Dropdown(names, value=first["predicted"], label="Predicted class"),
            ui.cell: cell_images(ev, first["actual"], first["predicted"]), ui.losses: top_loss_images(ev),
            ui.pairs: render_pairs(r)}


@user_errors
def show_cell(ctx: Context, ui: EvaluateUI, actual_name, predicted_name, key=None) -> dict:
    """The validation images of one confusion-matrix cell (actual class -> predicted class)."""
    ev = ctx.workspace(key).evaluation
    if ev is None:
        raise UserError("Evaluate the model first.")
    if ev.get("multi_label"):
        return {ui.cell: mistake_images(ev, actual_name, predicted_name)}
    return {ui.cell: cell_images(ev, actual_name, predicted_name)}


def choose_cell(ctx: Context, ui: EvaluateUI, evt: gr.SelectData, key=None) -> dict:
    """A cell chosen in the table: its classes in the two lists (which then show its images)."""
    ev = ctx.workspace(key).evaluation
    row, col = evt.index
    if ev is None or col == 0:  # column 0 holds the actual class names
        return {ui.actual: gr.skip(), ui.predicted: gr.skip()}
    if ev.get("multi_label"):  # the per-label table: a row is a label, its FP and FN columns the mistakes
        kind = {5: FALSE_POSITIVES, 6: FALSE_NEGATIVES}.get(col)
        return {ui.actual: gr.Dropdown(value=ev["result"]["label_names"][row]),
                ui.predicted: gr.Dropdown(value=kind) if kind else gr.skip()}
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


# ---------------------------------------------------------------------------------------------- multi-label
# The same components, read per label: the per-label table (AP, precision, recall, F1, threshold, images, and its
# false positives and false negatives: choose one to see them), precision-recall curves for the figure, and a
# label and a kind of mistake in the two lists.


def multi_label_views(ui: EvaluateUI, ws, ev: dict) -> dict:
    r = ev["result"]
    worst = min(r["per_label"], key=lambda row: (row["f1"] if row["f1"] is not None else 2.0))
    kind = FALSE_NEGATIVES if worst["fn"] >= worst["fp"] else FALSE_POSITIVES
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    table = pd.DataFrame([(row["name"], fmt(row["ap"]), fmt(row["precision"]), fmt(row["recall"]), fmt(row["f1"]),
                           row["fp"], row["fn"], f"{row['threshold']:.2f}", row["support"]) for row in r["per_label"]],
                         columns=["label", "AP", "precision", "recall", "F1", "false positives", "false negatives",
                                  "threshold", "images"])
    return {ui.key: ws.key, ui.summary: render_multi_label_summary(r), ui.scores: table.iloc[:, [0, 1, 4, 8]],
            ui.figure: pr_curves(r["pr_curves"], dict(zip(r["label_names"], r["thresholds"]))), ui.table: table,
            ui.actual: gr.Dropdown(r["label_names"], value=worst["name"], label="Label"),
            ui.predicted: gr.Dropdown([FALSE_POSITIVES, FALSE_NEGATIVES], value=kind, label="Mistakes"),
            ui.cell: mistake_images(ev, worst["name"], kind), ui.losses: worst_images(ev),
            ui.pairs: "Choose a label's **false positives** or **false negatives** in the table (or the lists) to "
                      "see those pictures."}


def render_multi_label_summary(r: dict) -> str:
    return (f"Multi-label: mAP **{r['map']:.3f}**, micro F1 **{r['micro_f1']:.3f}**, macro F1 {r['macro_f1']:.3f} on "
            f"{r['num_images']} validation images, each label decided at its own threshold (chosen on validation).")


def mistake_images(ev: dict, label: str, kind: str) -> list:
    """One label's false positives (most confident first) or false negatives (least confident first)."""
    r = ev["result"]
    if label not in r["label_names"] or kind not in (FALSE_POSITIVES, FALSE_NEGATIVES):
        raise UserError("Choose a label and a kind of mistake from the lists.")
    found = r["mistakes"][label]["false_positives" if kind == FALSE_POSITIVES else "false_negatives"]
    images = actions.evaluation_images(ev, [m["index"] for m in found])
    shown = "given" if kind == FALSE_POSITIVES else "missed"
    return [(image, f"{label} {shown}: p {m['p']:.2f} · {_labels_of(ev, m['index'])}") for image, m in zip(images, found)]


def worst_images(ev: dict) -> list:
    """The most confident mistakes over every label: what the top losses are to a single-label model."""
    r, out = ev["result"], []
    for label in r["label_names"]:
        for m in r["mistakes"][label]["false_positives"]:
            out.append((m["p"], m["index"], f"{label} given (p {m['p']:.2f})"))
        for m in r["mistakes"][label]["false_negatives"]:
            out.append((1 - m["p"], m["index"], f"{label} missed (p {m['p']:.2f})"))
    out.sort(key=lambda t: -t[0])
    out = out[:16]
    images = actions.evaluation_images(ev, [index for _, index, _ in out])
    return [(image, f"{text} · {_labels_of(ev, index)}") for image, (_, index, text) in zip(images, out)]


def _labels_of(ev: dict, position: int) -> str:
    """An evaluated image's true labels, as its caption ends."""
    dataset = ev["dataset"]
    names = [dataset.class_names[c] for c in dataset.labels[ev["index"][position]]]
    return "labels: " + (", ".join(names) or "none")
