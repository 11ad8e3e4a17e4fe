"""The options of the own-images loader, checked once: image size, fit, channels, background, test fraction.

SIZES: the image sizes the model has an architecture for (32, 64, 128, 256; model.validate_image_size).
FITS: how an image of another shape becomes SIZE x SIZE:
  crop     the shorter side scaled to SIZE, then the centre SIZE x SIZE (the default);
  pad      the longer side scaled to SIZE, the rest filled with the background colour, image centred;
  stretch  both sides scaled to SIZE (the aspect ratio is not kept).
Resampling: PIL's bilinear filter (antialiased when shrinking), what torchvision's Resize does to a PIL image.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .problems import OptionError

SIZES = (32, 64, 128, 256)
FITS = ("crop", "pad", "stretch")
DEFAULT_SIZE, DEFAULT_FIT, DEFAULT_TEST_FRACTION, DEFAULT_BACKGROUND = 64, "crop", 0.1, "white"
_NAMED = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}


def parse_background(text) -> tuple[int, int, int]:
    """'white', 'black', 'gray', '#rrggbb', 'r,g,b' (0-255) or one gray level '0'-'255' -> (r, g, b)."""
    s = str(text).strip().lower()
    if s in _NAMED:
        return _NAMED[s]
    if re.fullmatch(r"#[0-9a-f]{6}", s):
        return tuple(int(s[i : i + 2], 16) for i in (1, 3, 5))
    parts = [p.strip() for p in s.split(",")]
    if len(parts) in (1, 3) and all(p.isdigit() and int(p) <= 255 for p in parts):
        v = [int(p) for p in parts]
        return tuple(v * 3) if len(v) == 1 else tuple(v)
    raise OptionError(f"background must be white, black, gray, #rrggbb, r,g,b or a gray level 0-255, got {text!r}")


@dataclass(frozen=True)
class PixelOptions:
    """What decides the stored pixels (part of the cache key): size, fit, channels (None: detected),
    background (r, g, b) for transparent pixels and pad, and the array key of an .npz / .h5 file."""

    size: int = DEFAULT_SIZE
    fit: str = DEFAULT_FIT
    channels: int | None = None
    background: tuple[int, int, int] = _NAMED[DEFAULT_BACKGROUND]
    data_key: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def pixel_options(img_size=None, fit=None, channels=None, background=None, data_key=None) -> PixelOptions:
    """PixelOptions from the loader's keyword arguments (None: the default), each checked."""
    size = DEFAULT_SIZE if img_size is None else img_size
    if isinstance(size, bool) or not isinstance(size, int) or size not in SIZES:
        raise OptionError(f"img_size must be one of {', '.join(map(str, SIZES))}, got {img_size!r}")
    fit = DEFAULT_FIT if fit is None else fit
    if fit not in FITS:
        raise OptionError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise OptionError(f"channels must be 1 or 3 (or unset: detected), got {channels!r}")
    if data_key is not None and (not isinstance(data_key, str) or not data_key):
        raise OptionError(f"data_key must be a non-empty string, got {data_key!r}")
    bg = parse_background(DEFAULT_BACKGROUND if background is None else background)
    return PixelOptions(size, fit, channels, bg, data_key)


def check_test_fraction(value) -> float:
    """The test fraction, a number in (0, 1)."""
    v = DEFAULT_TEST_FRACTION if value is None else value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
        raise OptionError(f"test_fraction must be a number in (0, 1), got {value!r}")
    return float(v)
