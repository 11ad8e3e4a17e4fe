"""data/own/decode: one image file -> uint8 [C, S, S]: fits, modes, EXIF, 16 bits, alpha, corrupt files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from jointvae_fast.data.own import decode
from jointvae_fast.data.own.options import PixelOptions, pixel_options, parse_background
from jointvae_fast.data.own.problems import OptionError

from tests.own_fixtures import expected_crop, pattern, write_image


def opts(size=32, fit="crop", bg=(255, 255, 255)):
    return PixelOptions(size, fit, None, bg, None)


@pytest.mark.parametrize("fit", ["crop", "stretch"])
@pytest.mark.parametrize("channels", [1, 3])
def test_square_image_is_a_plain_bilinear_resize(tmp_path, fit, channels):
    """On a square image crop and stretch are the built-in loaders' rule: PIL resize((S, S), BILINEAR)."""
    arr = pattern(28, 28, channels, seed=3)
    p = write_image(tmp_path / "x.png", arr)
    got = decode.decode(p, opts(32, fit), channels)
    np.testing.assert_array_equal(got, expected_crop(arr, 32))


def _uniform(w, h, value, mode="L"):
    return Image.new(mode, (w, h), value)


@given(w=st.integers(1, 300), h=st.integers(1, 300), size=st.sampled_from([32, 64]),
       fit=st.sampled_from(["crop", "pad", "stretch"]), value=st.integers(0, 255))
def test_any_shape_gives_size_by_size_and_keeps_a_uniform_colour(w, h, size, fit, value):
    """Every fit gives [C, S, S]; a uniform image stays uniform (crop, stretch) or its value fills the centre
    (pad), whatever the aspect ratio."""
    out = decode.finish(_uniform(w, h, value), opts(size, fit, (0, 0, 0)), 1)
    assert out.shape == (1, size, size) and out.dtype == np.uint8
    if fit != "pad":
        assert (out == value).all()
    else:
        assert out[0, size // 2, size // 2] == value


def test_crop_takes_the_centre_square():
    """A wide image whose centre square is 100 and whose sides are 0: the crop is 100 but in its first and last
    column, where the bilinear filter reaches one source pixel past the square (one resample of the box, as
    a resize-then-crop would blend there too)."""
    a = np.zeros((40, 120), np.uint8)
    a[:, 40:80] = 100
    out = decode.finish(Image.fromarray(a), opts(32, "crop"), 1)
    assert (out[:, :, 1:-1] == 100).all() and (out[:, :, [0, -1]] > 50).all()


def test_pad_centres_the_image_on_the_background():
    """64x32 uniform 200 padded to 32: rows 0-7 and 24-31 are the background (black), rows 8-23 the image."""
    out = decode.finish(_uniform(64, 32, 200), opts(32, "pad", (0, 0, 0)), 1)[0]
    assert (out[:8] == 0).all() and (out[24:] == 0).all() and (out[8:24] == 200).all()
    rgb = decode.finish(_uniform(32, 64, (10, 20, 30), "RGB"), opts(32, "pad", (255, 0, 0)), 3)
    assert tuple(rgb[:, 16, 0]) == (255, 0, 0) and tuple(rgb[:, 16, 16]) == (10, 20, 30)


def test_alpha_is_composited_on_the_background(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., :3] = (10, 200, 30)
    a[:, :4, 3] = 255  # left half opaque, right half transparent
    p = write_image(tmp_path / "a.png", a)
    out = decode.decode(p, opts(8, "stretch", (0, 0, 255)), 3)
    assert tuple(out[:, 0, 0]) == (10, 200, 30) and tuple(out[:, 0, 7]) == (0, 0, 255)
    gray = decode.decode(p, opts(8, "stretch", (255, 255, 255)), 1)
    assert gray[0, 0, 7] == 255 and gray[0, 0, 0] == decode.gray_level((10, 200, 30))


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    a = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 257 * 17)  # 8-bit k*17 as 16-bit
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    assert decode.probe(p) is True
    out = decode.decode(p, opts(4 * 8, "stretch"), 1)
    small = decode.finish(Image.open(p), PixelOptions(4, "stretch", None, (255,) * 3, None), 1)
    np.testing.assert_array_equal(small[0], (np.arange(16).reshape(4, 4) * 17).astype(np.uint8))
    assert out.shape == (1, 32, 32)


