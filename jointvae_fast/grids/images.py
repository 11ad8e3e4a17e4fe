"""Image grids: a batch of images tiled into one picture, written with Pillow.

Layout: `nrow` images per row, ceil(N / nrow) rows, `padding` pixels of
`pad_value` between images and around the border. A grid of N images of
C x H x W is (rows*(H+padding)+padding) x (nrow*(W+padding)+padding) pixels.
Values in [0, 1] are quantised as round(255 * v).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch


def _as_float_images(images) -> torch.Tensor:
    """images as a float32 CPU tensor [N, C, H, W] in [0, 1] (uint8 input is divided by 255)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1] or uint8, got dtype {images.dtype}")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"images must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
    return images.clamp(0.0, 1.0)


def image_grid(images, nrow: int = 8, padding: int = 2, pad_value: float = 0.5) -> np.ndarray:
    """Tile images [N, C, H, W] (float in [0, 1] or uint8) into a uint8 array [H', W', C]."""
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be an int >= 1, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise ValueError(f"pad_value must be in [0, 1], got {pad_value!r}")
    x = _as_float_images(images)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), float(pad_value))
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = x[i]
    return (grid * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_image_grid(images, path: str | os.PathLike, nrow: int = 8, padding: int = 2, pad_value: float = 0.5) -> Path:
    """Write images [N, C, H, W] in [0, 1] as one grid picture (PNG etc. by suffix); returns the path.

    The parent folder is created if needed. See `image_grid` for the layout.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"path must end in an image suffix such as .png, got {str(path)!r}")
    arr = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # uint8: mode L or RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
