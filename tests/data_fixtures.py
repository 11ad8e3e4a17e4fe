"""Shared helpers for tests/data/: fixture files in the real on-disk layouts."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX (ubyte) file: magic 00 00 08 ndim, big-endian dims, the data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_set(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    """The four MNIST files with random 28x28 images and labels; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in data.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty per-user cache under tmp_path, no JOINTVAE_DATA, downloads off: tests never see the
    user's files nor the network."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("JOINTVAE_CACHE", str(cache))
    monkeypatch.delenv("JOINTVAE_DATA", raising=False)
    monkeypatch.setenv("JOINTVAE_DOWNLOAD", "0")
    return cache
