"""The paper's datasets as uint8 tensors at the model's size: `load_dataset(name, data_dir=None, ...)`.

    ds = load_dataset("chairs")                 # real chairs if found, else the built-in synthetic ones
    x = as_float_images(ds.train[idx], device)  # a batch as float [B, C, H, W] in [0, 1]

Names (`DATASETS`): mnist, fashion-mnist (1x32x32), chairs, synthetic-chairs, dsprites (1x64x64),
celeba (3x64x64). Where files are looked for and the cache: jointvae_fast.data.locations. What each
loader accepts and does: docs/datasets.md and each module's docstring.
"""
from __future__ import annotations

from ..errors import UserInputError
from .celeba import load_celeba
from .chairs import load_chairs, load_synthetic_chairs
from .dataset import Dataset, as_float_images, gather_batch
from .dsprites import load_dsprites
from .idx import load_fashion_mnist, load_mnist
from .locations import CorruptDatasetError, DatasetNotFoundError, cache_root, search_roots


DATASETS = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "chairs": load_chairs,
    "synthetic-chairs": load_synthetic_chairs,
    "celeba": load_celeba,
    "dsprites": load_dsprites,
}


def load_dataset(name: str, data_dir=None, **options) -> Dataset:
    """The dataset `name` (one of DATASETS). data_dir: searched first (see locations). Other options go
    to the dataset's loader (e.g. download=False, cache=False, progress=False, cache_dir=...)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise UserInputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key](data_dir=data_dir, **options)


__all__ = ["DATASETS", "Dataset", "DatasetNotFoundError", "CorruptDatasetError", "load_dataset",
           "as_float_images", "gather_batch", "cache_root", "search_roots"]
