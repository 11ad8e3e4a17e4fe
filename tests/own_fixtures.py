"""Helpers for the own-images tests: folders of image files and array files with known pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 [h, w] or [h, w, 3] of random pixels (seeded)."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_image(path: Path, arr: np.ndarray, **save) -> Path:
    """Save `arr` (HxW gray, HxWx3 RGB, HxWx4 RGBA) at `path` (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save)
    return path


def class_folder(root: Path, classes: dict[str, int], size=(24, 20), channels: int = 1, ext: str = ".png",
                 seed: int = 0) -> dict[str, np.ndarray]:
    """root/<class>/<i>.png with `classes[name]` random images each; {relative path: pixels}."""
    out = {}
    k = seed
    for name, n in classes.items():
        for i in range(n):
            arr = pattern(size[1], size[0], channels, k)
            k += 1
            rel = f"{name}/{i:03d}{ext}"
            write_image(root / rel, arr)
            out[rel] = arr
    return out


def expected_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """What the default fit gives a square image: PIL bilinear resize to size x size, as [C, S, S]."""
    im = Image.fromarray(arr).resize((size, size), Image.BILINEAR)
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
