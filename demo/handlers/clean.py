"""The Clean tab's handlers: the images the model doubts most (by class and split) and groups of near-duplicates;
decisions (move to another class, delete) gathered, then applied to a copy of the session's dataset, with an undo;
the cleaned dataset as a .zip. The person's own files are never changed.

What the tab shows lives on the server (`ws.cleaning`), tied to the dataset it was computed on: decisions about a
dataset that has changed since (another load, an apply) are refused rather than applied to the wrong images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from demo import actions
from demo.compute import compute
from demo.context import Context, user_errors
from demo.handlers import data
from demo.notice import Notice
from engine import cleaner
from engine import data as data_lib
from engine.errors import UserError
from engine.folders import write_zip

SHOWN = 48  # suspects shown at once, most suspicious first
MAX_SCAN = 3000  # images compared for near-duplicates (every pair: the time grows with the square)
ALL = "all classes"
SPLITS = ("validation", "train", "both")


@dataclass
class Cleaning:
    """One session's view of its dataset: what is shown, and the decisions not applied yet."""

    dataset: object  # the LabelledImages the shown items index into
    suspects: list = field(default_factory=list)  # cleaner.Suspect, as shown
    duplicates: list = field(default_factory=list)  # (item index, caption), as shown
    moves: dict = field(default_factory=dict)  # item -> class name
    deletes: set = field(default_factory=set)
    undo: object = None  # the dataset before the last apply


@dataclass
class CleanUI:
    key: gr.State
    class_name: gr.Dropdown
    suspects: gr.Gallery
    duplicates: gr.Gallery
    selected: gr.State  # ("suspects" | "duplicates", position): written only by the galleries' select events
    move_to: gr.Dropdown
    pending: gr.Markdown
    download: gr.File
    notice: Notice


def cleaning(ws) -> Cleaning:
    """The session's cleaning state, started afresh when the dataset is not the one it was about."""
    dataset = ws.dataset_or_builtin()
    state = ws.cleaning
    if state is None or state.dataset is not dataset:
        undo = state.undo if state is not None else None
        ws.cleaning = state = Cleaning(dataset, undo=undo)
    return state


def model_split(ws) -> tuple:
    predictor = ws.get_predictor()
    if predictor is None:
        raise UserError("Train a model first (the Train tab, or the Data tab's first model): the cleaner ranks images "
                        "by what a model makes of them.")
    actions.refuse_multi_label(ws.dataset_or_builtin(), predictor, "The Clean tab")
    return predictor, cleaner.split_of(ws.dataset_or_builtin(), *ws.model_split)


@user_errors
def rank(ctx: Context, ui: CleanUI, class_name: str, split: str, key=None) -> dict:
    """The images of a class and split the model finds least likely to carry their label, most suspicious first."""
    ws = ctx.workspace(key)
    predictor, splits = model_split(ws)
    state = cleaning(ws)
    dataset = state.dataset
    if split not in SPLITS:
        raise UserError(f"Choose the split to look at: {', '.join(SPLITS)}.")
    chosen = [i for i, s in splits.items() if split == "both" or s == split]
    if class_name and class_name != ALL:
        if class_name not in dataset.class_names:
            raise UserError(f"There is no class '{class_name}' in this dataset.")
        chosen = [i for i in chosen if dataset.class_names[dataset.labels[i]] == class_name]
    state.suspects = compute.run(cleaner.rank_by_loss, predictor, dataset, sorted(chosen), splits)[:SHOWN]
    if not state.suspects:
        raise UserError("No images of the model's classes there: choose another class or split.")
    shown = data_lib.originals(dataset, [s.index for s in state.suspects], actions.DISPLAY_SIDE)
    captions = [f"{s.label} → {s.predicted} {s.confidence:.0%} · {s.split}" for s in state.suspects]
    return {ui.key: ws.key, ui.suspects: _gallery(shown, captions), ui.selected: None,
            ui.move_to: gr.Dropdown(choices=dataset.class_names, value=None), ui.pending: pending_text(state)}


@user_errors
def find_duplicates(ctx: Context, ui: CleanUI, threshold: float, key=None) -> dict:
    """Groups of near-duplicate images (cosine similarity of the model's features at least `threshold`)."""
    ws = ctx.workspace(key)
    predictor, splits = model_split(ws)
    state = cleaning(ws)
    dataset = state.dataset
    if len(dataset) > MAX_SCAN:
        raise UserError(f"This dataset has {len(dataset)} images; near-duplicates are looked for in up to {MAX_SCAN}.")
    threshold = float(threshold if threshold is not None else cleaner.DEFAULT_SIMILARITY)
    features, index = compute.run(cleaner.embeddings, predictor, dataset, list(range(len(dataset))))
    groups = cleaner.duplicate_groups(features, index, threshold, splits)
    state.duplicates = [(i, f"group {g + 1}{' · LEAK' if group.leak else ''} · {splits.get(i, 'train')} · "
                            f"{dataset.class_names[dataset.labels[i]]}")
                        for g, group in enumerate(groups) for i in group.indices][:SHOWN * 2]
    leaks = sum(group.leak for group in groups)
    note = (f"{len(groups)} {'group' if len(groups) == 1 else 'groups'} of near-duplicates "
            f"({sum(len(g.indices) for g in groups)} images) at similarity "
            f"{threshold:.2f}" + (f"; {leaks} straddle training and validation (a leak: validation accuracy counts "
                                  "pictures the model trained on)" if leaks else "") + "." if groups else
            f"No near-duplicates at similarity {threshold:.2f}: lower it to look wider.")
    shown = data_lib.originals(dataset, [i for i, _ in state.duplicates], actions.DISPLAY_SIDE)
    return {ui.key: ws.key, ui.duplicates: _gallery(shown, [c for _, c in state.duplicates]), ui.selected: None,
            ui.notice: note, ui.pending: pending_text(state)}


