"""A multi-label model's outputs: summarize() on hand-made scores, the model folder (config.json thresholds,
plain timm), Predictor's sigmoid probabilities and above/below split, the CLI's predict and eval, the ONNX
metadata and the model card.

The model is a resnet10t whose head is set by hand (zero weights, chosen biases), so every image gets the same
known probabilities and each outcome can be worked out exactly."""
import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from engine import multilabel as ml
from engine.__main__ import main
from engine.export import load_model_folder, save_model_folder, to_onnx
from engine.labelled import LabelledImages
from engine.model_card import render
from engine.predict import Predictor

NAMES = ["cat", "dog", "sun"]
PROBS = [0.9, 0.6, 0.2]  # every image's probability per label
THRESHOLDS = [0.5, 0.7, 0.1]  # dog is over 0.5 yet under its own threshold; sun under 0.5 yet over its own


def test_summarize_by_hand():
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.1], [0.6, 0.4]])
    targets = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [0, 1]])
    s = ml.summarize(targets, probs, ["a", "b"], [0.5, 0.5], top=16)
    a, b = s["per_label"]
    # a: predicted for images 0, 1, 4; true for 0, 2 -> tp 1, fp 2 (images 1: 0.8, 4: 0.6), fn 1 (image 2)
    assert (a["tp"], a["fp"], a["fn"], a["support"]) == (1, 2, 1, 2)
    assert a["precision"] == pytest.approx(1 / 3) and a["recall"] == 0.5 and a["f1"] == pytest.approx(2 / 5)
    assert [m["index"] for m in s["mistakes"]["a"]["false_positives"]] == [1, 4]  # most confident first
    assert [m["index"] for m in s["mistakes"]["a"]["false_negatives"]] == [2]
    # b: predicted for 1, 2; true for 1, 2, 4 -> tp 2, fp 0, fn 1 (image 4 at 0.4)
    assert (b["tp"], b["fp"], b["fn"]) == (2, 0, 1) and b["f1"] == pytest.approx(4 / 5)
    assert s["mistakes"]["b"] == dict(false_positives=[], false_negatives=[dict(index=4, p=pytest.approx(0.4))])
    assert s["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 2))
    assert s["macro_f1"] == pytest.approx((2 / 5 + 4 / 5) / 2)
    assert s["map"] == pytest.approx(ml.mean_average_precision(probs, targets))
    assert a["ap"] == pytest.approx((1 + 2 / 4) / 2)  # a's positives rank 1st (0.9) and 4th (0.3)
    assert s["predictions"] == [[0], [0, 1], [1], [], [0]]
    curve = s["pr_curves"]["a"]
    assert curve["recall"][-1] == 1.0 and curve["precision"][0] == 1.0 and curve["threshold"][0] == pytest.approx(0.9)


def test_summarize_limits_mistakes_and_curve_points():
    torch.manual_seed(0)
    probs, targets = torch.rand(500, 1), (torch.rand(500, 1) > 0.5).float()
    s = ml.summarize(targets, probs, ["x"], [0.5], top=3)
    fps = s["mistakes"]["x"]["false_positives"]
    assert len(fps) == 3 and fps[0]["p"] >= fps[1]["p"] >= fps[2]["p"]
    assert all(targets[m["index"], 0] == 0 and probs[m["index"], 0] >= 0.5 for m in fps)
    assert len(s["pr_curves"]["x"]["recall"]) == ml.PR_POINTS and s["pr_curves"]["x"]["recall"][-1] == 1.0
    assert ml.summarize(torch.zeros(4, 1), torch.rand(4, 1), ["x"], [0.5])["pr_curves"]["x"] is None


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import timm

    model = timm.create_model("resnet10t", num_classes=len(NAMES))
    with torch.no_grad():  # every image gets logit(PROBS): the answer does not depend on the picture
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in PROBS]))
    data_config = dict(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    metrics = dict(multi_label=True, val_map=0.75, num_val=4, best_epoch=2, val_loss=0.4,
                   data=dict(source="builtin:shapes-multi"),
                   multilabel=ml.summarize(torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]]),
                                           torch.tensor([PROBS] * 4), NAMES, THRESHOLDS))
    return save_model_folder(model, tmp_path_factory.mktemp("ml") / "model", NAMES, data_config, metrics,
                             multi_label=True, thresholds=THRESHOLDS, threshold_kind="per_label")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, colour in enumerate(["red", "green", "blue", "white"]):
        Image.new("RGB", (40, 30), colour).save(root / f"{i}.png")
        paths.append(str(root / f"{i}.png"))
    return paths


def test_the_folder_loads_in_plain_timm_with_its_thresholds(model_dir):
    import timm

    config = json.loads((model_dir / "config.json").read_text())
    assert config["multi_label"] is True and config["thresholds"] == THRESHOLDS and config["threshold_kind"] == "per_label"
    model = timm.create_model(config["architecture"], num_classes=config["num_classes"])
    model.load_state_dict(load_file(model_dir / "model.safetensors"))
    probs = model.eval()(torch.zeros(1, 3, 32, 32)).sigmoid()[0]
    assert probs.tolist() == pytest.approx(PROBS, abs=1e-5)
    assert [name for name, p, t in zip(config["label_names"], probs, config["thresholds"]) if p >= t] == ["cat", "sun"]
    assert load_model_folder(model_dir)[1]["thresholds"] == THRESHOLDS


