"""The learning rates a run uses are what engine/train.py's docstrings claim: one-cycle as torch's OneCycleLR with
fastai's settings, a pure function of the step that never runs past its end, and discriminative LRs geometric
from the stem (lr / lr_mult) to the head (lr)."""
from __future__ import annotations

import math

import pytest
import torch

from engine.config import TrainConfig
from engine.events import EpochEnd, Started, Step
from engine.train import DIV, FINAL_DIV, Learner, decode_once, fit, one_cycle, plan


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8, 13, 40, 101])
def test_one_cycle_is_torchs_one_cycle_with_fastais_settings(total):
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([p], lr=1.0)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total, pct_start=0.25,
                                                    div_factor=25.0, final_div_factor=1e5 / 25, base_momentum=0.85,
                                                    max_momentum=0.95)
    for step in range(total):
        lr, momentum = one_cycle(step, total)
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        assert momentum == pytest.approx(optimizer.param_groups[0]["betas"][0], rel=1e-12)
        optimizer.step()
        if step < total - 1:
            reference.step()


def test_one_cycle_warms_up_peaks_and_anneals_and_stays_at_its_end():
    total = 100
    lrs = [one_cycle(s, total)[0] for s in range(total)]
    assert lrs[0] == pytest.approx(1 / DIV) and max(lrs) == pytest.approx(1.0, rel=1e-3)
    assert 20 <= lrs.index(max(lrs)) <= 25  # the peak after a quarter of the steps
    assert lrs[-1] == pytest.approx(1 / FINAL_DIV)
    assert all(a <= b for a, b in zip(lrs[:24], lrs[1:25])) and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
    assert one_cycle(total, total) == one_cycle(total + 50, total) == one_cycle(total - 1, total)  # past the end: no error
    assert one_cycle(4, 4) == one_cycle(3, 4)  # 4 steps: where torch's OneCycleLR divides by zero


def test_every_step_of_a_run_uses_the_schedule_and_the_count_is_exact(small_shapes, tmp_path):
    """Step events carry the LR each step used: the one-cycle curve over exactly the steps Started announced, for
    the head on cached features and then for the whole network, with accumulation and mixup's even batches."""
    cfg = TrainConfig(model="resnet10t", strategy="finetune", freeze_epochs=2, epochs=2, lr=1e-3, head_lr=1e-2,
                      accum_steps=3, mixup=0.2, batch_size=10, img_size=32, bf16=False)
    events = list(fit(small_shapes, cfg, str(tmp_path / "m")))
    started = next(e for e in events if isinstance(e, Started))
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == started.total_steps and [s.step for s in steps] == list(range(1, len(steps) + 1))
    head_phase, body_phase = plan(cfg)
    epochs = [e.epoch for e in steps]
    head_steps = [s for s in steps if s.epoch <= head_phase.epochs]
    body_steps = [s for s in steps if s.epoch > head_phase.epochs]
    for phase, phase_steps in ((head_phase, head_steps), (body_phase, body_steps)):
        expected = [phase.lr * one_cycle(i, len(phase_steps))[0] for i in range(len(phase_steps))]
        assert [s.lr for s in phase_steps] == pytest.approx(expected, rel=1e-9)
    assert sorted(set(epochs)) == [1, 2, 3, 4]
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2, 3, 4]


@pytest.mark.parametrize("strategy,discriminative", [("finetune", True), ("progressive", True), ("full", False)])
def test_discriminative_lrs_are_geometric_from_stem_to_head(small_shapes, strategy, discriminative):
    cfg = TrainConfig(model="resnet10t", weights="scratch", strategy=strategy, lr=1e-2, lr_mult=100.0, img_size=32)
    learner = Learner(decode_once(small_shapes, 32), cfg)
    phase = plan(cfg)[-1]
    lrs = learner.group_lrs(phase.lr, phase.discriminative)
    n = len(learner.groups)
    assert n >= 3 and lrs[-1] == pytest.approx(phase.lr)
    if not discriminative:
        assert lrs == [phase.lr] * n
        return
    assert lrs[0] == pytest.approx(phase.lr / 100)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([100 ** (1 / (n - 1))] * (n - 1))
    # and the optimiser really gives each layer group its own: a parameter's group peak is its layer group's LR
    optimizer = learner.optimizer(lrs)
    for group_params, lr in zip(learner.groups, lrs):
        owner = next(g for g in optimizer.param_groups if any(p is group_params[0] for p in g["params"]))
        assert owner["peak_lr"] == pytest.approx(lr)
    assert math.isclose(optimizer.param_groups[0]["weight_decay"], cfg.weight_decay)
