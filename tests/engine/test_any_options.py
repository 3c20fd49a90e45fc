"""No combination of options crashes: hypothesis draws training (and LR finder) configurations across every option
that changes the loop, on datasets as small as 2 classes of 3 images, some values outside their valid range on
purpose. Each run either saves a model folder, or is refused before its first step with a one-line UserError
naming the option (or the data) at fault: never a traceback.

Bounded to run in a couple of minutes on 2 CPU cores: tiny images, resnet10t from scratch or the built-in
EfficientNet-Lite0, and `derandomize` so CI draws the same examples every time. Set SNAPFIT_HYPOTHESIS_EXAMPLES
for a longer local search.
"""
from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import data as data_lib
from engine import sample
from engine.config import STRATEGIES, FinderConfig, TrainConfig, options
from engine.errors import UserError
from engine.events import Finished, LRFinished, LRStep, Step
from engine.export import load_model_folder
from engine.lr_finder import find
from engine.train import fit

EXAMPLES = int(os.environ.get("SNAPFIT_HYPOTHESIS_EXAMPLES", "25"))
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
MODELS = [("resnet10t", "scratch"), ("tf_efficientnet_lite0", "pretrained")]


def tiny_dataset(classes: int, per_class: int) -> data_lib.LabelledImages:
    images, labels = sample.generate(n_per_class=per_class, seed=classes * 10 + per_class)
    keep = [i for i, y in enumerate(labels) if y < classes]
    return data_lib.LabelledImages(list(sample.CLASSES[:classes]), [images[i] for i in keep], [labels[i] for i in keep],
                                   "test")


training_options = st.fixed_dictionaries(dict(
    model_weights=st.sampled_from(MODELS),
    strategy=st.sampled_from(("auto", *STRATEGIES)),
    epochs=st.integers(1, 3),
    batch_size=st.sampled_from([2, 3, 4, 5, 8, 64]),
    accum_steps=st.integers(1, 3),
    img_size=st.sampled_from([16, 24, 32, 40]),
    mixup=st.sampled_from([0.0, 0.4]),
    cutmix=st.sampled_from([0.0, 1.0]),
    label_smoothing=st.sampled_from([0.0, 0.1]),
    progressive_resize=st.booleans(),
    patience=st.integers(0, 2),
    freeze_epochs=st.integers(0, 2),
    freeze_layers=st.integers(0, 6),
    grad_clip=st.sampled_from([0.0, 1.0]),
    lr=st.sampled_from([None, 1e-3]),
))
# Values outside an option's range: now and then one of them replaces the valid value drawn.
OUT_OF_RANGE = dict(epochs=[0, 1001], batch_size=[0, 1], accum_steps=[0], img_size=[8], cutmix=[-0.5],
                    label_smoothing=[0.6], freeze_layers=[17], lr=[0.0, float("nan")])
one_bad_value = st.one_of(st.none(), st.none(), st.none(),
                          st.sampled_from([(name, v) for name, values in OUT_OF_RANGE.items() for v in values]))
datasets = st.tuples(st.integers(2, 3), st.integers(3, 6))


def config_of(drawn: dict, bad: tuple | None = None) -> TrainConfig:
    values = dict(drawn)
    values["model"], values["weights"] = values.pop("model_weights")
    if bad is not None:
        values[bad[0]] = bad[1]
    return TrainConfig(**values, bf16=False)


def out_of_range(cfg: TrainConfig) -> list[str]:
    """The labels of the options whose values the table refuses."""
    return [opt.label for name, opt in options(TrainConfig).items() if opt.check(getattr(cfg, name))]


def assert_refused_up_front(exc: UserError, events: list, cfg) -> None:
    message = str(exc)
    assert message and "\n" not in message, message
    assert not any(isinstance(e, (Step, LRStep)) for e in events), f"refused only after training began: {message}"
    bad = out_of_range(cfg)
    if bad:  # the first option out of range is the one named
        assert message.startswith(bad[0]), (message, bad)


@BOUNDED
@given(drawn=training_options, bad=one_bad_value, shape=datasets)
def test_every_training_configuration_trains_or_is_refused_with_one_line(drawn, bad, shape):
    cfg = config_of(drawn, bad)
    events = []
    with tempfile.TemporaryDirectory() as out:
        try:
            events += fit(tiny_dataset(*shape), cfg, out)
        except UserError as exc:
            assert_refused_up_front(exc, events, cfg)
            event(f"refused: {str(exc).split(' must ')[0][:40]}")
            return
        event(f"trained {cfg.model}")
        assert not out_of_range(cfg), f"trained with values outside their range: {out_of_range(cfg)}"
        assert isinstance(events[-1], Finished)
        model, _ = load_model_folder(events[-1].model_dir)
        assert model.num_classes == shape[0]


finder_options = st.fixed_dictionaries(dict(
    start_lr=st.one_of(st.sampled_from([1e-7, 1e-5]), st.sampled_from([1e-7, 0.0, -1.0, 5.0])),
    end_lr=st.sampled_from([1.0, 10.0]),
    num_steps=st.one_of(st.sampled_from([10, 25]), st.sampled_from([10, 3, 5000])),
    stop_div=st.booleans(),
))


@BOUNDED
@given(drawn=training_options, bad=one_bad_value, finder=finder_options, shape=datasets)
def test_every_lr_finder_configuration_finishes_or_is_refused_with_one_line(drawn, bad, finder, shape):
    cfg, events = config_of(drawn, bad), []
    finder_cfg = FinderConfig(**finder)
    try:
        events += find(tiny_dataset(*shape), cfg, finder_cfg)
    except UserError as exc:
        assert_refused_up_front(exc, events, cfg)
        if not out_of_range(cfg):
            bad = [o.label for n, o in options(FinderConfig).items() if o.check(finder[n])]
            assert not bad or str(exc).startswith(bad[0]), (str(exc), bad)
        return
    assert not out_of_range(cfg)
    result = events[-1]
    assert isinstance(result, LRFinished) and 1 <= len(result.lrs) <= finder_cfg.num_steps


def test_the_command_from_the_issue_trains(tmp_path):
    """Head on cached features with accumulation used to step its one-cycle schedule past the end."""
    cfg = TrainConfig(strategy="head", accum_steps=2, epochs=2, img_size=32)
    events = list(fit(tiny_dataset(3, 12), cfg, str(tmp_path / "x")))
    assert isinstance(events[-1], Finished)


@pytest.mark.parametrize("n_per_class", [3, 5])
def test_mixup_with_odd_batches_and_fewer_images_than_a_batch(tmp_path, n_per_class):
    """timm's Mixup needs an even batch: an odd batch size, or fewer images than one batch, still trains."""
    cfg = TrainConfig(mixup=0.4, cutmix=1.0, batch_size=5, epochs=2, img_size=16)
    events = list(fit(tiny_dataset(2, n_per_class), cfg, str(tmp_path / "m")))
    assert isinstance(events[-1], Finished)
    assert any(isinstance(e, Step) for e in events)
