"""CelebA: a folder of img_align_celeba JPEGs -> uint8 [N, 3, 64, 64], cached. No built-in default.

Looked for in <root>/img_align_celeba, <root>/celeba/img_align_celeba (and data_dir itself when it holds
the JPEGs) for every search root (see locations).
Preprocessing: crop the central CROP x CROP square (148x148 of the 178x218 aligned images, the usual
face crop; the shorter side when an image is smaller), resize to 64x64 with PIL's area-averaging BOX
filter, RGB.
Split: list_eval_partition.txt (next to the image folder or one level up) when present: partition 2 is
the test split, 0 and 1 train. Otherwise the last TEST_FRACTION of the files in name order (for the
full set this is close to the official test split, which is the last 19,962 files).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, fingerprint, load_cache, save_cache
from .dataset import Dataset
from .locations import CorruptDatasetError, DatasetNotFoundError, candidate_dirs, search_roots
from ..progress import Progress

CROP = 148
TEST_FRACTION = 0.1
SUBDIRS = ["img_align_celeba", "celeba/img_align_celeba", "celeba/img_align_celeba/img_align_celeba"]
EXTS = (".jpg", ".jpeg", ".png")
PREPROCESSING = f"centre crop {CROP}x{CROP}, resize((64, 64), BOX), RGB"


def _list(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTS)


def _one(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
            side = min(CROP, w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.convert("RGB").crop((left, top, left + side, top + side)).resize((64, 64), Image.BOX)
            return np.asarray(im, np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise CorruptDatasetError(path, f"unreadable image ({type(e).__name__}: {e})") from e


def _partition(folder: Path, files: list[Path]) -> np.ndarray | None:
    for cand in (folder / "list_eval_partition.txt", folder.parent / "list_eval_partition.txt"):
        if cand.is_file():
            table = {}
            for line in cand.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    table[parts[0]] = int(parts[1])
            missing = [f.name for f in files if f.name not in table]
            if missing:
                raise CorruptDatasetError(cand, f"no partition for {len(missing)} image(s), e.g. {missing[0]}")
            return np.array([table[f.name] == 2 for f in files])
    return None


def load_celeba(data_dir=None, cache: bool = True, cache_dir=None, progress: bool | None = None,
                workers: int | None = None) -> Dataset:
    dirs = candidate_dirs(search_roots(data_dir), SUBDIRS, data_dir)
    folder, files = None, []
    for d in dirs:
        files = _list(d)
        if files:
            folder = d
            break
    if folder is None:
        raise DatasetNotFoundError("celeba", dirs, "img_align_celeba/*.jpg (the aligned-and-cropped CelebA images)",
                                   "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_align_celeba.zip); "
                                   "there is no built-in substitute")
    if len(files) < 2:
        raise CorruptDatasetError(folder, f"only {len(files)} image(s); need at least 2 for a train/test split")
    test = _partition(folder, files)
    split = "list_eval_partition.txt (2 = test)"
    if test is None or test.all() or not test.any():
        k = min(max(1, int(round(len(files) * TEST_FRACTION))), len(files) - 1)
        test = np.zeros(len(files), bool)
        test[-k:] = True
        split = f"last {TEST_FRACTION:.0%} of the files in name order"
    meta = {"dataset": "celeba", "preprocessing": PREPROCESSING, "split": split, "source": fingerprint(files, folder)}
    cpath = cache_path("celeba", str(folder.resolve()), cache_dir)
    arrays = load_cache(cpath, meta) if cache else None
    if arrays is None:
        images = np.empty((len(files), 3, 64, 64), np.uint8)
        workers = workers or min(os.cpu_count() or 1, 8)
        with Progress(len(files), f"celeba: preprocessing {folder}", enable=progress) as bar:
            if workers > 1 and len(files) >= 2000:
                import multiprocessing as mp

                with mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(workers) as pool:
                    for i, img in enumerate(pool.imap(_one, files, chunksize=64)):
                        images[i] = img
                        bar.update(1)
            else:
                for i, f in enumerate(files):
                    images[i] = _one(f)
                    bar.update(1)
        arrays = {"train": images[~test], "test": images[test]}
        if cache:
            save_cache(cpath, arrays, meta)
    return Dataset(name="celeba", train=torch.from_numpy(arrays["train"]), test=torch.from_numpy(arrays["test"]),
                   image_size=(3, 64, 64), source=str(folder), notes=f"{PREPROCESSING}; test split: {split}")
