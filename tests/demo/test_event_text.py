"""One description of each training and LR-finder event, shared by the command line's progress and the app's
training log (engine.events.describe), with events told apart by their type."""
import dataclasses

import pytest

from demo.progress import TrainingProgress
from engine import events
from engine.__main__ import _Progress
from engine.events import EpochEnd, Finished, Log, LRFinished, LRStarted, LRStep, Paused, SavedBeforeFailure, Started, Step, Stopped, describe

EXAMPLES = [
    (Log("Decoding 900 images once at 48 px"), "Decoding 900 images once at 48 px"),
    (Started(5, 12, 60, 720, 180, "resnet10t", "full", "cpu"),
     "training resnet10t (full) on cpu: 720 training / 180 validation images"),
    (Step(7, 1, 0.51234, 2.5e-3, 812.4), "step 7 (epoch 1): loss 0.5123, lr 2.50e-03, 812 images/s"),
    (EpochEnd(2, 0.4, 0.35, 0.875, 3.21, 1e-3),
     "epoch 2: train loss 0.4000, val loss 0.3500, val accuracy 87.5% (3.2 s)"),
    (Finished("runs/m", 4, 0.9, 20.4), "finished in 20 s: epoch 4 (90.0% validation accuracy) is saved in runs/m"),
    (Stopped("runs/m", 2, 9.0), "stopped after 2 epochs (9 s): the best epoch so far is saved in runs/m"),
    (Stopped("", 0, 1.0), "stopped after 0 epochs (1 s): no epoch ended, nothing saved"),
    (SavedBeforeFailure("runs/m", 1, 0.5),
     "the run failed after epoch 1; that epoch (50.0% validation accuracy) is saved in runs/m"),
    (Paused("runs/m", "runs/m.resume.pt", 3, 100.0), "checkpoint after epoch 3; going on in the next GPU call"),
    (LRStarted(20, 36, True, 1e-2),
     "LR finder: 20 steps, about 56% of the 36 steps of the training run (auto: 25% of them, 20 to 100)"),
    (LRStarted(60, 240, False, 1e-2), "LR finder: 60 steps, about 25% of the 240 steps of the training run"),
    (LRStep(12, 100, 3e-4, 1.25, 1.3), "LR finder step 12/100: lr 3.00e-04, loss 1.2500"),
    (LRStep(12, 100, 3e-4, 1.25, 1.3, seconds=6.0), "LR finder step 12/100: lr 3.00e-04, loss 1.2500, ETA 0:44"),
    (LRFinished([1e-5, 1e-4], [2.0, 1.0], [2.0, 1.5], {"valley": 1e-4}, seconds=1.23),
     "LR finder done after 2 steps (1.2 s): valley 1.00e-04"),
    (LRFinished([1e-5], [2.0], [2.0], {}, "Too few steps to suggest a rate.", stopped=True, seconds=0.5),
     "LR finder stopped after 1 steps (0.5 s): Too few steps to suggest a rate."),
    (LRFinished([1e-5, 1e-4], [2.0, 1.0], [2.0, 1.5], {"valley": 1e-4}, seconds=1.23, caution="the curve has only 2 steps."),
     "LR finder done after 2 steps (1.2 s): valley 1.00e-04 (not reliable: the curve has only 2 steps.)"),
]


@pytest.mark.parametrize("event,line", EXAMPLES, ids=lambda v: type(v).__name__ if dataclasses.is_dataclass(v) else None)
def test_each_event_has_one_line(event, line):
    assert describe(event) == line


def test_every_event_class_is_described():
    described = {type(event) for event, _ in EXAMPLES}
    classes = {c for c in vars(events).values() if isinstance(c, type) and dataclasses.is_dataclass(c)}
    assert classes <= described, f"no example (and perhaps no description) for {classes - described}"


def test_the_command_line_prints_the_words_the_app_logs(capsys):
    shown, progress = _Progress(), TrainingProgress()
    assert not shown.tty  # under pytest stderr is not a terminal: plain lines, no bar
    run = [Log("Decoding 8 images once at 32 px"), Started(1, 1, 1, 6, 2, "resnet10t", "full", "cpu"),
           Step(1, 1, 1.0, 1e-3, 10.0), EpochEnd(1, 1.0, 0.9, 0.5, 0.1, 1e-3)]
    for event in run:
        shown(event)
        progress.add(event)
    printed = capsys.readouterr().err.splitlines()
    assert printed == progress.log == [describe(e) for e in run if not isinstance(e, Step)]
