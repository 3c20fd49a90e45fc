"""engine.cleaner on real models: swapped labels come first in the loss ranking, copies of a picture form a group
(flagged when they straddle the train/validation split), and decisions apply to a copy of the dataset."""
from __future__ import annotations

import pytest

from engine import cleaner, sample
from engine.config import recipe
from engine.data import LabelledImages
from engine.errors import UserError
from engine.predict import Predictor
from engine.train import fit

SWAPPED = 4  # 10 % of the circles, labelled as squares


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Circles, squares and triangles (40 each) with 10 % of the circles labelled 'square', two exact copies and one
    shrunk copy of pictures added, and the quick recipe's model trained on all of it."""
    images, labels = sample.generate(n_per_class=40, seed=3)
    keep = [i for i, y in enumerate(labels) if y < 3]
    images, labels = [images[i] for i in keep], [labels[i] for i in keep]
    circles = [k for k, y in enumerate(labels) if y == 0]
    swapped = circles[:SWAPPED]
    for k in swapped:
        labels[k] = 1
    copies = {len(images): 10, len(images) + 1: 11, len(images) + 2: 12}  # new item -> the item it copies
    images += [images[10].copy(), images[11].copy(), images[12].resize((images[12].width * 3 // 4, images[12].height * 3 // 4))]
    labels += [labels[10], labels[11], labels[12]]
    data = LabelledImages(list(sample.CLASSES[:3]), images, labels, "test")
    events = list(fit(data, recipe("quick", epochs=6), str(tmp_path_factory.mktemp("cleaner") / "model")))
    return data, Predictor.from_folder(events[-1].model_dir), set(swapped), copies


def test_swapped_labels_are_ranked_first(noisy):
    data, predictor, swapped, _ = noisy
    splits = cleaner.split_of(data, 0.2, 0)
    ranked = cleaner.rank_by_loss(predictor, data, list(range(len(data))), splits)
    assert len(ranked) == len(data) and ranked[0].loss >= ranked[-1].loss
    top = {s.index for s in ranked[:len(ranked) // 5]}
    assert len(top & swapped) >= SWAPPED * 0.7, [(s.index, s.label, s.predicted, round(s.loss, 2)) for s in ranked[:12]]
    first = next(s for s in ranked if s.index in swapped)
    assert first.label == "square" and first.predicted == "circle" and first.p_label < 0.5
    assert {s.split for s in ranked} == {"train", "validation"}


def test_copies_of_a_picture_form_groups_and_leaks_are_flagged(noisy):
    data, predictor, _, copies = noisy
    splits = cleaner.split_of(data, 0.2, 0)
    features, index = cleaner.embeddings(predictor, data, list(range(len(data))))
    groups = cleaner.duplicate_groups(features, index, 0.75, splits)
    found = [set(g.indices) for g in groups]
    for copy, original in copies.items():
        assert any({copy, original} <= g for g in found), (copy, original, found)
    for g in groups:
        assert g.leak == (len({splits[i] for i in g.indices}) > 1)
    strict = cleaner.duplicate_groups(features, index, 0.99, splits)
    assert sorted(map(sorted, (g.indices for g in strict))) == [[10, 120], [11, 121]]  # the exact copies only
    loose = cleaner.duplicate_groups(features, index, 0.5, splits)
    assert sum(len(g.indices) for g in loose) > sum(len(g.indices) for g in groups)  # a lower threshold joins more
    with pytest.raises(UserError, match="between 0.5 and 1"):
        cleaner.duplicate_groups(features, index, 1.5, splits)


def test_decisions_apply_to_a_copy_of_the_dataset(noisy):
    data, _, swapped, copies = noisy
    before = list(data.labels)
    moved = {i: "circle" for i in swapped}
    cleaned = cleaner.apply(data, moved, set(copies))
    assert data.labels == before and len(data) == 123  # the dataset itself is untouched
    assert len(cleaned) == len(data) - len(copies)
    assert cleaned.counts() == {"circle": 40, "square": 40, "triangle": 40}  # swapped back; the copies gone
    assert cleaned.name(0) == data.name(0)
    with pytest.raises(UserError, match="no longer in the dataset"):
        cleaner.apply(data, {}, {len(data) + 5})
    with pytest.raises(UserError, match="no class 'dog'"):
        cleaner.apply(data, {0: "dog"}, set())
    with pytest.raises(UserError, match="delete every image"):
        cleaner.apply(data, {}, set(range(len(data))))