def test_single_label_config_has_no_multi_label_entries(tmp_path):
    import timm

    folder = save_model_folder(timm.create_model("resnet10t", num_classes=2), tmp_path / "m", ["a", "b"],
                               dict(input_size=(3, 32, 32)), {})
    config = json.loads((folder / "config.json").read_text())
    assert not {"multi_label", "thresholds", "threshold_kind"} & set(config)
    assert Predictor.from_folder(folder).probabilities([Image.new("RGB", (8, 8))]).sum().item() == pytest.approx(1.0)


def test_predictor_gives_sigmoids_and_the_labels_above_their_thresholds(model_dir, pictures):
    predictor = Predictor.from_folder(model_dir)
    assert predictor.multi_label and predictor.thresholds == THRESHOLDS
    probs = predictor.probabilities(pictures, tta=True)
    assert probs.shape == (4, 3) and probs[0].tolist() == pytest.approx(PROBS, abs=1e-5)  # sigmoids: no sum to 1
    row = predictor.predict(pictures[:1], top_k=1)[0]
    assert list(row) == ["cat", "dog", "sun"]  # every label, highest first
    got = predictor.predict_labels(pictures[:2])
    assert list(got[0]["above"]) == ["cat", "sun"] and list(got[0]["below"]) == ["dog"]
    assert got[0]["above"]["sun"] == pytest.approx(0.2, abs=1e-5)
    overlay, caption = predictor.gradcam(pictures[0], class_name="sun")
    assert "'sun'" in caption


def test_evaluate_with_known_probabilities(model_dir, pictures):
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]])
    s = ml.evaluate(Predictor.from_folder(model_dir), pictures, targets)
    cat, dog, sun = s["per_label"]  # every image is called cat and sun, never dog
    assert (cat["tp"], cat["fp"], cat["fn"]) == (2, 2, 0) and cat["precision"] == 0.5
    assert (dog["tp"], dog["fp"], dog["fn"]) == (0, 0, 2) and dog["f1"] == 0.0
    assert [m["index"] for m in s["mistakes"]["dog"]["false_negatives"]] == [1, 3]
    assert [m["index"] for m in s["mistakes"]["sun"]["false_positives"]] == [0, 1]


def test_cli_predict_prints_several_labels(model_dir, pictures, capsys):
    assert main(["predict", "--model-dir", str(model_dir), *pictures[:2]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and lines[1]["image"] == pictures[1]
    assert list(lines[0]["above"]) == ["cat", "sun"] and list(lines[0]["below"]) == ["dog"]


def test_cli_eval_prints_map_f1_and_the_table(model_dir, pictures, tmp_path, capsys, monkeypatch):
    import engine.__main__ as cli

    # a multi-label dataset as engine.data.load gives it (labels.csv loading is another part's work)
    dataset = LabelledImages(["sun", "cat", "bird"], pictures, [(1,), (1,), (0,), (0, 2)], "test", multi_label=True)
    monkeypatch.setattr(cli, "_load_data", lambda args: dataset)
    out = tmp_path / "eval.json"
    assert main(["eval", "--model-dir", str(model_dir), "--data", "x", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert result == json.loads(out.read_text())
    cat = next(r for r in result["per_label"] if r["name"] == "cat")
    assert (cat["tp"], cat["fp"], cat["support"]) == (2, 2, 2)  # images 0, 1 are cats; every image is called one
    assert result["labels_not_in_data"] == ["dog"] and result["labels_unknown_to_model"] == ["bird"]
    assert result["mistakes"]["cat"]["false_positives"][0]["image"].endswith(".png")
    assert "mAP" in printed.err and "micro F1" in printed.err and "macro F1" in printed.err
    assert any(line.startswith("cat ") for line in printed.err.splitlines())


def test_onnx_metadata_holds_the_thresholds(model_dir, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = to_onnx(model_dir, tmp_path / "model.onnx")
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["multi_label"] is True and meta["thresholds"] == THRESHOLDS and meta["threshold_kind"] == "per_label"
    assert meta["label_names"] == NAMES


def test_model_card_says_multi_label_and_how_to_apply_the_thresholds(model_dir):
    card = render(model_dir, "someone/labels")
    assert "multi-label image classifier for 3 labels" in card
    assert "built-in multi-label *shapes* dataset" in card and "builtin:shapes-multi" in card  # named, not a folder
    assert "mAP: **75.0 %**" in card and "micro F1" in card and "accuracy" not in card.lower()
    assert ".sigmoid()" in card and 'config["thresholds"]' in card and "p >= t" in card
    assert "| cat | 0.500 |" in card and "sun (threshold 0.100)" in card
