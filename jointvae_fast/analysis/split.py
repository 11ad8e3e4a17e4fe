"""The test split to evaluate: images (uint8 [M, C, H, W], materialised lazily), labels and factors."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import data as datasets
from .sources import EvaluationError


class GatheredImages:
    """A lazily materialised split (an object with __len__ and gather(indices) -> uint8 [B, C, H, W]) seen as
    a uint8 tensor: len, .shape and slicing [i:j] (contiguous ranges only), limited to the first `n` images."""

    def __init__(self, source, n: int | None = None):
        self.source = source
        self.n = len(source) if n is None else min(n, len(source))
        first = self._gather(0, 1)
        self.shape = (self.n, *first.shape[1:])
        self.dtype = first.dtype

    def _gather(self, i: int, j: int) -> torch.Tensor:
        return torch.as_tensor(self.source.gather(torch.arange(i, j))).cpu()

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx) -> torch.Tensor:
        if not isinstance(idx, slice) or idx.step not in (None, 1):
            raise TypeError("GatheredImages supports contiguous slices only (take: any positions)")
        i, j, _ = idx.indices(self.n)
        return self._gather(i, max(i, j))

    def take(self, positions) -> torch.Tensor:
        """uint8 [len(positions), C, H, W] of the images at `positions` (ints < len(self))."""
        pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        if pos.numel() and int(pos.max()) >= self.n:
            raise IndexError(f"position {int(pos.max())} is out of range for {self.n} images")
        return torch.as_tensor(self.source.gather(pos)).cpu()


def take_images(images, positions) -> torch.Tensor:
    """uint8 [len(positions), C, H, W] of a split's images (a tensor or GatheredImages) at `positions`."""
    if isinstance(images, GatheredImages):
        return images.take(positions)
    return images[torch.as_tensor(np.asarray(positions, dtype=np.int64))]


@dataclass
class EvalSplit:
    images: torch.Tensor | GatheredImages  # uint8 [M, C, H, W]
    labels: np.ndarray | None
    factors: dict[str, np.ndarray]
    name: str | None
    value_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # factor -> names of its values 0, 1, ...


def _as_array(name: str, v, n: int, part: str = "test") -> np.ndarray:
    a = v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    if a.ndim != 1 or a.shape[0] != n:
        raise EvaluationError(f"{name} must be a 1-D array with one value per {part} image ({n}), got shape {a.shape}")
    return a


def _value_names(dataset, factors: dict[str, np.ndarray], labels) -> dict[str, tuple[str, ...]]:
    """A dataset's factor_value_names (own data: categorical labels); a dataset's label_names name its labels;
    without labels, the values of its first factor (synthetic chairs: type, dSprites: shape)."""
    named = {k: tuple(str(n) for n in v) for k, v in (getattr(dataset, "factor_value_names", None) or {}).items()
             if k in factors}
    names = getattr(dataset, "label_names", None)
    if not names or labels is not None or not factors:
        return named
    return {next(iter(factors)): tuple(str(n) for n in names), **named}


def eval_split(dataset, name: str | None = None, limit: int | None = None, part: str = "test") -> EvalSplit:
    """The test split of a dataset object: attributes test (uint8 [M, C, H, W], or an object with __len__ and
    gather(indices)), optional test_labels [M], test_factors {name: [M]}, factor_names, label_names (`_value_names`);
    the first `limit` images. part="train" reads the training split the same way (train, train_labels, ...)."""
    images = getattr(dataset, part, None)
    if images is None:
        raise EvaluationError(f"dataset {name or type(dataset).__name__} has no {part} split (attribute `{part}`)")
    if hasattr(images, "gather") and hasattr(images, "__len__") and not isinstance(images, (torch.Tensor, np.ndarray)):
        images = GatheredImages(images, limit)
    else:
        images = torch.as_tensor(images)
        if limit is not None:
            images = images[:limit]
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise EvaluationError(f"the {part} images must be uint8 [M, C, H, W], got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if n < 2:
        raise EvaluationError(f"the {part} split has {n} image(s); need at least 2")
    labels = getattr(dataset, f"{part}_labels", None)
    cut = (lambda v: v[:n]) if limit is not None else (lambda v: v)  # without --limit, lengths must match
    labels = _as_array(f"{part}_labels", cut(labels), n, part) if labels is not None else None
    factors = {}
    raw = getattr(dataset, f"{part}_factors", None) or {}
    order = list(getattr(dataset, "factor_names", None) or raw.keys())
    for k in order:
        if k in raw:
            factors[k] = _as_array(f"{part}_factors[{k!r}]", cut(raw[k]), n, part)
    return EvalSplit(images, labels, factors, name or getattr(dataset, "name", None),
                     _value_names(dataset, factors, labels))


def load_named_dataset(name: str, data_dir: str | None, options: dict | None = None):
    """jointvae_fast.data.load_dataset(name, data_dir), or for a path the own-images `options` (a run's:
    Source.data_options, so the images are read as the model was trained on them).
    The built-in chairs come without their training split: the test split depends only on its own count and
    seed, so rendering the 6,000 test chairs alone gives the same images in a tenth of the time."""
    if name == "synthetic-chairs":
        return datasets.load_dataset(name, data_dir=data_dir, train_count=0)
    if datasets.builtin_name(name) is None:
        return datasets.load_dataset(name, **(options or {}))
    return datasets.load_dataset(name, data_dir=data_dir)
