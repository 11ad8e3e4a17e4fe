"""Your own images: a folder of image files or an array file as a Dataset, via a memory-mapped uint8 cache.

    ds = load_own("photos/", img_size=128)           # or "shapes.h5", data_key="images"
    ds.train, ds.test                                # MappedImages [N, C, 128, 128] (gather(indices) per batch)
    ds.train_labels, ds.test_factors                 # from sub-folders or labels="factors.csv", else None

Folder: searched recursively (listing); PNG, JPEG, WebP, BMP, TIFF, GIF (first frame), 8 or 16 bits,
grayscale, RGB, RGBA (over `background`), palette; EXIF orientation applied (decode). Array: .npy, .npz,
.h5/.hdf5 (arrays). Options: img_size 32|64|128|256 (default 64), fit crop|pad|stretch (default crop),
channels 1|3 (default: detected), background, data_key, labels (CSV; labels), test_fraction (default 0.1;
split: the hash rule of split.py), strict_images (any unreadable image is an error).
Unreadable images are skipped and listed in the cache's skipped.txt with one warning line; none readable,
fewer than 2, or more than MAX_SKIPPED_FRACTION of them is an ImageFolderError.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..dataset import Dataset
from .arrays import ARRAY_EXTS, open_array
from .image_cache import SKIPPED, skipped_text
from .ingest import Ingested, ingest_array, ingest_folder
from .labels import Labels, folder_classes, read_label_csv
from .listing import list_images
from .mapped import MappedImages
from .options import FITS, SIZES, check_test_fraction, pixel_options
from .problems import (ArrayFileError, ImageFolderError, LabelFileError, MissingExtraError, OptionError,
                       OwnDataError)
from .split import RULE, row_keys, split_indices

MAX_SKIPPED_FRACTION = 0.1
# the load_own keywords a training run's config holds (same names as its settings)
OPTION_KEYS = ("img_size", "fit", "channels", "labels", "data_key", "background", "test_fraction", "strict_images")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _example(skipped) -> str:
    rel, why = skipped[0]
    return f"e.g. {rel} ({why})"


def check_readable(root: Path, ing: Ingested, strict: bool) -> None:
    """ImageFolderError when no image, fewer than 2, any (strict) or too many could be read."""
    n, bad = ing.listed, len(ing.skipped)
    where = f"listed in {ing.folder / SKIPPED}"
    if not ing.keys:
        raise ImageFolderError(root, f"none of the {n} image file(s) could be read, {_example(ing.skipped)}")
    if bad and strict:
        raise ImageFolderError(root, f"{bad} of {n} image file(s) could not be read (--strict-images), "
                                     f"{_example(ing.skipped)}; {where}")
    if bad > MAX_SKIPPED_FRACTION * n:
        raise ImageFolderError(root, f"{bad} of {n} image files could not be read (more than "
                                     f"{MAX_SKIPPED_FRACTION:.0%}: is this the right folder?), "
                                     f"{_example(ing.skipped)}; {where}")
    if len(ing.keys) < 2:
        raise ImageFolderError(root, f"only {len(ing.keys)} readable image: a train/test split needs at least 2")


def _labels(ing: Ingested, labels, array: bool) -> Labels | None:
    """The labels of the images read (a CSV row of an image that could not be read is dropped)."""
    if labels is not None:
        known = set(ing.keys) | {k for k, _ in ing.skipped}
        return read_label_csv(Path(labels).expanduser(), ing.keys, known, array)
    return None if array else folder_classes(ing.keys)


def _read_source(root: Path, opts, labels, cache_dir, workers, progress) -> tuple[Ingested, bool]:
    """(the cached images, whether the source is an array file); a --labels CSV is checked against the listed
    images before any image is decoded."""
    if root.is_dir():
        if opts.data_key is not None:
            raise OptionError("--data-key names an array inside an .npz or HDF5 file; the dataset is a folder")
        listing = list_images(root)
        if labels is not None:
            listed = [f.rel for f in listing.images] + [rel for rel, _ in listing.broken]
            read_label_csv(Path(labels).expanduser(), sorted(listed))
        return ingest_folder(listing, opts, cache_dir, workers, progress), False
    reader = open_array(root, opts.data_key)
    if labels is not None:
        read_label_csv(Path(labels).expanduser(), row_keys(reader.layout.n), array=True)
    return ingest_array(reader, opts, cache_dir, workers, progress), True


def _split_part(values: np.ndarray | None, index: np.ndarray):
    return None if values is None else values[index]


def load_own(path, *, img_size=None, fit=None, channels=None, labels=None, data_key=None, background=None,
             test_fraction=None, strict_images: bool = False, cache_dir=None, progress: bool | None = None,
             workers: int | None = None, quiet: bool = False, data_dir=None) -> Dataset:
    """The Dataset of the folder or array file at `path` (module docstring). quiet: say nothing on stderr
    (the notes are in ds.notes). data_dir is ignored (the path names the data)."""
    opts = pixel_options(img_size, fit, channels, background, data_key)
    fraction = check_test_fraction(test_fraction)
    given = Path(path).expanduser()
    if not given.exists():
        raise OwnDataError(given, "does not exist (give a folder of images or an .npy, .npz, .h5 file)")
    root = given.resolve()
    say: Callable[[str], None] = (lambda line: None) if quiet else _stderr
    ing, array = _read_source(root, opts, labels, cache_dir, workers, progress)
    check_readable(root, ing, strict_images)
    lab = _labels(ing, labels, array)
    for note in ing.notes:
        say(note)
    if ing.skipped:
        say(f"warning: {len(ing.skipped)} of {ing.listed} image files could not be read and are skipped "
            f"(listed in {ing.folder / SKIPPED})")
    train, test = split_indices(ing.keys, fraction)
    size = (ing.channels, ing.size, ing.size)
    factors = lab.factors if lab else None
    label = factors[lab.label] if lab and lab.label else None
    split = {"rule": RULE, "test_fraction": fraction, "train": len(train), "test": len(test)}
    notes = "; ".join([*ing.notes, f"fit {opts.fit} to {opts.size}x{opts.size}, bilinear",
                       f"test split: {RULE} ({fraction:g})"]
                      + ([f"labels: {lab.source}"] if lab else []))
    return Dataset(
        name=str(root), train=MappedImages(ing.images, ing.total, size, ing.rows[train]),
        test=MappedImages(ing.images, ing.total, size, ing.rows[test]), image_size=size,
        train_labels=_split_part(label, train), test_labels=_split_part(label, test),
        train_factors={k: v[train] for k, v in factors.items()} if factors else None,
        test_factors={k: v[test] for k, v in factors.items()} if factors else None,
        factor_names=tuple(factors) if factors else (), source=str(root), notes=notes,
        label_names=lab.value_names.get(lab.label) if lab and lab.label else None,
        factor_value_names=dict(lab.value_names) if lab else {}, split=split,
        skipped=tuple(ing.skipped), skipped_list=str(ing.folder / SKIPPED) if ing.skipped else None,
    )




__all__ = ["load_own", "OPTION_KEYS", "SIZES", "FITS", "MAX_SKIPPED_FRACTION", "MappedImages", "OwnDataError",
           "ImageFolderError", "ArrayFileError", "LabelFileError", "OptionError", "MissingExtraError",
           "ARRAY_EXTS", "skipped_text"]