def _gallery(images: list, captions: list[str]) -> list:
    return [(image, caption) for image, caption in zip(images, captions) if image is not None]


def select_suspect(evt: gr.SelectData) -> tuple:
    return ("suspects", evt.index)


def select_duplicate(evt: gr.SelectData) -> tuple:
    return ("duplicates", evt.index)


def chosen_item(state: Cleaning, selected) -> int:
    """The dataset item behind the picture chosen in one of the galleries."""
    if not selected:
        raise UserError("Click a picture in one of the galleries first.")
    where, position = selected
    shown = [s.index for s in state.suspects] if where == "suspects" else [i for i, _ in state.duplicates]
    if not 0 <= int(position) < len(shown):
        raise UserError("That picture is no longer shown: rank or search again, then choose it.")
    return shown[int(position)]


@user_errors
def decide(ctx: Context, ui: CleanUI, action: str, selected, move_to: str | None = None, key=None) -> dict:
    """Note a decision about the chosen picture: move it to `move_to`, delete it, or keep it (forget a decision)."""
    ws = ctx.workspace(key)
    state = cleaning(ws)
    item = chosen_item(state, selected)
    state.moves.pop(item, None)
    state.deletes.discard(item)
    if action == "move":
        if move_to not in state.dataset.class_names:
            raise UserError("Choose the class to move the picture to.")
        if move_to != state.dataset.class_names[state.dataset.labels[item]]:
            state.moves[item] = move_to
    elif action == "delete":
        state.deletes.add(item)
    return {ui.key: ws.key, ui.pending: pending_text(state)}


def pending_text(state: Cleaning) -> str:
    data = state.dataset
    if not state.moves and not state.deletes:
        return "No changes chosen yet: click a picture, then move it to another class or delete it."
    lines = [f"- move **{data.name(i)}** from {data.class_names[data.labels[i]]} to **{c}**" for i, c in state.moves.items()]
    lines += [f"- delete **{data.name(i)}**" for i in sorted(state.deletes)]
    return f"**{len(lines)} {'change' if len(lines) == 1 else 'changes'} to apply:**\n" + "\n".join(lines)


@user_errors
def apply(ctx: Context, ui: CleanUI, data_ui: data.DataUI, key=None, progress=data.PROGRESS) -> dict:
    """Apply the chosen changes to a copy of the dataset, which becomes the session's (the Data tab shows it)."""
    ws = ctx.workspace(key)
    refuse_while_training(ctx, ws)
    state = cleaning(ws)
    if not state.moves and not state.deletes:
        raise UserError("No changes chosen yet: click a picture, then move it to another class or delete it.")
    cleaned = cleaner.apply(state.dataset, state.moves, state.deletes)
    done = f"Applied: {len(state.moves)} moved, {len(state.deletes)} deleted."
    previous = state.dataset
    shown = data.show(ctx, data_ui, ws, cleaned, progress)
    ws.cleaning = Cleaning(cleaned, undo=previous)
    return {**shown, **cleared(ui), ui.notice: f"{done} The session's dataset is the cleaned copy now (the Data tab "
                                               "shows it): train again to compare the runs."}


@user_errors
def undo(ctx: Context, ui: CleanUI, data_ui: data.DataUI, key=None, progress=data.PROGRESS) -> dict:
    """Go back to the dataset as it was before the last apply."""
    ws = ctx.workspace(key)
    refuse_while_training(ctx, ws)
    state = cleaning(ws)
    if state.undo is None:
        raise UserError("Nothing to undo: no changes were applied to this dataset.")
    shown = data.show(ctx, data_ui, ws, state.undo, progress)
    ws.cleaning = Cleaning(state.undo)
    return {**shown, **cleared(ui), ui.notice: "Undone: the dataset is as it was before the last apply."}


def cleared(ui: CleanUI) -> dict:
    return {ui.suspects: [], ui.duplicates: [], ui.selected: None, ui.pending: pending_text(Cleaning(None))}


def refuse_while_training(ctx: Context, ws) -> None:
    job = ctx.jobs.latest(ws.key, "train")
    if job is not None and not job.finished:
        raise UserError("A training run is using this dataset: wait for it to end (or stop it), then apply the changes.")


@user_errors
def download(ctx: Context, ui: CleanUI, key=None) -> dict:
    """The session's dataset (cleaned or not) as a .zip of one folder per class."""
    ws = ctx.workspace(key)
    folder = Path(ws.folder) / "clean"
    folder.mkdir(parents=True, exist_ok=True)
    path = compute.run(write_zip, ws.dataset_or_builtin(), folder / "dataset.zip")
    return {ui.key: ws.key, ui.download: gr.File(value=str(path), visible=True)}


def show_classes(ctx: Context, ui: CleanUI, key=None) -> dict:
    """The class choices of the session's dataset (on opening the tab)."""
    names = ctx.workspace(key).dataset_or_builtin().class_names
    return {ui.class_name: gr.Dropdown(choices=[ALL, *names], value=ALL)}
