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
    if not all(classes):
        raise ValueError("class names must be non-empty (a flat folder: write_image)")
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


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def fashion_folder_name(name: str) -> str:
    """A Fashion-MNIST class name as a folder name ("T-shirt/top" -> "T-shirt_top")."""
    return name.replace("/", "_")


def write_fashion_mnist_png(out, limit: int | None = None, source=FASHION_DIR) -> dict[str, tuple[str, int]]:
    """Fashion-MNIST (the IDX files in `source`) as 28x28 grayscale PNGs in class sub-folders:
    out/<class>/<train|test>-<index:05d>.png, the first `limit` images of each split (all when None).
    Returns {relative path: (split, index)}.

    The whole set (for the full-length comparison run), from the repository root:
        python -c "from tests.own_fixtures import write_fashion_mnist_png as w; w('fashion-mnist-png')"
    """
    from jointvae_fast.data.idx import FASHION_CLASSES, read_idx

    out, source = Path(out), Path(source)
    made = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        n = len(images) if limit is None else min(limit, len(images))
        for i in range(n):
            rel = f"{fashion_folder_name(FASHION_CLASSES[labels[i]])}/{split}-{i:05d}.png"
            write_image(out / rel, images[i])
            made[rel] = (split, i)
    return made