def test_palette_gif_first_frame_and_gray_palette(tmp_path):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    p = tmp_path / "anim.gif"
    red.save(p, save_all=True, append_images=[blue])
    assert decode.probe(p) is False
    out = decode.decode(p, opts(8, "stretch"), 3)
    assert tuple(out[:, 4, 4]) == (255, 0, 0)
    g = tmp_path / "gray.gif"
    Image.new("L", (8, 8), 77).convert("P").save(g)
    assert decode.probe(g) is True


@pytest.mark.parametrize("ext,kw", [(".webp", {"lossless": True}), (".bmp", {}), (".tif", {}), (".tiff", {}),
                                    (".png", {})])
def test_lossless_formats_round_trip(tmp_path, ext, kw):
    arr = pattern(16, 16, 3, seed=5)
    p = write_image(tmp_path / f"x{ext}", arr, **kw)
    np.testing.assert_array_equal(decode.decode(p, opts(16, "stretch"), 3), arr.transpose(2, 0, 1))


def test_cmyk_and_one_bit_modes(tmp_path):
    p = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(p)
    assert decode.decode(p, opts(8, "stretch"), 3).min() > 240  # CMYK 0 is white
    b = tmp_path / "b.png"
    Image.new("1", (8, 8), 1).save(b)
    assert decode.probe(b) and (decode.decode(b, opts(8, "stretch"), 1) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    """A 20x10 image (left half black, right white) tagged 'rotate 90' (orientation 6) is read as 10x20 with the
    halves top and bottom: the stretch then shows a vertical split of rows, not of columns."""
    a = np.zeros((10, 20), np.uint8)
    a[:, 10:] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    p = tmp_path / "o.jpg"
    im.save(p, exif=exif, quality=100)
    out = decode.decode(p, opts(32, "stretch"), 1)[0].astype(int)
    assert out[:8].mean() < 40 and out[-8:].mean() > 215  # rows differ
    assert abs(out[:, :8].mean() - out[:, -8:].mean()) < 40  # columns alike


@pytest.mark.parametrize("make", ["text", "truncated-jpeg", "empty"])
def test_unreadable_files_raise_skip(tmp_path, make):
    p = tmp_path / "x.jpg"
    if make == "text":
        p.write_text("not an image")
    elif make == "empty":
        p.write_bytes(b"")
    else:
        buf = io.BytesIO()
        Image.fromarray(pattern(64, 64, 3)).save(buf, "JPEG")
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(decode.Skip):
        decode.decode(p, opts(), 3)


def test_decompression_bomb_is_a_skip_not_a_crash(tmp_path, monkeypatch):
    p = write_image(tmp_path / "big.png", pattern(64, 64, 1))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: over 2x the limit -> error
    with pytest.raises(decode.Skip, match="decompression-bomb"):
        decode.decode(p, opts(), 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between 1x and 2x: Pillow only warns; still skipped
    with pytest.raises(decode.Skip, match="decompression-bomb"):
        decode.probe(p)


def test_large_jpeg_is_decoded_at_a_reduced_scale_close_to_the_full_decode(tmp_path):
    y, x = np.mgrid[0:512, 0:512]
    arr = np.stack([(x // 2) % 256, (y // 2) % 256, ((x + y) // 4) % 256], -1).astype(np.uint8)
    p = write_image(tmp_path / "big.jpg", arr, quality=95)
    fast = decode.decode(p, opts(32, "stretch"), 3).astype(int)
    with Image.open(p) as im:
        full = decode.finish(im.convert("RGB"), opts(32, "stretch"), 3).astype(int)
    assert np.abs(fast - full).mean() < 3


def test_background_and_option_parsing():
    assert parse_background("white") == (255, 255, 255)
    assert parse_background("#102030") == (16, 32, 48)
    assert parse_background("1, 2, 3") == (1, 2, 3)
    assert parse_background("7") == (7, 7, 7)
    for bad in ("purple", "256", "#12345", "1,2"):
        with pytest.raises(OptionError, match="background"):
            parse_background(bad)
    for kw, word in [({"img_size": 48}, "img_size"), ({"fit": "zoom"}, "fit"), ({"channels": 2}, "channels"),
                     ({"img_size": True}, "img_size"), ({"data_key": ""}, "data_key")]:
        with pytest.raises(OptionError, match=word):
            pixel_options(**kw)


def test_permission_denied_is_a_skip(tmp_path, monkeypatch):
    """(Root reads any file, so the permission error is raised by a stand-in for Image.open.)"""
    p = write_image(tmp_path / "x.png", pattern(8, 8, 1))

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(decode.Skip, match="permission denied"):
        decode.decode(p, opts(), 1)
