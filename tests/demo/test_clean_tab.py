"""The Clean tab's handlers with a real model: rank, decide, apply to a copy (the Data tab shows it), undo, the .zip,
near-duplicates with leaks, and what is refused (no model, a stale choice, a run training on the data)."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from demo.handlers import clean as h
from engine.folders import load_zip


def no_progress(*args, **kwargs):
    pass


def session(ctx, shapes, builtin_model, extra=()):
    ws = ctx.workspace(None)
    dataset = replace(shapes, images=[*shapes.images, *extra], labels=[*shapes.labels, *[shapes.labels[0]] * len(extra)])
    ws.set_dataset(dataset)
    ws.set_model(builtin_model[0], (0.2, 0))
    return ws


def test_rank_decide_apply_and_undo(ctx, ui, shapes, builtin_model, tmp_path, from_page):
    cl = ui.clean
    assert "Train a model first" in h.rank(ctx, cl, h.ALL, "validation")[cl.notice]
    ws = session(ctx, shapes, builtin_model)
    original = ws.dataset
    ranked = h.rank(ctx, cl, "circle", "validation", ws.key)
    suspects = ws.cleaning.suspects
    assert len(ranked[cl.suspects]) == len(suspects) > 0 and all(s.label == "circle" for s in suspects)
    assert [s.loss for s in suspects] == sorted((s.loss for s in suspects), reverse=True)
    assert ranked[cl.suspects][0][1].startswith("circle → ")
    assert "Choose the class" in h.decide(ctx, cl, "move", ("suspects", 0), None, ws.key)[cl.notice]
    h.decide(ctx, cl, "move", ("suspects", 0), "square", ws.key)
    h.decide(ctx, cl, "delete", ("suspects", 1), None, ws.key)
    h.decide(ctx, cl, "delete", ("suspects", 2), None, ws.key)
    pending = h.decide(ctx, cl, "keep", ("suspects", 2), None, ws.key)[cl.pending]  # changed my mind
    assert "2 changes to apply" in pending and "to **square**" in pending
    moved, deleted = suspects[0].index, suspects[1].index

    applied = h.apply(ctx, cl, ui.data, ws.key, no_progress)
    assert "Applied: 1 moved, 1 deleted" in applied[cl.notice]
    assert "899 images in 6 classes" in applied[ui.data.summary] and ws.dataset is not original
    assert ws.dataset.counts()["circle"] == 148 and ws.dataset.counts()["square"] == 151
    assert len(original) == 900 and original.labels[moved] == 0  # the dataset before is untouched
    assert ws.dataset.images[moved - (deleted < moved)] is original.images[moved]
    stale = h.decide(ctx, cl, "delete", ("suspects", 0), None, ws.key)
    assert "no longer shown" in stale[cl.notice]  # the shown pictures belonged to the dataset before

    path = h.download(ctx, cl, ws.key)[cl.download].value["path"]
    assert load_zip(path, tmp_path / "back").counts() == ws.dataset.counts()

    undone = h.undo(ctx, cl, ui.data, ws.key, no_progress)
    assert "Undone" in undone[cl.notice] and ws.dataset is original and "900 images" in undone[ui.data.summary]
    assert "Nothing to undo" in h.undo(ctx, cl, ui.data, ws.key, no_progress)[cl.notice]


def test_near_duplicates_and_leaks(ctx, ui, shapes, builtin_model, from_page):
    cl = ui.clean
    ws = session(ctx, shapes, builtin_model, extra=[shapes.images[0].copy(), shapes.images[6].copy()])
    found = h.find_duplicates(ctx, cl, 0.99, ws.key)
    groups = {}
    for item, caption in ws.cleaning.duplicates:
        groups.setdefault(caption.split(" · ")[0], set()).add(item)
    assert {0, 900} in groups.values() and {6, 901} in groups.values()
    splits = h.cleaner.split_of(ws.dataset, 0.2, 0)
    for item, caption in ws.cleaning.duplicates:
        group = next(g for g in groups.values() if item in g)
        assert ("LEAK" in caption) == (len({splits[i] for i in group}) > 1)
    assert "groups of near-duplicates" in found[cl.notice]
    h.decide(ctx, cl, "delete", ("duplicates", 1), None, ws.key)
    assert "delete" in h.decide(ctx, cl, "keep", ("duplicates", 0), None, ws.key)[cl.pending]
    assert "between 0.5 and 1" in h.find_duplicates(ctx, cl, 0.2, ws.key)[cl.notice]


def test_changes_wait_for_a_run_on_the_same_data(ctx, ui, shapes, builtin_model, monkeypatch, from_page):
    cl = ui.clean
    ws = session(ctx, shapes, builtin_model)
    h.rank(ctx, cl, h.ALL, "train", ws.key)
    h.decide(ctx, cl, "delete", ("suspects", 0), None, ws.key)
    monkeypatch.setattr(ctx.jobs, "latest", lambda *a, **k: SimpleNamespace(finished=False))
    refused = h.apply(ctx, cl, ui.data, ws.key, no_progress)
    assert list(refused) == [cl.notice] and "A training run is using this dataset" in refused[cl.notice]
    assert len(ws.dataset) == 900 and ws.cleaning.deletes  # nothing applied, the choice kept


def test_multi_label_data_is_refused_with_the_command_that_evaluates_it(ctx, ui, builtin_model, from_page):
    """Clean and Evaluate show one class per image: on multi-label data they say so, and what evaluates it."""
    import pytest

    from demo import actions
    from engine import data
    from engine.errors import UserError

    ws = ctx.workspace(None)
    ws.set_dataset(data.load_builtin_multi(n_images=30))
    ws.set_model(builtin_model[0], (0.2, 0))
    for notice in (h.rank(ctx, ui.clean, h.ALL, "validation", ws.key)[ui.clean.notice],
                   h.find_duplicates(ctx, ui.clean, 0.8, ws.key)[ui.clean.notice]):
        assert "multi-label" in notice and "python -m engine eval" in notice
    with pytest.raises(UserError, match="do not match: one gives several labels per image"):
        actions.evaluate_workspace(ws)
