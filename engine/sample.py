"""The built-in sample dataset: coloured shapes drawn on the fly, no download, no files.

Snapfit must be usable offline and on a fresh install, so its default dataset is generated rather than fetched.
It is six classes of simple shapes (circle, square, triangle, star, cross, ring) with random colours, size,
position, rotation, background and clutter. It is meant to be learnable but not trivial: a small CNN trained
from scratch on a 2-core CPU gets it right in well under a minute, while the clutter, noise and colour
variation keep it from being solved in one epoch, so it still works as a sanity check of the training loop.

`generate_multi` is the multi-label set (`builtin:shapes-multi`): larger images holding one to three different
shapes that do not overlap, each labelled with every shape it shows.

Deterministic: image i of class c depends only on (seed, c, i), via its own `numpy.random.default_rng`
(a multi-label image i only on (seed, i)).
Drawing is PIL's ImageDraw on rounded integer coordinates plus integer noise: no fonts, no float rendering,
nothing that depends on the system, so the same Pillow and numpy versions give byte-identical images anywhere.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

MIN_SIDE, MAX_SIDE = 64, 96
_SCALE = 2  # drawn at twice the size then halved: smooth edges without relying on PIL's antialiasing
# Difficulty knobs. Calibrated so a from-scratch timm resnet10t at 64 px needs about 12 epochs (~25 s on
# 2 CPU cores) to pass 95% validation accuracy: hard enough not to be solved in an epoch or two.
# Contrast matters most: at 70 the same recipe stalls around 75%.
_MIN_CONTRAST = 110  # luma difference between ink and background, out of 255
_RADIUS = (0.28, 0.42)  # shape's bounding-circle radius as a fraction of the image side
_CLUTTER_UNDER = (1, 3)  # how many marks are drawn before the shape (min, max)
_CLUTTER_OVER = (0, 1)  # and over it, so the shape is never a clean silhouette
_NOISE = 8  # +- per channel; stops the net keying on flat colour, far below the shape contrast

# The multi-label set: bigger images, so three shapes fit side by side, each about half the size (relative to the
# image) of a single-label shape; at 64 px a shape still spans 18-28 px.
MULTI_MIN_SIDE, MULTI_MAX_SIDE = 96, 128
_MULTI_SHAPES = (1, 3)  # how many different shapes an image holds (min, max)
_MULTI_RADIUS = (0.17, 0.24)
_MULTI_STREAM = 1_000_003  # keeps the multi-label images' random streams apart from generate()'s (seed, class, i)


def generate(n_per_class: int = 150, seed: int = 0) -> tuple[list[Image.Image], list[int]]:
    """Return `n_per_class` RGB images of every class and their labels (indices into CLASSES).

    Images are square, 64..96 px a side. Order is interleaved: circle, square, ..., ring, circle, ... so any
    prefix of the list is (nearly) class-balanced. Same arguments give byte-identical images, and image i of
    a class is the same whatever `n_per_class` is.
    """
    images, labels = [], []
    for i in range(n_per_class):
        for label in range(len(CLASSES)):
            rng = np.random.default_rng([seed, label, i])
            images.append(_draw(CLASSES[label], rng))
            labels.append(label)
    return images, labels


def generate_multi(n_images: int = 900, seed: int = 0) -> tuple[list[Image.Image], list[tuple[int, ...]]]:
    """Return `n_images` RGB images of one to three different shapes each (bounding circles apart, so none hides
    another) and their labels: the sorted tuple of the indices into CLASSES of the shapes drawn.

    Images are square, 96..128 px a side. Image i depends only on (seed, i): the same arguments give byte-identical
    images, and a longer list starts with the shorter one.
    """
    images, labels = [], []
    for i in range(n_images):
        rng = np.random.default_rng([seed, _MULTI_STREAM, i])
        k = int(rng.integers(_MULTI_SHAPES[0], _MULTI_SHAPES[1] + 1))
        shapes = sorted(int(c) for c in rng.choice(len(CLASSES), size=k, replace=False))
        images.append(_draw_several([CLASSES[c] for c in shapes], rng))
        labels.append(tuple(shapes))
    return images, labels


def _draw_several(shapes: list[str], rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(MULTI_MIN_SIDE, MULTI_MAX_SIDE + 1))
    big = side * _SCALE
    background = _random_colour(rng)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    _clutter(draw, big, rng, _CLUTTER_UNDER)
    for shape, (cx, cy, radius) in zip(shapes, _places(len(shapes), big, rng)):
        # each shape its own ink, every one readable against the background
        _SHAPES[shape](draw, cx, cy, radius, rng.uniform(0, 2 * math.pi), _ink(background, rng), rng)
    _clutter(draw, big, rng, _CLUTTER_OVER)
    image = image.reduce(_SCALE)
    return _add_noise(image, rng)


def _places(n: int, big: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(cx, cy, radius) for n shapes whose bounding circles do not overlap: drawn at random and redrawn on overlap;
    should a layout keep failing, every radius shrinks a little (it never has to by much: three shapes of the
    largest size fit with room to spare)."""
    scale = 1.0
    while True:
        for _ in range(50):
            placed = []
            for _ in range(n):
                radius = rng.uniform(*_MULTI_RADIUS) * big * scale
                cx, cy = rng.uniform(radius, big - radius, size=2)
                if all(math.hypot(cx - x, cy - y) >= radius + r for x, y, r in placed):
                    placed.append((float(cx), float(cy), float(radius)))
            if len(placed) == n:
                return placed
        scale *= 0.9


