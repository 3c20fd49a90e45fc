import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import sample

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_shapes):
    return save_folder(tmp_path_factory.mktemp("cli") / "data", small_shapes.images, small_shapes.labels, small_shapes.class_names)


def save_folder(root: Path, images, labels, class_names) -> Path:
    for image, label in zip(images, labels):
        d = root / class_names[label]
        d.mkdir(parents=True, exist_ok=True)
        image.save(d / f"{len(list(d.iterdir()))}.png")
    return root


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """`train` from the command line: a model folder and what the command printed."""
    out = tmp_path_factory.mktemp("cli-model") / "model"
    r = cli("train", "--data", str(folder), "--recipe", "scratch", "--model", "resnet10t", "--epochs", "2", "--img-size", "32",
            "--batch-size", "32", "--out", str(out))
    return out, r


def test_train_then_predict_then_eval(folder, trained):
    out, r = trained
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout.strip().splitlines()[-1])
    assert final["kind"] == "finished" and Path(final["model_dir"]) == out
    assert "epoch 2:" in r.stderr and "\r" not in r.stderr  # plain lines when not a terminal
    image = next((folder / "circle").iterdir())
    r = cli("predict", "--model-dir", str(out), "--top-k", "2", str(image), str(image))
    lines = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert r.returncode == 0 and len(lines) == 2 and set(lines[0]["top_k"]) <= {"circle", "square", "triangle"}
    r = cli("eval", "--model-dir", str(out), "--data", str(folder))
    result = json.loads(r.stdout)
    assert r.returncode == 0 and result["num_images"] == 120 and 0 <= result["accuracy"] <= 1


