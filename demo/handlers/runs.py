"""The Train tab's runs: the summary table above the live curves, and the comparison below them (every run kept with
its data version, recipe, accuracies and time; the validation curves of the runs chosen, overlaid; a run made the
session's model for Classify, Evaluate and Export).

The page names a run by its model folder's name, never by its path on the server.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from demo import actions
from demo.context import Context, user_errors
from demo.notice import Notice
from engine import figures
from engine.events import short_score
from engine.runs import per_class_text

COLUMNS = ["in use", "run", "recipe / strategy", "model", "data", "image size", "epochs", "best epoch",
           "validation accuracy", "seconds", "per-class accuracy"]


@dataclass
class RunsUI:
    """The components that show the session's runs."""

    summary: gr.Markdown  # the table above the live curves
    table: gr.Dataframe
    chosen: gr.CheckboxGroup
    loss_plot: gr.Plot
    acc_plot: gr.Plot
    use: gr.Dropdown
    use_btn: gr.Button
    notice: Notice  # under "Use this run": why it could not

    @property
    def outputs(self) -> list:
        """What `show` changes."""
        return [self.summary, self.table, self.chosen, self.loss_plot, self.acc_plot, self.use]


def show(ctx: Context, ui: RunsUI, key=None) -> dict:
    """Every view of the session's runs, as they are now."""
    ws = ctx.workspace(key)
    choices = [(run_title(ws, r), run_id(r)) for r in reversed(ws.runs)]  # newest first
    in_use = next((run_id(r) for r in ws.runs if r["model_dir"] == str(ws.model_dir)), None)
    return {ui.summary: runs_markdown(ws), ui.table: runs_frame(ws),
            ui.chosen: gr.CheckboxGroup(choices=choices, value=chosen_ids(ws)),
            ui.use: gr.Dropdown(choices=choices, value=in_use), **curves(ws, ui)}


def choose(ctx: Context, ui: RunsUI, chosen, key=None) -> dict:
    """Overlay the curves of the runs chosen (remembered for the session, so a reloaded page shows them again)."""
    ws = ctx.workspace(key)
    wanted = set(chosen or [])
    ws.runs_chosen = [run_id(r) for r in ws.runs if run_id(r) in wanted]
    return curves(ws, ui)


@user_errors
def use_run(ctx: Context, ui: RunsUI, name, key=None) -> dict:
    """Make the chosen run the session's model for Classify, Evaluate and Export."""
    actions.use_run(ctx.workspace(key), name)
    return show(ctx, ui, key)


def run_id(run: dict) -> str:
    return Path(run["model_dir"]).name


def chosen_ids(ws) -> list[str]:
    kept = {run_id(r) for r in ws.runs}
    return [c for c in ws.runs_chosen if c in kept]


def run_label(run: dict) -> str:
    return run["label"] if run["status"] == "done" else f"{run['label']} ({run['status']})"


def data_version(ws, run: dict) -> str:
    return f"v{ws.data_versions[run['data']]}" if run.get("data") in ws.data_versions else "?"


def run_score(run: dict) -> str:
    """A session run's score in a table or title: "93.3%", or "mAP 0.912" for a multi-label run."""
    return short_score(run["val_acc"], run.get("metric", "accuracy"))


def run_title(ws, run: dict) -> str:
    """How the page names a run in lists and legends: "run 2 · quick · data v1 · 93.3%"."""
    return f"run {run['number']} · {run_label(run)} · data {data_version(ws, run)} · {run_score(run)}"


def runs_frame(ws) -> pd.DataFrame:
    """The comparison table: one row per run kept, oldest first."""
    rows = [["✓" if r["model_dir"] == str(ws.model_dir) else "", r["number"], run_label(r), r["model"], data_version(ws, r),
             r["img_size"], r.get("epochs"), r.get("best_epoch"), run_score(r), round(r["seconds"]),
             per_class_text(r.get("per_class") or {})] for r in ws.runs]
    return pd.DataFrame(rows, columns=COLUMNS)


def curves(ws, ui: RunsUI) -> dict:
    """The chosen runs' validation loss and accuracy per epoch, overlaid (None: nothing chosen)."""
    chosen = [r for r in ws.runs if run_id(r) in set(ws.runs_chosen)]
    if not chosen:
        return {ui.loss_plot: None, ui.acc_plot: None}
    loss = {run_title(ws, r): [(h["epoch"], h["val_loss"]) for h in r.get("history", [])] for r in chosen}
    acc = {run_title(ws, r): [(h["epoch"], h["val_acc"]) for h in r.get("history", [])] for r in chosen}
    colours = [r["number"] - 1 for r in chosen]  # a run's colour stays its own whichever others are chosen
    metrics = {r.get("metric", "accuracy") for r in chosen}
    score = "mAP" if metrics == {"mAP"} else "accuracy" if metrics == {"accuracy"} else "accuracy or mAP"
    return {ui.loss_plot: figures.run_curves(loss, "validation loss", "Validation loss", colours=colours),
            ui.acc_plot: figures.run_curves(acc, f"validation {score} %", f"Validation {score}", percent=True,
                                            colours=colours)}


def runs_markdown(ws) -> str:
    """The session's runs as a Markdown table, and which one is in use."""
    if not ws.runs:
        return ""
    in_use = str(ws.model_dir) if ws.model_dir is not None else None
    rows = []
    for r in ws.runs:
        rows.append(f"| {'**in use**' if r['model_dir'] == in_use else ''} | {run_label(r)} | {r['model']} | {r['img_size']} px "
                    f"| {run_score(r)} | {r['seconds']:.0f} | {data_version(ws, r)} |")
    other = in_use is not None and all(r["model_dir"] != in_use for r in ws.runs)
    return ("**Runs in this session**\n\n| | recipe / strategy | model | image size | validation accuracy | seconds | data |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
            + ("\n\nIn use on the Classify tab: a model loaded there, not one of these." if other else ""))
