import io
import math

import numpy as np
import pytest
import torch

from engine.config import AUTO_STEPS_MAX, AUTO_STEPS_MIN, FinderConfig, auto_steps, recipe
from engine.errors import UserError
from engine.events import LRFinished, LRStarted, LRStep, Started, describe
from engine.figures import loss_limits, lr_curve
from engine.lr_finder import TRUSTED_STEPS, VIT_NOTE, caution, find, smooth, suggest
from engine.stopping import StopToken
from engine.train import Learner, TrainConfig, decode_once, fit


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


# ---------------------------------------------------------------------------------------------- how many steps


def test_auto_steps_are_a_quarter_of_the_training_run_within_bounds():
    assert auto_steps(36) == AUTO_STEPS_MIN == 20  # a tiny run: the floor, not 100 steps for 36 of training
    assert auto_steps(144) == 36
    assert auto_steps(400) == 100
    assert auto_steps(100_000) == AUTO_STEPS_MAX == 100


def test_without_steps_the_test_is_sized_to_the_training_run_and_says_so(small_shapes, tmp_path):
    cfg = TrainConfig(model="resnet10t", strategy="full", img_size=32, batch_size=16, epochs=12)  # from scratch
    events = list(find(small_shapes, cfg, FinderConfig()))
    plan = next(e for e in events if isinstance(e, LRStarted))
    # the training run's steps, as training itself counts them
    started = next(e for e in fit(small_shapes, cfg, str(tmp_path / "m")) if isinstance(e, Started))
    assert plan.training_steps == started.total_steps == 12 * 6  # 96 training images, 16 a batch
    assert plan.auto and plan.total == auto_steps(72) == 20 and plan.lr == cfg.resolved_lr()
    assert describe(plan) == "LR finder: 20 steps, about 28% of the 72 steps of the training run (auto: 25% of them, 20 to 100)"
    steps = [e for e in events if isinstance(e, LRStep)]
    assert steps and all(e.total == 20 for e in steps) and len(events[-1].lrs) == len(steps) <= 20
    assert steps[-1].seconds > 0 and steps[-1].eta == pytest.approx(steps[-1].seconds / steps[-1].step * (20 - steps[-1].step))
    # a real tiny run: its suggestions are offered but flagged, with the reason
    assert events[-1].suggestions and "only 20 steps" in events[-1].caution


def test_given_steps_override_the_automatic_size(small_shapes):
    cfg = TrainConfig(model="resnet10t", strategy="head", img_size=32, batch_size=16, epochs=12)
    plan = next(e for e in find(small_shapes, cfg, FinderConfig(num_steps=30)) if isinstance(e, LRStarted))
    assert not plan.auto and plan.total == 30 and "auto" not in describe(plan)


# ---------------------------------------------------------------------------------------------- when to trust it


def sigmoid_curve(n: int, noise: float, seed: int = 0, end: float = 1.0):
    """A textbook range test: flat at 2, falling by 1.5 between 1e-4 and 1e-2, then exploding; `noise` per batch."""
    lrs = np.logspace(-6, end, n)
    x = np.log10(lrs)
    clean = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 4)) + np.where(x > -1, (x + 1) ** 2 * 3, 0)
    losses = clean + np.random.default_rng(seed).normal(0, noise, n)
    return list(lrs), list(losses), smooth(list(losses))


def test_a_clean_curve_is_trusted():
    lrs, losses, smoothed = sigmoid_curve(100, noise=0.05)
    assert suggest(lrs, smoothed, 100)[0] and caution(lrs, losses, smoothed, 100, 1000) == ""


def test_a_short_curve_is_not_trusted():
    lrs, losses, smoothed = sigmoid_curve(TRUSTED_STEPS - 10, noise=0.05)
    assert suggest(lrs, smoothed, len(lrs))[0]  # fastai would still suggest...
    assert f"only {TRUSTED_STEPS - 10} steps" in caution(lrs, losses, smoothed, len(lrs), 1000)  # ...but not here


def test_a_fall_within_the_noise_is_not_trusted():
    lrs, losses, smoothed = sigmoid_curve(100, noise=1.5)
    assert "no clear descent" in caution(lrs, losses, smoothed, 100, 1000)


def test_a_curve_still_falling_at_the_end_is_not_trusted():
    lrs, losses, smoothed = sigmoid_curve(100, noise=0.05, end=-2.5)  # the range ends half-way down the slope
    assert "still falling" in caution(lrs, losses, smoothed, 100, 1000)


def test_a_test_longer_than_the_training_run_is_not_trusted():
    lrs, losses, smoothed = sigmoid_curve(100, noise=0.05)
    assert "more than the 36 steps of the training run" in caution(lrs, losses, smoothed, 100, 36)


@pytest.mark.slow
def test_a_clean_real_curve_is_trusted(shapes):
    """The default recipe (a head on the built-in EfficientNet-Lite0's features) on the 900 built-in images: 690
    training steps, so the full 100-step test, and a curve with a clear descent."""
    events = list(find(shapes, recipe("quick", img_size=64), FinderConfig()))
    plan, result = next(e for e in events if isinstance(e, LRStarted)), events[-1]
    assert plan.auto and plan.training_steps == 690 and plan.total == 100
    assert isinstance(result, LRFinished) and result.suggestions and result.caution == "", result.caution


# ---------------------------------------------------------------------------------------------- the plot


def test_the_plot_shows_the_whole_fall_and_not_the_diverging_tail():
    lrs = list(np.logspace(-6, 1, 100))
    x = np.log10(lrs)
    smoothed = list(2.0 - 1.9 / (1 + np.exp(-(x + 4) * 3)) + np.where(x > -1, (x + 1) ** 2 * 3, 0))  # 2 down to 0.1
    losses = smoothed
    low, high = loss_limits(losses, smoothed)
    finite = [v for v in smoothed if math.isfinite(v)]
    start, bottom = max(smoothed[: int(np.argmin(finite)) + 1]), min(finite)
    assert start > 4 * bottom  # where limits of 4x the minimum cut the curve's start off
    assert low < bottom and start < high < 1.2 * start  # the whole fall shows, and fills the height
    assert max(finite) > high  # the diverging tail runs off the top
    fig = lr_curve(lrs, losses, smoothed, suggest(lrs, smoothed, 100)[0])
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((low, high))
    assert fig.legends and not ax.get_legend()  # the legend is the figure's, beside the axes, not over the curve
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out as the app and the CLI see it
    legend_box, axes_box = fig.legends[0].get_window_extent(), ax.get_window_extent()
    assert legend_box.x0 >= axes_box.x1


def test_the_plot_of_a_curve_that_never_falls_still_shows_it():
    smoothed = list(np.linspace(1.0, 3.0, 60))
    low, high = loss_limits(smoothed, smoothed)
    assert low < 1.0 and 1.4 < high < 2.0  # its start, up to half as high again as its minimum
