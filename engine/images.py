"""Single images: open any supported file as upright RGB, check a file cheaply, decode to a small square, or to a
size for showing people.

An item of a dataset is a path, the encoded bytes of an image (Hub datasets), or a PIL image (the built-in
set). Everything here takes any of the three.
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from engine.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 50_000_000  # beyond this we refuse an image as a likely decompression bomb
# Errors PIL raises for files that are not images, truncated or corrupt. DecompressionBombError is a plain
# Exception, not an OSError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, UserError)


def open_image(image) -> Image.Image:
    """A lazily-decoded PIL image from a path, encoded bytes or a PIL image (which passes through)."""
    if isinstance(image, Image.Image):
        return image
    with warnings.catch_warnings():  # PIL warns on big images (we refuse them in check_size) and errors on huge ones
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image)
        except Image.DecompressionBombError as exc:
            pixels = re.search(r"\((\d+) pixels\)", str(exc))
            raise UserError(_too_large(f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "over PIL's limit")) from exc


def _too_large(size: str) -> str:
    return f"Image too large ({size}); the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels."


def check_size(img: Image.Image) -> None:
    # The size comes from the header: a bomb is refused before a single pixel is decompressed.
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise UserError(_too_large(f"{img.width}x{img.height}"))


def problem(path) -> str | None:
    """Why a file cannot be used as an image (cheap: reads the header only), or None when it looks fine."""
    try:
        with open_image(path) as img:
            check_size(img)
    except UserError:
        return "too large (refused as a possible decompression bomb)"
    except DECODE_ERRORS:
        return "not a readable image"
    return None


def open_rgb(image) -> Image.Image:
    """Open a path, bytes or PIL image as upright RGB: EXIF rotation, first frame of an animation, transparency
    on white, 16-bit and float scaled to 8 bits, CMYK/palette/grayscale converted."""
    img = open_image(image)
    check_size(img)
    if getattr(img, "is_animated", False):
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0  # 16-bit data, or 8-bit values stored wide
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8))
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # keeps a palette's transparent colour as alpha
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def to_square(image, size: int) -> np.ndarray:
    """Decode, center-crop to a square and resize to size x size: uint8 (size, size, 3)."""
    img = open_image(image)
    if img is not image and img.format == "JPEG":  # opened here, not decoded yet: let libjpeg decode at reduced scale
        # (1/2 to 1/8, the smallest that still covers `size`: an 800x600 photo for 128 px decodes 4x faster than at
        # full scale). libjpeg's scaled IDCT averages like an area filter, so this costs no quality.
        img.draft("RGB", (size, size))
    img = open_rgb(img)
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)
    return np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays


def for_display(image, max_side: int) -> Image.Image:
    """Upright RGB with its own aspect ratio, shrunk so its longest side is at most max_side (never enlarged):
    what people should see of an image that a model saw as a small square."""
    img = open_image(image)
    if img is not image and img.format == "JPEG":  # as in to_square: a big photo decodes at a reduced scale
        img.draft("RGB", (max_side, max_side))
    img = open_rgb(img)
    scale = max_side / max(img.size)
    if scale >= 1:
        return img
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS, reducing_gap=3.0)
