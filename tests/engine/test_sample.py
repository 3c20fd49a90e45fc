"""The built-in shapes dataset: deterministic, balanced, well-formed, and every image shows something."""
import inspect

import numpy as np
import pytest

from engine import sample

N = 12  # per class; enough to see variation, small enough to keep the file well under a second


@pytest.fixture(scope="module")
def data():
    return sample.generate(N, seed=0)


def test_classes_keep_the_documented_first_six():
    assert sample.CLASSES[:6] == ("circle", "square", "triangle", "star", "cross", "ring")


def test_same_arguments_give_byte_identical_images(data):
    images, labels = data
    again, again_labels = sample.generate(N, seed=0)
    assert again_labels == labels
    assert [im.tobytes() for im in again] == [im.tobytes() for im in images]


def test_image_i_of_a_class_does_not_depend_on_n_per_class(data):
    images, labels = data
    fewer, fewer_labels = sample.generate(3, seed=0)
    assert fewer_labels == labels[: len(fewer)]
    assert [im.tobytes() for im in fewer] == [im.tobytes() for im in images[: len(fewer)]]


def test_different_seeds_give_different_images(data):
    images, _ = data
    other, _ = sample.generate(N, seed=1)
    assert sum(a.tobytes() != b.tobytes() for a, b in zip(images, other)) == len(images)


def test_labels_are_balanced_interleaved_and_in_range(data):
    _, labels = data
    k = len(sample.CLASSES)
    assert len(labels) == N * k
    assert labels == list(range(k)) * N
    assert np.bincount(labels, minlength=k).tolist() == [N] * k


def test_images_are_rgb_and_64_to_96_px(data):
    images, _ = data
    for im in images:
        assert im.mode == "RGB"
        assert sample.MIN_SIDE <= im.width <= sample.MAX_SIDE
        assert sample.MIN_SIDE <= im.height <= sample.MAX_SIDE
    assert len({im.size for im in images}) > 1, "sizes should vary"


def test_images_of_each_class_vary(data):
    images, labels = data
    for c in range(len(sample.CLASSES)):
        own = {im.tobytes() for im, label in zip(images, labels) if label == c}
        assert len(own) == N


def test_every_image_shows_a_contrasting_shape(data):
    # noise alone is +-8 (std ~5); a shape covering a fair part of the image with >=110 luma contrast
    # pushes the grey-level std far above that
    images, _ = data
    for im in images:
        grey = np.asarray(im.convert("L"), dtype=np.float32)
        assert grey.std() > 20


def test_default_is_about_150_per_class():
    # checks the default argument without paying for 900 images
    assert inspect.signature(sample.generate).parameters["n_per_class"].default == 150


# ---------------------------------------------------------------------------------------------- multi-label set


@pytest.fixture(scope="module")
def multi():
    return sample.generate_multi(60, seed=0)


def test_multi_same_arguments_give_byte_identical_images_and_a_prefix_is_a_shorter_list(multi):
    images, labels = multi
    again, again_labels = sample.generate_multi(60, seed=0)
    fewer, fewer_labels = sample.generate_multi(7, seed=0)
    assert again_labels == labels and fewer_labels == labels[:7]
    assert [im.tobytes() for im in again] == [im.tobytes() for im in images]
    assert [im.tobytes() for im in fewer] == [im.tobytes() for im in images[:7]]
    other, _ = sample.generate_multi(60, seed=1)
    assert all(a.tobytes() != b.tobytes() for a, b in zip(images, other))


def test_multi_images_hold_one_to_three_different_shapes_and_every_label_appears(multi):
    images, labels = multi
    k = len(sample.CLASSES)
    for label in labels:
        assert isinstance(label, tuple) and 1 <= len(label) <= 3
        assert list(label) == sorted(set(label)) and all(0 <= c < k for c in label)
    assert {len(label) for label in labels} == {1, 2, 3}
    assert np.bincount([c for label in labels for c in label], minlength=k).min() >= 10
    for im in images:
        assert im.mode == "RGB" and im.width == im.height
        assert sample.MULTI_MIN_SIDE <= im.width <= sample.MULTI_MAX_SIDE


def test_multi_shapes_do_not_overlap():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3):
        for _ in range(50):
            placed = sample._places(n, 200, rng)
            for i, (x, y, r) in enumerate(placed):
                assert r <= x <= 200 - r and r <= y <= 200 - r  # inside the image
                assert all(np.hypot(x - x2, y - y2) >= r + r2 for x2, y2, r2 in placed[:i])


def test_the_multi_label_set_loads_by_name():
    from engine import data

    loaded = data.load("builtin:shapes-multi")
    assert loaded.multi_label and loaded.source == data.BUILTIN_MULTI and loaded.origin == dict(source=data.BUILTIN_MULTI)
    assert loaded.class_names == list(sample.CLASSES) and len(loaded) == 900
    assert all(isinstance(label, tuple) for label in loaded.labels)
