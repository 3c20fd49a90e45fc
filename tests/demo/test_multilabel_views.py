"""A multi-label model in the app's views that already know it: the saved results by mAP and per label, the runs
table, the model named on Classify, and a classified picture's labels (those at or above their thresholds)."""
from __future__ import annotations

import numpy as np

from demo import actions
from demo.handlers import classify, train
from demo.handlers import runs as runs_h
from engine import data, runs, sample
from engine.config import TrainConfig
from engine.stopping import StopToken
from engine.train import fit


def test_a_multi_label_model_is_told_by_its_map_and_its_labels(ctx, ui):
    ws = ctx.workspace(None)
    ws.set_dataset(data.load_builtin_multi(n_images=120))
    *_, last = actions.run_training(ws, TrainConfig(epochs=2, img_size=64), StopToken(), label="multi")
    model_dir = last.model_dir

    saved = train.final_metrics(model_dir)
    assert "multi-label" in saved and "validation mAP" in saved
    assert all(f"| {name} |" in saved for name in sample.CLASSES)  # a row per label, with its threshold
    run = runs.read(model_dir)
    assert run.error is None and run.metric == "mAP" and "mAP 0." in runs.table([run])
    curves = runs_h.curves(ws, ui.train.compare)  # the runs compared: the score curve says it is mAP
    assert curves[ui.train.compare.acc_plot].axes[0].get_title() == "Validation mAP"

    ws.set_model(model_dir, (0.2, 0))
    assert "validation mAP" in classify.model_in_use(ws)
    images, labels = sample.generate_multi(1, seed=3)
    result, text, overlay = actions.classify(ws, np.asarray(images[0]), 5, show_cam=True)
    assert set(result) == set(sample.CLASSES)  # every label has its own probability
    predictor = ws.get_predictor()
    above = [n for n, p in result.items() if p >= predictor.thresholds[predictor.class_names.index(n)]]
    assert "Labels: " + (", ".join(f"**{n}**" for n in above) or "none") in text
    assert overlay is not None


def test_the_data_tab_loads_the_built_in_multi_label_set_and_says_so(ctx, ui):
    from demo.handlers import data as data_tab

    shown = data_tab.load_data(ctx, ui.data, "builtin:shapes-multi", None, lambda *a, **k: None)
    summary = shown[ui.data.summary]
    assert "900 images with 6 labels (multi-label)" in summary
    assert "Labels (images showing each): circle (" in summary and "1 label: " in summary and "3 labels: " in summary
    assert "seen together most" in summary and "iterative stratification" in summary
    captions = [caption for _, caption in shown[ui.data.gallery]]
    assert any(", " in caption for caption in captions)  # a picture shown with all its labels


def test_evaluate_shows_each_label_its_curve_and_its_mistakes(ctx, tmp_path, from_page):
    import gradio as gr

    from demo.handlers import evaluate
    from demo.tabs import evaluate as evaluate_tab

    dataset = data.load_builtin_multi(n_images=150)
    events = list(fit(dataset, TrainConfig(epochs=1, img_size=48), str(tmp_path / "m")))  # weak: mistakes to show
    ws = ctx.workspace(None)
    ws.set_dataset(dataset)
    ws.set_model(events[-1].model_dir, (0.2, 0))
    with gr.Blocks():
        ui = evaluate_tab.build(ctx, gr.State(None))

    shown = evaluate.run_evaluation(ctx, ui, ws.key)
    assert "Multi-label: mAP" in shown[ui.summary] and "micro F1" in shown[ui.summary]
    table = shown[ui.table]
    assert list(table["label"]) == list(sample.CLASSES) and {"AP", "false positives", "false negatives"} <= set(table)
    r = ws.evaluation["result"]
    label, kind = shown[ui.actual].value, shown[ui.predicted].value
    found = r["mistakes"][label]["false_positives" if kind == evaluate.FALSE_POSITIVES else "false_negatives"]
    assert len(shown[ui.cell]) == len(found) > 0
    assert all(caption.startswith(f"{label} ") and "labels: " in caption for _, caption in shown[ui.cell])
    for name in sample.CLASSES:  # every label's false positives truly lack it, its false negatives truly have it
        for m in r["mistakes"][name]["false_positives"]:
            assert sample.CLASSES.index(name) not in dataset.labels[ws.evaluation["index"][m["index"]]]
        for m in r["mistakes"][name]["false_negatives"]:
            assert sample.CLASSES.index(name) in dataset.labels[ws.evaluation["index"][m["index"]]]
    other = evaluate.show_cell(ctx, ui, label, evaluate.FALSE_NEGATIVES if kind == evaluate.FALSE_POSITIVES
                               else evaluate.FALSE_POSITIVES, ws.key)
    assert all(label in caption for _, caption in other[ui.cell])
    picked = evaluate.choose_cell(ctx, ui, gr.SelectData(None, dict(index=[2, 6], value=0)), ws.key)
    assert picked[ui.actual].value == sample.CLASSES[2] and picked[ui.predicted].value == evaluate.FALSE_NEGATIVES
    assert shown[ui.figure] is not None and len(shown[ui.losses]) > 0
