"""One image file -> uint8 [C, SIZE, SIZE]: Pillow decode, EXIF orientation, 16 bits to 8, alpha over the
background, grayscale or RGB, then the fit (options.FITS) with PIL's bilinear filter.

An image Pillow cannot read (not an image, truncated, unsupported mode, no permission, over Pillow's
decompression-bomb limit Image.MAX_IMAGE_PIXELS) raises Skip with the reason; the caller skips and lists it.
Only the Pillow calls are guarded: an error in this module's own code is a bug and propagates.

Grayscale modes (GRAY_MODES, and palette images whose palette is all gray) count as grayscale for channel
detection (`probe`). 16-bit grayscale (I;16*) is scaled by 255/65535; 32-bit integer (I) likewise when a
value exceeds 255; float (F) by 255 when all values lie in [0, 1], else clipped to [0, 255].
"""
from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .options import PixelOptions

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# what Pillow raises on files it cannot read (plugins raise more than OSError on corrupt data)
PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError,
              struct.error, zlib.error, Image.DecompressionBombError, Image.DecompressionBombWarning)


class Skip(Exception):
    """An image file that cannot be used; args[0] is the reason."""


def _reason(e: BaseException) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels"
    if isinstance(e, PermissionError):
        return "permission denied"
    text = str(e).strip() or type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _gray_palette(im: Image.Image) -> bool:
    pal = im.getpalette() or []
    return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))


def is_gray(im: Image.Image) -> bool:
    """Whether the (opened, not necessarily loaded) image is grayscale by its mode."""
    if im.mode in GRAY_MODES:
        return True
    return im.mode in ("P", "PA") and _gray_palette(im)


def probe(path) -> bool:
    """Whether the image file at `path` is grayscale (header only); Skip when Pillow cannot open it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return is_gray(im)
        except PIL_ERRORS as e:
            raise Skip(_reason(e)) from None


def _open(path, size: int) -> Image.Image:
    """The decoded image (first frame), EXIF orientation applied; JPEGs decoded at a reduced scale when they
    are at least twice the size needed (libjpeg's DCT scaling; the result is still >= 2 SIZE a side)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft(None, (2 * size, 2 * size))
                im.load()
                out = ImageOps.exif_transpose(im)
                return out if out is not im else im.copy()
        except PIL_ERRORS as e:
            raise Skip(_reason(e)) from None


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as mode L (module docstring)."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if a.size and np.nanmin(a) >= 0.0 and np.nanmax(a) <= 1.0 else a
    elif im.mode != "I" or (a.size and a.max() > 255):
        a = a.astype(np.float64) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8), "L")


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or "transparency" in im.info


def to_mode(im: Image.Image, channels: int, background: tuple[int, int, int]) -> Image.Image:
    """`im` as "L" (channels 1) or "RGB" (channels 3); transparent pixels over `background`."""
    target = "L" if channels == 1 else "RGB"
    if im.mode in _WIDE_MODES:
        im = _eight_bit(im)
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return im if im.mode == target else im.convert(target)


def gray_level(rgb: tuple[int, int, int]) -> int:
    """The gray level PIL's convert("L") gives the colour `rgb` (ITU-R 601-2 luma)."""
    return Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))


def fit(im: Image.Image, opts: PixelOptions) -> Image.Image:
    """`im` (L or RGB) at SIZE x SIZE by opts.fit (options.FITS), bilinear."""
    s, (w, h) = opts.size, im.size
    if opts.fit == "stretch":
        return im.resize((s, s), Image.BILINEAR)
    if opts.fit == "crop":
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        return im.resize((s, s), Image.BILINEAR, box=(left, top, left + side, top + side))
    scale = s / max(w, h)
    nw, nh = max(1, min(s, round(w * scale))), max(1, min(s, round(h * scale)))
    fill = gray_level(opts.background) if im.mode == "L" else opts.background
    canvas = Image.new(im.mode, (s, s), fill)
    canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((s - nw) // 2, (s - nh) // 2))
    return canvas


def as_chw(im: Image.Image) -> np.ndarray:
    """An L or RGB image as uint8 [C, H, W]."""
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def finish(im: Image.Image, opts: PixelOptions, channels: int) -> np.ndarray:
    """A decoded image -> uint8 [channels, SIZE, SIZE] (mode, alpha, fit). Skip when Pillow cannot convert its mode."""
    try:
        im = to_mode(im, channels, opts.background)
    except PIL_ERRORS as e:
        raise Skip(f"unsupported image mode {im.mode}: {_reason(e)}") from None
    return as_chw(fit(im, opts))


def decode(path, opts: PixelOptions, channels: int) -> np.ndarray:
    """The image file at `path` as uint8 [channels, SIZE, SIZE]; Skip(reason) when it cannot be read."""
    return finish(_open(path, opts.size), opts, channels)
