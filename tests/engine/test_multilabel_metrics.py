"""Multi-label scores (engine/multilabel.py) on cases small enough to work out by hand."""
import torch

from engine import multilabel as ml


def test_average_precision_by_hand():
    # label 0: ranks 1 and 3 are positives -> (1/1 + 2/3) / 2; label 1: no positives -> None; label 2: perfect
    scores = torch.tensor([[0.9, 0.1, 0.8], [0.7, 0.2, 0.1], [0.4, 0.3, 0.7], [0.1, 0.4, 0.2]])
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0]])
    aps = ml.average_precision(scores, targets)
    assert abs(aps[0] - (1 + 2 / 3) / 2) < 1e-6
    assert aps[1] is None
    assert aps[2] == 1.0
    assert abs(ml.mean_average_precision(scores, targets) - (aps[0] + 1.0) / 2) < 1e-6


def test_best_f1_threshold_separates_and_sits_between_scores():
    probs = torch.tensor([0.95, 0.8, 0.6, 0.4, 0.2])
    targets = torch.tensor([1, 1, 1, 0, 0])
    threshold, f1 = ml.best_f1_threshold(probs, targets)
    assert f1 == 1.0
    assert abs(threshold - 0.5) < 1e-6  # half-way between 0.6 (last positive) and 0.4
    assert ml.decide(probs[:, None], [threshold]).flatten().tolist() == [True, True, True, False, False]


def test_tied_scores_are_never_split():
    probs = torch.tensor([0.9, 0.5, 0.5, 0.1])
    targets = torch.tensor([1, 1, 0, 0])
    threshold, f1 = ml.best_f1_threshold(probs, targets)
    decided = (probs >= threshold).tolist()
    assert decided[1] == decided[2]  # the two 0.5s get the same decision
    assert abs(f1 - max(2 * 1 / 3, 2 * 2 / 5)) < 1e-6  # top 1 (F1 2/3) against the top 3 (F1 0.8)


def test_rare_labels_take_the_global_threshold():
    torch.manual_seed(0)
    targets = torch.zeros(60, 3)
    targets[:30, 0] = 1  # common
    targets[30:55, 1] = 1  # common
    targets[:2, 2] = 1  # rare: 2 positives, below MIN_POSITIVES_PER_LABEL
    probs = (0.7 * targets + 0.3 * torch.rand(60, 3)).clamp(0, 1)
    chosen = ml.choose_thresholds(probs, targets)
    assert chosen["kind"] == "per_label" and chosen["own"] == [0, 1]
    assert chosen["values"][2] == chosen["global_"]
    assert ml.decide(probs, chosen["values"]).float().eq(targets).all()  # separable data: every decision right
