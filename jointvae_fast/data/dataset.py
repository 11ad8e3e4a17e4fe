"""The dataset record every loader returns, and the uint8 -> float conversion of a batch."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Dataset:
    """Train and test splits at the model's size.

    train, test: uint8 torch tensors [N, C, H, W] (0 = black, 255 = white), or for dSprites an
        `IndexedImages` (len(), .shape, gather(indices) -> uint8 [B, C, H, W] on the indices' device).
    train_labels, test_labels: int64 [N] class labels (MNIST, Fashion-MNIST) or None.
    train_factors, test_factors: {factor name: array [N]} ground-truth factors (integer dtype = discrete,
        float = continuous; azimuths in degrees, dSprites orientation in radians) or None.
    factor_names: the factor names in a fixed order (empty when there are none).
    label_names: names of the label values 0, 1, ... or, without labels, of the first factor's values (synthetic
        chairs: type, dSprites: shape); None when unnamed.
    image_size: (C, H, W). source: where the images came from (a path, or "procedural ...").
    notes: preprocessing and split, in words.
    Own data (data.own): train/test are `MappedImages` (a memory map, `streamed`); factor_value_names: factor ->
        names of its values 0, 1, ... (categorical labels); split: the split rule and counts (for run.json);
        skipped: (path, reason) of the images that could not be read, listed in the file skipped_list.
    """

    name: str
    train: object
    test: object
    image_size: tuple[int, int, int]
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    train_factors: dict[str, np.ndarray] | None = None
    test_factors: dict[str, np.ndarray] | None = None
    factor_names: tuple[str, ...] = ()
    source: str = ""
    notes: str = ""
    label_names: tuple[str, ...] | None = field(default=None)
    factor_value_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    split: dict | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    skipped_list: str | None = None

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"image_size={self.image_size}, factors={list(self.factor_names)}, source={self.source!r})")


def as_float_images(batch, device=None) -> torch.Tensor:
    """uint8 [B, C, H, W] (tensor or array) -> float32 [B, C, H, W] in [0, 1] (x / 255) on `device`
    (default: the batch's own). The copy to the device happens on the uint8 data (4x fewer bytes)."""
    x = torch.as_tensor(batch)
    if x.dtype != torch.uint8:
        raise TypeError(f"batch must be uint8, got {x.dtype}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.to(torch.float32).div_(255.0)


def gather_batch(images, indices: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] images[indices] for a resident tensor or an IndexedImages, on the indices' device."""
    if isinstance(images, torch.Tensor):
        if images.device != indices.device:
            indices = indices.to(images.device)
        return images.index_select(0, indices)
    return images.gather(indices)
