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
