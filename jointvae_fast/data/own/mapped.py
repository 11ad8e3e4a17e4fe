"""A split of an own data set as a read-only memory map of the uint8 image cache: never loaded whole.

    images = ds.train                 # MappedImages: len(images), images.shape, images.image_size
    batch = images.gather(idx)        # uint8 [B, C, H, W] on idx's device (read from the map in row order)
    images.subset(positions)          # the same file, fewer rows

`streamed = True` tells the trainer (training.batches.TrainImages) to gather batches on the CPU in a background
thread instead of moving the split to the training device. The map is read-only and shared (MAP_SHARED), so it
counts neither towards the process's private memory nor its RLIMIT_DATA; pages are read from disk on demand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class MappedImages:
    """Rows `rows` of the uint8 [total, C, H, W] file at `path`."""

    streamed = True

    def __init__(self, path, total: int, image_size: tuple[int, int, int], rows: np.ndarray):
        self.path, self.total, self.image_size = Path(path), int(total), tuple(int(v) for v in image_size)
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= self.total):
            raise ValueError(f"rows must lie in [0, {self.total}), got {self.rows.min()}..{self.rows.max()}")
        self._map = None

    @property
    def map(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, np.uint8, "r", shape=(self.total, *self.image_size))
        return self._map

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.image_size)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.image_size))

    def __len__(self) -> int:
        return len(self.rows)

    def numpy(self, indices) -> np.ndarray:
        """uint8 [B, C, H, W] of positions `indices` (ints), read from the file in ascending row order."""
        r = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(r, kind="stable")
        out = np.empty((len(r), *self.image_size), np.uint8)
        out[order] = self.map[r[order]]
        return out

    def gather(self, indices) -> torch.Tensor:
        """uint8 [B, C, H, W] of positions `indices` (a tensor or array of ints), on the indices' device."""
        device = indices.device if isinstance(indices, torch.Tensor) else torch.device("cpu")
        idx = indices.cpu().numpy() if isinstance(indices, torch.Tensor) else indices
        out = torch.from_numpy(self.numpy(idx))
        return out if device.type == "cpu" else out.to(device)

    def subset(self, positions) -> "MappedImages":
        """The images at `positions` (ints) of this split, in that order, from the same file."""
        pos = positions.cpu().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
        return MappedImages(self.path, self.total, self.image_size, self.rows[pos])

    def __getstate__(self):  # the map is reopened where it is unpickled
        return {**self.__dict__, "_map": None}

    def __repr__(self) -> str:
        return f"MappedImages({len(self)} x {self.image_size} of {self.path})"
