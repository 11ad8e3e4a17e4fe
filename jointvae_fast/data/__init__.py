"""The paper's datasets as uint8 tensors at the model's size: `load_dataset(name, data_dir=None, ...)`.

    ds = load_dataset("chairs")                 # real chairs if found, else the built-in synthetic ones
    x = as_float_images(ds.train[idx], device)  # a batch as float [B, C, H, W] in [0, 1]

Names (`DATASETS`): mnist, fashion-mnist (1x32x32), chairs, synthetic-chairs, dsprites (1x64x64),
celeba (3x64x64). Any other value that names an existing folder or .npy/.npz/.h5 file is your own data
(jointvae_fast.data.own.load_own; a built-in name always means the built-in set: write ./mnist for a folder). Where files are looked for and the cache: jointvae_fast.data.locations. What each
loader accepts and does: docs/datasets.md and each module's docstring.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserInputError
from .celeba import load_celeba
from .chairs import load_chairs, load_synthetic_chairs
from .dataset import Dataset, as_float_images, gather_batch
from .dsprites import load_dsprites
from .idx import load_fashion_mnist, load_mnist
from .locations import CorruptDatasetError, DatasetNotFoundError, cache_root, search_roots
from .own import ARRAY_EXTS, OPTION_KEYS, load_own


DATASETS = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "chairs": load_chairs,
    "synthetic-chairs": load_synthetic_chairs,
    "celeba": load_celeba,
    "dsprites": load_dsprites,
}


def builtin_name(name: str) -> str | None:
    """The DATASETS key `name` means (case and _ vs - ignored), or None for a path."""
    key = name.lower().replace("_", "-")
    return key if key in DATASETS else None


def load_dataset(name: str, data_dir=None, **options) -> Dataset:
    """The dataset `name` (one of DATASETS) or your own data at the path `name` (data.own.load_own).
    data_dir: searched first for a built-in set (see locations). Other options go to the dataset's loader
    (e.g. download=False, cache=False, progress=False, cache_dir=...; own data: OPTION_KEYS)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    key = builtin_name(name)
    if key is not None:
        return DATASETS[key](data_dir=data_dir, **options)
    if not looks_like_path(name):
        raise UserInputError(f"unknown dataset {name!r}: neither one of {', '.join(DATASETS)} nor an existing "
                             "folder of images or .npy/.npz/.h5 file")
    return load_own(name, **options)


def looks_like_path(name: str) -> bool:
    """Whether a dataset value that is not a built-in name is meant as a path: it exists, or it has a path
    separator or an array file's extension (then a missing one is named as a missing path)."""
    p = Path(name).expanduser()
    return p.exists() or "/" in name or os.sep in name or p.suffix.lower() in ARRAY_EXTS


__all__ = ["DATASETS", "OPTION_KEYS", "builtin_name", "looks_like_path", "load_own", "Dataset", "DatasetNotFoundError", "CorruptDatasetError", "load_dataset",
           "as_float_images", "gather_batch", "cache_root", "search_roots"]
