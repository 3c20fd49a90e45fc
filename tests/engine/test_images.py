"""Odd images become the right RGB pixels; broken and dangerous ones are refused by name."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine import images
from engine.errors import UserError


def _saved(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(data, size=8) -> np.ndarray:
    """The decoded square, as the training set would hold it."""
    return images.to_square(data, size).astype(int)


def test_grayscale_becomes_equal_channels():
    arr = _rgb(_saved(Image.new("L", (10, 10), 77), "PNG"))
    assert (arr == 77).all()


def test_palette_with_a_transparent_colour_goes_on_white():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 10, 5))  # top half colour 1 (blue), bottom half colour 0 (red, made transparent)
    arr = _rgb(_saved(img, "PNG", transparency=0), 10)
    assert (arr[:5] == [0, 0, 255]).all() and (arr[5:] == [255, 255, 255]).all()


@pytest.mark.parametrize("mode,color,expected", [
    ("RGBA", (255, 0, 0, 0), [255, 255, 255]),  # fully transparent red: white
    ("RGBA", (255, 0, 0, 255), [255, 0, 0]),  # opaque red stays red
    ("RGBA", (0, 0, 0, 128), [127, 127, 127]),  # half-transparent black: mid grey
    ("LA", (0, 0), [255, 255, 255]),
])
def test_alpha_is_composited_on_white(mode, color, expected):
    arr = _rgb(_saved(Image.new(mode, (10, 10), color), "PNG"))
    assert np.abs(arr - expected).max() <= 1


def test_cmyk_jpeg_is_converted():
    arr = _rgb(_saved(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95))  # pure cyan ink
    assert arr[..., 0].max() < 30 and arr[..., 1].min() > 200 and arr[..., 2].min() > 200


def test_16_bit_png_is_scaled_to_8_bits():
    img = Image.new("I;16", (10, 10), 40000)
    reopened = Image.open(io.BytesIO(_saved(img, "PNG")))
    assert reopened.mode.startswith("I")  # really stored and read back as 16-bit
    assert np.abs(_rgb(_saved(img, "PNG")) - round(40000 / 65535 * 255)).max() <= 1


def test_float_tiff_is_scaled():
    img = Image.fromarray(np.full((10, 10), 0.5, dtype=np.float32) * 255.0, mode="F")
    assert np.abs(_rgb(_saved(img, "TIFF")) - 127).max() <= 1


def test_exif_rotation_is_applied_to_the_pixels():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show rotated 90 degrees clockwise
    data = _saved(img, "JPEG", exif=exif, quality=95)
    upright = images.open_rgb(data)
    assert upright.size == (20, 40)
    arr = np.asarray(upright).astype(int)
    assert arr[5, 10, 0] > 200 and arr[35, 10, 2] > 200  # red on top, blue below after the turn


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    gif = Image.open(io.BytesIO(buf.getvalue()))
    assert gif.is_animated and gif.n_frames == 2
    gif.seek(1)  # even when handed over on another frame
    for item in (buf.getvalue(), gif):
        arr = _rgb(item)
        assert arr[..., 0].min() > 200 and arr[..., 2].max() < 50


def test_paths_bytes_and_pil_images_decode_alike(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    img.save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    assert np.array_equal(_rgb(str(tmp_path / "x.png")), _rgb(data))
    assert np.array_equal(_rgb(data), _rgb(Image.open(io.BytesIO(data))))


def test_big_jpeg_draft_decode_is_close_to_a_full_decode():
    """Draft mode (libjpeg's reduced-scale decode) must not change what the model sees beyond resampling noise."""
    x = np.linspace(0, 255, 800)
    arr = np.stack([np.tile(x, (600, 1)), np.tile(x[:600, None], (1, 800)), np.full((600, 800), 90)], -1).astype(np.uint8)
    data = _saved(Image.fromarray(arr), "JPEG", quality=90)
    draft = _rgb(data, 64)
    full = _rgb(Image.open(io.BytesIO(data)).convert("RGB"), 64)  # an already-decoded image: no draft
    assert np.abs(draft - full).mean() < 3


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb as far as the header says."""
    data = bytearray(_saved(Image.new("RGB", (4, 4)), "PNG"))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.mark.parametrize("width,height,needle", [(20_000, 20_000, "400 megapixels"), (10_000, 6_000, "10000x6000")])
def test_decompression_bomb_is_refused_from_its_header(width, height, needle):
    """Over our 50 MP limit (checked by us) and over PIL's own (PIL raises first): refused before decoding."""
    bomb = _png_claiming(width, height)
    assert images.problem(io.BytesIO(bomb)).startswith("too large")
    with pytest.raises(UserError, match=f"Image too large \\({needle}\\)"):
        images.to_square(bomb, 16)


@pytest.mark.parametrize("content,why", [(b"hello, not an image", "not a readable image"),
                                         (b"\x89PNG\r\n\x1a\nbroken", "not a readable image")])
def test_unreadable_files_are_named_by_a_cheap_check(tmp_path, content, why):
    (tmp_path / "x.png").write_bytes(content)
    assert images.problem(tmp_path / "x.png") == why
    ok = tmp_path / "ok.png"
    Image.new("RGB", (4, 4)).save(ok)
    assert images.problem(ok) is None
