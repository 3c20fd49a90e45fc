"""A multi-label model in the app's views that already know it: the saved results by mAP and per label, the runs
table, the model named on Classify, and a classified picture's labels (those at or above their thresholds)."""
from __future__ import annotations

import numpy as np

from demo import actions
from demo.handlers import classify, train
from engine import data, runs, sample
from engine.config import TrainConfig
from engine.train import fit


def test_a_multi_label_model_is_told_by_its_map_and_its_labels(ctx, tmp_path):
    events = list(fit(data.load_builtin_multi(n_images=120), TrainConfig(epochs=2, img_size=64), str(tmp_path / "m")))
    model_dir = events[-1].model_dir

    saved = train.final_metrics(model_dir)
    assert "multi-label" in saved and "validation mAP" in saved
    assert all(f"| {name} |" in saved for name in sample.CLASSES)  # a row per label, with its threshold
    run = runs.read(model_dir)
    assert run.error is None and run.metric == "mAP" and "mAP 0." in runs.table([run])

    ws = ctx.workspace(None)
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