def test_transfer_a_trained_folder_to_new_classes(builtin_model, tmp_path):
    """--weights FOLDER: a model trained on the built-in 6 classes gives its backbone to a new 4-class dataset
    (new images): every backbone tensor loads unchanged, only the old head is skipped, and one head-only
    epoch beats chance (25 %) clearly."""
    source, _ = builtin_model
    images, labels = sample.generate(n_per_class=30, seed=7)
    keep = [i for i, y in enumerate(labels) if y >= 2]  # triangle, star, cross, ring
    new = save_folder(tmp_path / "new", [images[i] for i in keep], [labels[i] - 2 for i in keep], list(sample.CLASSES[2:]))
    out = tmp_path / "transferred"
    r = cli("train", "--data", str(new), "--recipe", "scratch", "--weights", str(source), "--freeze-backbone", "--epochs", "1",
            "--img-size", "48", "--batch-size", "8", "--lr", "1e-2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    before, after = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    body = [k for k in before if not k.startswith("fc.")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == f"Loaded {len(body)} tensors from {source}, skipped 2 (fc.bias, fc.weight)."
    assert all(torch.equal(before[k], after[k]) for k in body)  # frozen backbone, BatchNorm statistics included
    assert after["fc.weight"].shape[0] == 4 and metrics["class_names"] == sorted(sample.CLASSES[2:])
    assert metrics["val_accuracy"] >= 0.6


def test_every_training_option_has_a_flag():
    from engine.__main__ import _config, _parser
    from engine.train import DEFAULT_RECIPE, RECIPES, TrainConfig

    args = _parser().parse_args([
        "train", "--out", "x", "--model", "resnet10t", "--strategy", "progressive", "--epochs", "7", "--lr", "0.02",
        "--batch-size", "16", "--img-size", "96", "--val-fraction", "0.3", "--augment", "standard", "--weight-decay", "0.01",
        "--label-smoothing", "0", "--mixup", "0.2", "--cutmix", "1", "--freeze-epochs", "2", "--freeze-layers", "1",
        "--lr-mult", "10", "--drop-rate", "0.1", "--drop-path-rate", "0.05", "--patience", "3", "--grad-clip", "1",
        "--accum-steps", "4", "--seed", "5", "--progressive-resize", "--no-channels-last", "--bf16", "--scratch",
        "--memory-budget-mb", "512", "--head-lr", "0.05", "--freeze-bn",
    ])
    expected = TrainConfig(model="resnet10t", weights="scratch", strategy="progressive", epochs=7, lr=0.02, batch_size=16,
                           img_size=96, val_fraction=0.3, augment="standard", weight_decay=0.01, label_smoothing=0.0,
                           mixup=0.2, cutmix=1.0, freeze_epochs=2, freeze_layers=1, lr_mult=10.0, drop_rate=0.1,
                           drop_path_rate=0.05, patience=3, grad_clip=1.0, accum_steps=4, seed=5, progressive_resize=True,
                           channels_last=False, bf16=True, memory_budget_mb=512, head_lr=0.05, freeze_bn=True)
    assert _config(args) == expected
    defaults = _config(_parser().parse_args(["train", "--out", "x"]))
    assert defaults == TrainConfig(**RECIPES[DEFAULT_RECIPE])  # no flags: the default recipe, the rest TrainConfig's
    assert defaults.model.startswith("tf_efficientnet_lite0") and defaults.weights == "pretrained"
    scratch = _config(_parser().parse_args(["train", "--out", "x", "--recipe", "scratch", "--epochs", "3"]))
    assert scratch == TrainConfig(**RECIPES["scratch"] | dict(epochs=3))
    assert _parser().parse_args(["train", "--out", "x", "--freeze-backbone"]).strategy == "head"


def test_lr_find_writes_json_and_png(folder, tmp_path):
    r = cli("lr-find", "--data", str(folder), "--recipe", "scratch", "--model", "resnet10t", "--strategy", "head", "--img-size", "32",
            "--start-lr", "1e-5", "--end-lr", "100", "--num-steps", "60", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert len(saved["lrs"]) == len(saved["losses"]) > 10 and saved["lrs"][0] == pytest.approx(1e-5)
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert printed["suggestions"] == saved["suggestions"] and "valley" in saved["suggestions"]
    png = (tmp_path / "lr_find.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real figure, not an empty canvas


def test_lr_find_sizes_its_steps_to_the_training_run(folder, tmp_path):
    """Without --num-steps: a quarter of the training run's steps (here 3 epochs of 3 batches: the floor, 20)."""
    r = cli("lr-find", "--data", str(folder), "--recipe", "scratch", "--model", "resnet10t", "--img-size", "32", "--epochs", "3",
            "--batch-size", "32", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "LR finder: 20 steps, about 222% of the 9 steps of the training run (auto: 25% of them, 20 to 100)" in r.stderr
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert len(saved["lrs"]) <= 20 and "only" in saved["caution"]  # and a curve that short is flagged
    assert "(default: auto)" in cli("lr-find", "--help").stdout


@pytest.mark.parametrize("args,needle", [
    (["train", "--data", "/no/such/place", "--out", "x"], "not a folder"),
    (["train", "--model", "resnet81", "--out", "x"], "Did you mean"),
    (["train", "--epochs", "0", "--out", "x"], "Epochs must be"),
    (["train", "--model", "resnet18", "--pretrained", "--out", "x"], "cannot reach"),
    (["predict", "--model-dir", "/nope", "img.png"], "not a Snapfit model folder"),
    (["train"], "Give --out FOLDER"),
    (["train", "--resume", "/no/such/run"], "Nothing to resume: there is no run.resume.pt beside /no/such/run"),
    (["lr-find", "--start-lr", "1", "--end-lr", "0.1", "--out", "x"], "start LR must be below the end LR"),
    (["lr-find", "--num-steps", "3", "--out", "x"], "from 10 to 1000 (got 3)"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and needle in r.stderr and "Traceback" not in r.stderr


def test_export_onnx_matches_pytorch(trained, tmp_path):
    import numpy as np
    import onnx
    import onnxruntime

    from engine.export import load_model_folder

    model_dir, _ = trained
    out = tmp_path / "model.onnx"
    r = cli("export", "--model-dir", str(model_dir), "--onnx", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"onnx": str(out)}
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["label_names"] == ["circle", "square", "triangle"] and meta["input_size"] == [3, 32, 32]
    model, _ = load_model_folder(model_dir)
    x = torch.randn(5, 3, 32, 32)  # another batch size than the export's example: the batch axis is dynamic
    with torch.no_grad():
        expected = model(x).numpy()
    got = onnxruntime.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_models_lists_the_catalog_with_what_works_offline_first():
    r = cli("models")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.strip().splitlines()[1:]
    assert rows[0].startswith("tf_efficientnet_lite0.in1k") and "built in" in rows[0]
    resnet = next(row for row in rows if row.startswith("resnet18"))
    assert "no (Hub offline)" in resnet and rows.index(resnet) > rows.index(rows[0])
    assert "(no GPU here: slow)" in next(row for row in rows if row.startswith("resnet50"))


def test_resume_goes_on_from_the_checkpoint_to_the_weights_of_one_run(folder, tmp_path, monkeypatch):
    from engine import checkpoint, data
    from engine.config import RECIPES
    from engine.stopping import StopToken
    from engine.train import TrainConfig, fit, preflight

    cfg = preflight(TrainConfig(**RECIPES["scratch"] | dict(model="resnet10t", epochs=3, img_size=32, batch_size=32)))
    dataset = data.load(str(folder))
    whole = list(fit(dataset, cfg, str(tmp_path / "whole")))[-1]
    run, stop = tmp_path / "run", StopToken()
    monkeypatch.setattr(checkpoint, "EVERY", 0.0)  # a checkpoint at every epoch end
    for event in fit(dataset, cfg, str(run), stop, checkpoint=str(checkpoint.beside(run))):
        if event.kind == "epoch_end" and event.epoch == 2:
            stop.stop()  # the Stop button, as the second epoch ends: its checkpoint is not written, the first's is
    assert checkpoint.beside(run).is_file()
    refused = cli("train", "--resume", str(run), "--epochs", "5")
    assert refused.returncode == 2 and "--resume goes on with the run's own settings: drop --epochs" in refused.stderr
    r = cli("train", "--resume", str(run))  # no --data: the run's own folder, from the checkpoint
    assert r.returncode == 0, r.stderr
    assert "Resumed after epoch 1" in r.stderr and json.loads(r.stdout.splitlines()[-1])["kind"] == "finished"
    assert not checkpoint.beside(run).exists()
    assert load_file(run / "model.safetensors").keys() == load_file(Path(whole.model_dir) / "model.safetensors").keys()
    assert (run / "model.safetensors").read_bytes() == (Path(whole.model_dir) / "model.safetensors").read_bytes()