def _draw(shape: str, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    big = side * _SCALE
    background, ink = _colours(rng)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    _clutter(draw, big, rng, _CLUTTER_UNDER)
    radius = rng.uniform(*_RADIUS) * big
    cx = rng.uniform(radius, big - radius)
    cy = rng.uniform(radius, big - radius)
    _SHAPES[shape](draw, cx, cy, radius, rng.uniform(0, 2 * math.pi), ink, rng)
    _clutter(draw, big, rng, _CLUTTER_OVER)
    image = image.reduce(_SCALE)
    return _add_noise(image, rng)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and an ink colour a person can always tell apart (by brightness, not just hue)."""
    background = _random_colour(rng)
    return background, _ink(background, rng)


def _ink(background: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    while True:
        ink = _random_colour(rng)
        if abs(_luma(ink) - _luma(background)) >= _MIN_CONTRAST:
            return ink


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, size=3)
    return int(r), int(g), int(b)


def _luma(colour: tuple[int, int, int]) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _clutter(draw: ImageDraw.ImageDraw, big: int, rng: np.random.Generator, count: tuple[int, int]) -> None:
    """Thin lines and specks: too thin or too small to pass for any of the shapes, but they break flat areas."""
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        colour = _random_colour(rng)
        x0, y0 = rng.integers(0, big, size=2)
        if rng.random() < 0.5:
            length = rng.uniform(0.15, 0.5) * big
            angle = rng.uniform(0, 2 * math.pi)
            x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
            draw.line(_ints([(x0, y0), (x1, y1)]), fill=colour, width=int(rng.integers(1, 2 * _SCALE + 1)))
        else:
            r = int(rng.integers(1, 2 * _SCALE + 1))
            draw.rectangle(_ints([(x0 - r, y0 - r), (x0 + r, y0 + r)]), fill=colour)


def _add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # integer noise: float normals could differ in the last bit across platforms, integers cannot
    pixels = np.asarray(image, dtype=np.int16)
    pixels = pixels + rng.integers(-_NOISE, _NOISE + 1, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _ints(points) -> list[tuple[int, int]]:
    return [(round(float(x)), round(float(y))) for x, y in points]


def _regular(cx: float, cy: float, radii: list[float], angle: float) -> list[tuple[int, int]]:
    """Polygon whose vertices go round the centre at equal angles, at the given radii in turn."""
    n = len(radii)
    return _ints(
        (cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
        for k, r in enumerate(radii)
    )


def _circle(draw, cx, cy, radius, angle, ink, rng) -> None:
    draw.ellipse(_ints([(cx - radius, cy - radius), (cx + radius, cy + radius)]), fill=ink)


def _ring(draw, cx, cy, radius, angle, ink, rng) -> None:
    # the band is at most 35% of the radius, so the hole is wide and a ring never reads as a filled disc
    width = round(rng.uniform(0.15, 0.35) * radius)
    draw.ellipse(_ints([(cx - radius, cy - radius), (cx + radius, cy + radius)]), outline=ink, width=width)


def _square(draw, cx, cy, radius, angle, ink, rng) -> None:
    draw.polygon(_regular(cx, cy, [radius] * 4, angle), fill=ink)


def _triangle(draw, cx, cy, radius, angle, ink, rng) -> None:
    draw.polygon(_regular(cx, cy, [radius] * 3, angle), fill=ink)


def _star(draw, cx, cy, radius, angle, ink, rng) -> None:
    # inner radius well below a pentagon's (0.81) so the points stay clearly pointed
    inner = rng.uniform(0.35, 0.5) * radius
    draw.polygon(_regular(cx, cy, [radius, inner] * 5, angle), fill=ink)


def _cross(draw, cx, cy, radius, angle, ink, rng) -> None:
    # any rotation, so both "+" and "x" are crosses
    half_arm = rng.uniform(0.15, 0.25) * radius
    for a in (angle, angle + math.pi / 2):
        dx, dy = math.cos(a), math.sin(a)  # along the bar
        px, py = -dy * half_arm, dx * half_arm  # across it
        ends = [(cx - dx * radius, cy - dy * radius), (cx + dx * radius, cy + dy * radius)]
        corners = [(ends[0][0] + px, ends[0][1] + py), (ends[1][0] + px, ends[1][1] + py),
                   (ends[1][0] - px, ends[1][1] - py), (ends[0][0] - px, ends[0][1] - py)]
        draw.polygon(_ints(corners), fill=ink)


_SHAPES = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
}
