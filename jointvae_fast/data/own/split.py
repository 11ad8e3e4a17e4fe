"""The train/test split of an own data set, from a hash of each image's key (its path relative to the folder,
or "#<row>" in an array file): image k is in the test split when

    int(sha256(key, UTF-8)[:8], little-endian) / 2**64 < test_fraction.

An image's side depends on its key alone, so adding or removing images never moves another one between the
splits. When no key falls below the fraction (a handful of images), the image with the smallest hash is the
test split; when every key does, the one with the largest hash is the training split.

The test images are ordered by that hash, not by path: a folder lists class by class, and whatever reads
"the first n test images" (the reconstruction NLL, image grids) gets a sample of all of them; the order of
two images never changes when others are added.
"""
from __future__ import annotations

import hashlib

import numpy as np

RULE = "sha256(key) as a fraction of 2**64 < test_fraction; key = path relative to the folder, or #row of an array"


def key_fractions(keys) -> np.ndarray:
    """float64 [N]: each key's hash as a fraction in [0, 1)."""
    return np.array([int.from_bytes(hashlib.sha256(k.encode("utf-8")).digest()[:8], "little") / 2.0**64
                     for k in keys], np.float64)


def hash_split(keys, test_fraction: float, fractions: np.ndarray | None = None) -> np.ndarray:
    """bool [N]: True for the test images (module docstring). Needs at least 2 keys. `fractions`: the keys'
    key_fractions where already computed."""
    h = key_fractions(keys) if fractions is None else fractions
    if len(h) < 2:
        raise ValueError(f"a split needs at least 2 images, got {len(h)}")
    test = h < test_fraction
    if not test.any():
        test[np.argmin(h)] = True
    elif test.all():
        test[np.argmax(h)] = False
    return test


def split_indices(keys, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train [N - T], test [T]) int64 indices into keys: train in the keys' order, test by ascending hash."""
    h = key_fractions(keys)
    test = hash_split(keys, test_fraction, h)
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    return train_idx, test_idx[np.argsort(h[test_idx], kind="stable")]


def row_keys(n: int) -> list[str]:
    """The keys of an array's rows: "#0", "#1", ..."""
    return [f"#{i}" for i in range(n)]
