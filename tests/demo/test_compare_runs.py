"""The Train tab's runs compared, through its handlers: every run kept with its data version (a cleaned dataset is a
new one), recipe, accuracies and time; the chosen runs' validation curves overlaid; a run made the session's model
for Classify, Evaluate and Export; at most MAX_RUNS kept, the oldest going with its folder unless it is in use."""
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest

from demo import actions
from demo import workspace as workspace_lib
from demo.handlers import runs
from demo.handlers.classify import model_in_use
from engine.export import read_metrics
from engine.stopping import StopToken
from engine.train import TrainConfig

TINY = TrainConfig(model="resnet10t", epochs=1, img_size=32, batch_size=32)


def train(ws, cfg: TrainConfig, label: str) -> str:
    """A real training job's body, as the app runs it; returns the model folder it saved."""
    *_, last = actions.run_training(ws, cfg, StopToken(), label=label)
    return last.model_dir


def lines_of(figure) -> dict:
    """{legend label: (epochs, values)} of a figure's curves."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in figure.axes[0].get_lines()}


@pytest.fixture
def two_runs(ctx, small_shapes):
    """A run, then one after a cleaning removed ten of the pictures."""
    ws = ctx.workspace(None)
    ws.set_dataset(small_shapes)
    first = train(ws, TINY, "first")
    keep = range(10, len(small_shapes))
    ws.set_dataset(replace(small_shapes, images=[small_shapes.images[i] for i in keep],
                           labels=[small_shapes.labels[i] for i in keep]))
    cleaned = train(ws, replace(TINY, epochs=2, img_size=40), "cleaned")
    return ws, [first, cleaned]


def test_runs_are_compared_and_any_one_becomes_the_sessions_model(ctx, ui, two_runs, from_page):
    ws, folders = two_runs
    compare = ui.train.compare
    shown = runs.show(ctx, compare, ws.key)
    assert set(shown) == set(compare.outputs)

    table = shown[compare.table]
    accuracies = [read_metrics(f)["val_accuracy"] for f in folders]
    assert table["run"].tolist() == [1, 2] and table["recipe / strategy"].tolist() == ["first", "cleaned"]
    assert table["data"].tolist() == ["v1", "v2"]  # the cleaning made a new version of the data
    assert table["in use"].tolist() == ["", "✓"] and table["image size"].tolist() == [32, 40]
    assert table["validation accuracy"].tolist() == [f"{a:.1%}" for a in accuracies]
    assert table["epochs"].tolist() == [1, 2] and all("circle " in text for text in table["per-class accuracy"])
    assert "| v2 |" in shown[compare.summary].splitlines()[-1]
    ids = [Path(f).name for f in folders]
    assert shown[compare.chosen].value == ids and [v for _, v in shown[compare.chosen].choices] == ids[::-1]
    assert shown[compare.use].value == ids[1]

    # every new run is chosen: its validation curves overlaid, one line per run, accuracy in percent
    titles = [runs.run_title(ws, r) for r in ws.runs]
    assert titles[1] == f"run 2 · cleaned · data v2 · {accuracies[1]:.1%}"
    loss, acc = lines_of(shown[compare.loss_plot]), lines_of(shown[compare.acc_plot])
    assert list(loss) == list(acc) == titles
    assert shown[compare.acc_plot].axes[0].get_title() == "Validation accuracy"
    assert loss[titles[1]] == ([1, 2], [h["val_loss"] for h in read_metrics(folders[1])["history"]])
    assert acc[titles[0]] == ([1], [read_metrics(folders[0])["history"][0]["val_acc"] * 100])

    colours = [line.get_color() for line in shown[compare.loss_plot].axes[0].get_lines()]
    assert colours[0] != colours[1]
    chosen = runs.choose(ctx, compare, [ids[1]], ws.key)  # alone, the second run keeps its colour
    assert list(lines_of(chosen[compare.loss_plot])) == [titles[1]] and ws.runs_chosen == [ids[1]]
    assert chosen[compare.acc_plot].axes[0].get_lines()[0].get_color() == colours[1]
    assert runs.choose(ctx, compare, [], ws.key) == {compare.loss_plot: None, compare.acc_plot: None}

    # the first run made the session's model: Classify, Evaluate and Export use it, and the tables say so
    ws.evaluation = dict(result="of the latest run")
    used = runs.use_run(ctx, compare, ids[0], ws.key)
    assert used[compare.notice] == "" and used[compare.use].value == ids[0]
    assert used[compare.table]["in use"].tolist() == ["✓", ""]
    assert "| **in use** | first |" in used[compare.summary]
    assert ws.model_dir == Path(folders[0]) and ws.get_predictor().img_size == 32
    assert actions.model_dir_of(ws) == Path(folders[0]) and "run 1: first" in model_in_use(ws)
    assert ws.evaluation is None  # the Evaluate tab's results were the other model's


def test_a_run_that_cannot_be_used_says_why(ctx, ui, from_page):
    ws, compare = ctx.workspace(None), ui.train.compare
    kept = ws.folder / "model-kept"
    ws.add_run(fake_run(kept, "aaa"))
    ws.set_model(kept)
    gone = ws.folder / "model-gone"
    ws.add_run(fake_run(gone, "aaa"))  # its folder lost its model files
    assert runs.use_run(ctx, compare, "model-elsewhere", ws.key) == {
        compare.notice: "⚠️ Choose one of the runs listed (older runs are not kept)."}
    assert runs.use_run(ctx, compare, "model-gone", ws.key) == {
        compare.notice: "⚠️ Run 2's model folder is gone (the session's files were cleaned up): train it again, or "
                        "choose another run."}
    assert ws.model_dir == kept  # the session keeps the model it had


def test_an_api_caller_gets_the_error_itself(ctx, ui):
    with pytest.raises(gr.Error, match="Choose one of the runs listed"):
        runs.use_run(ctx, ui.train.compare, None, ctx.workspace(None).key)


def fake_run(folder: Path, fingerprint: str) -> dict:
    folder.mkdir(parents=True)
    Path(f"{folder}.zip").write_bytes(b"zip")
    return dict(label="quick", model="resnet10t", img_size=32, val_acc=0.5, seconds=1.0, status="done",
                model_dir=str(folder), data=fingerprint)


def test_a_session_keeps_a_bounded_number_of_runs_never_dropping_the_one_in_use(ctx, monkeypatch):
    monkeypatch.setattr(workspace_lib, "MAX_RUNS", 2)
    ws = ctx.workspace(None)
    folders = [ws.folder / f"model-{n}" for n in range(4)]
    ws.add_run(fake_run(folders[0], "aaa"))
    ws.set_model(folders[0])  # the first run stays in use while later ones come
    ws.add_run(fake_run(folders[1], "aaa"))
    ws.add_run(fake_run(folders[2], "bbb"))
    assert [r["number"] for r in ws.runs] == [1, 3] and ws.runs_chosen == ["model-0", "model-2"]
    assert not folders[1].exists() and not Path(f"{folders[1]}.zip").exists() and folders[0].is_dir()
    ws.set_model(folders[2])
    ws.add_run(fake_run(folders[3], "aaa"))
    assert [r["number"] for r in ws.runs] == [3, 4] and not folders[0].exists() and folders[2].is_dir()
    assert ws.data_versions == {"aaa": 1, "bbb": 2}  # versions keep their numbers when their first run goes
    # a run that saved again (stopped, then saved its best epoch) stays one run, with its number
    ws.add_run(dict(ws.runs[-1], status="stopped"))
    assert [(r["number"], r["status"]) for r in ws.runs] == [(3, "done"), (4, "stopped")]
