import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_shapes):
    root = tmp_path_factory.mktemp("cli") / "data"
    for image, label in zip(small_shapes.images, small_shapes.labels):
        d = root / small_shapes.class_names[label]
        d.mkdir(parents=True, exist_ok=True)
        image.save(d / f"{len(list(d.iterdir()))}.png")
    return root


def test_train_then_predict_then_eval(folder, tmp_path):
    out = tmp_path / "model"
    r = cli("train", "--data", str(folder), "--model", "resnet10t", "--epochs", "2", "--img-size", "32", "--batch-size", "32",
            "--out", str(out))
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


def test_lr_find_writes_json(folder, tmp_path):
    r = cli("lr-find", "--data", str(folder), "--model", "resnet10t", "--strategy", "head", "--img-size", "32",
            "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert len(saved["lrs"]) == len(saved["losses"]) > 10


@pytest.mark.parametrize("args,needle", [
    (["train", "--data", "/no/such/place", "--out", "x"], "not a folder"),
    (["train", "--model", "resnet81", "--out", "x"], "Did you mean"),
    (["train", "--epochs", "0", "--out", "x"], "Epochs must be"),
    (["train", "--pretrained", "--out", "x"], "cannot reach"),
    (["predict", "--model-dir", "/nope", "img.png"], "not a Snapfit model folder"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and needle in r.stderr and "Traceback" not in r.stderr
