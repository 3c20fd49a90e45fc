import math

import numpy as np
import pytest
import torch

from engine.config import FinderConfig
from engine.errors import UserError
from engine.lr_finder import VIT_NOTE, find, smooth, suggest
from engine.stopping import StopToken
from engine.train import Learner, TrainConfig, decode_once


@pytest.mark.parametrize("strategy", ["full", "head"])
def test_range_test_restores_weights_and_batchnorm_bit_exactly(small_shapes, strategy):
    cfg = TrainConfig(model="resnet10t", strategy=strategy, img_size=32, batch_size=16)
    learner = Learner(decode_once(small_shapes, 32), cfg)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    flags = [p.requires_grad for p in learner.model.parameters()]
    events = list(find(None, cfg, FinderConfig(num_steps=30), learner=learner))
    result = events[-1]
    assert result.kind == "lr_finished" and 5 <= len(result.lrs) <= 30
    assert [e.kind for e in events[:-1]].count("lr_step") == len(result.lrs)
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # includes BN running stats
    assert flags == [p.requires_grad for p in learner.model.parameters()]
    assert all(p.grad is None for p in learner.model.parameters())


def test_lrs_rise_exponentially_and_stop_on_divergence(small_shapes):
    cfg = TrainConfig(model="resnet10t", strategy="head", img_size=32, batch_size=16)
    result = list(find(small_shapes, cfg, FinderConfig(start_lr=1e-5, end_lr=1e4, num_steps=200)))[-1]
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0])
    assert len(result.lrs) < 200  # the loss blew up well before 1e4 and the test stopped early


def test_without_stop_div_every_step_runs(small_shapes):
    cfg = TrainConfig(model="resnet10t", strategy="head", img_size=32, batch_size=16)
    result = list(find(small_shapes, cfg, FinderConfig(start_lr=1e-5, end_lr=1e4, num_steps=40, stop_div=False)))[-1]
    assert len(result.lrs) == 40 and result.lrs[-1] == pytest.approx(1e4)


def test_stop_ends_the_test_within_one_step_and_restores(small_shapes):
    cfg = TrainConfig(model="resnet10t", strategy="full", img_size=32, batch_size=16)
    learner = Learner(decode_once(small_shapes, 32), cfg)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    stop, events = StopToken(), []
    for event in find(None, cfg, FinderConfig(num_steps=100), stop=stop, learner=learner):
        events.append(event)
        if event.kind == "lr_step" and event.step == 12:
            stop.stop()
    assert events[-1].stopped and len(events[-1].lrs) == 12
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())


@pytest.mark.parametrize("start,end,steps,needle", [(1.0, 0.1, 100, "below the end LR"), (0.0, 1.0, 100, "Start LR must be a number from"),
                                                    (1e-7, 10.0, 3, "Steps must be a whole number from 10 to 1000")])
def test_bad_ranges_are_clear_errors(small_shapes, start, end, steps, needle):
    with pytest.raises(UserError, match=needle):
        list(find(small_shapes, TrainConfig(model="resnet10t"), FinderConfig(start, end, steps)))


def test_suggestions_on_a_known_curve():
    lrs = list(np.logspace(-6, 1, 100))
    # loss flat, then falling between 1e-4 and 1e-2, then exploding
    x = np.log10(lrs)
    losses = list(2.0 - 1.5 / (1 + np.exp(-(x + 3) * 4)) + np.where(x > -1, (x + 1) ** 2 * 3, 0))
    found, message = suggest(lrs, losses)
    assert message == ""
    assert set(found) == {"valley", "steep", "minimum", "slide"}
    assert 1e-4 < found["steep"] < 1e-2
    assert 1e-5 < found["valley"] < 1e-1
    assert math.isclose(found["minimum"], lrs[int(np.argmin(losses[10:95])) + 10] / 10)


def test_short_or_flat_curves_get_a_message_not_a_number():
    found, message = suggest([1e-3, 1e-2, 1e-1], [1.0, 0.9, 5.0])
    assert found == {} and "too short" in message
    found, message = suggest(list(np.logspace(-6, 0, 50)), [1.0] * 50)
    assert found == {} and "hardly changed" in message


def test_smoothing_is_debiased():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, float("nan")])[1] == math.inf


def test_vision_transformers_get_the_note(small_shapes):
    cfg = TrainConfig(model="vit_tiny_patch16_224", strategy="head", img_size=32, batch_size=16)
    result = list(find(small_shapes, cfg, FinderConfig(num_steps=30)))[-1]
    assert VIT_NOTE in result.message
