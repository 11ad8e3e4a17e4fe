"""Chairs: the rendered chairs of Aubry et al. (2014), or the built-in procedural chairs when absent.

Real chairs, two layouts, looked for under every search root (see locations):
  1. the distributed tree  <root>/rendered_chairs/<chair id>/renders/*.png  (also <root>/chairs/rendered_chairs,
     or data_dir itself): 600x600 RGB on white, 62 views per chair (31 azimuths x 2 elevations), file names
     like image_000_p020_t000_r096.png (p = elevation, t = azimuth, in degrees).
     Preprocessing: crop the centre CROP_FRACTION (2/3: the central 400x400 of 600x600, where the chair
     is), convert to grayscale (PIL "L", ITU-R 601-2 luma), resize to 64x64 with PIL's area-averaging BOX filter.
  2. an ImageFolder of already-64x64 images  <root>/chairs_64/<folder>/*.png|jpg  (also
     <root>/rendered_chairs_64, <root>/3DChairs/images): converted to grayscale; images of another size
     are resized to 64x64 (BOX).
Split: whole chairs are held out: TEST_FRACTION of the chair ids (tree: chair folders; ImageFolder: the
file-name prefix <chair>_image_... when present, else the sub-folders), drawn with a fixed seed, form the
test split. With a single group, a seeded 10% of the images.
Factors (when every file name carries them): azimuth and elevation, float32 degrees.

`load_chairs` falls back to the built-in synthetic chairs (with a one-line notice on stderr) when no real
chairs are found; `chairs_or_synthetic` makes the same decision from a folder search alone (the training CLI
runs a new `--dataset chairs` run as synthetic-chairs with it); `load_synthetic_chairs` asks for them directly
(see synthetic_chairs; generated once and cached).
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import synthetic_chairs as sc
from .cache import cache_path, fingerprint, load_cache, save_cache
from .dataset import Dataset
from .locations import CorruptDatasetError, DatasetNotFoundError, candidate_dirs, search_roots
from ..progress import Progress

CROP_FRACTION = 2 / 3
TEST_FRACTION = 0.1
SPLIT_SEED = 0
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
TREE_SUBDIRS = ["rendered_chairs", "chairs/rendered_chairs"]
FOLDER_SUBDIRS = ["chairs_64", "rendered_chairs_64", "chairs/chairs_64", "3DChairs"]
_VIEW = re.compile(r"_p(\d+)_t(\d+)")
_CHAIR_PREFIX = re.compile(r"^(.+?)_image_\d+_p\d+_t\d+")
PREPROCESS_TREE = (f"centre crop {CROP_FRACTION:.4f} of the shorter side, PIL convert('L'), "
                   "resize((64, 64), BOX)")
PREPROCESS_FOLDER = "PIL convert('L'); resize((64, 64), BOX) only when not already 64x64"


def _tree_images(root: Path) -> list[tuple[str, Path]] | None:
    """(chair id, png path) of a rendered_chairs tree, sorted; None when root is not such a tree."""
    if not root.is_dir():
        return None
    out = []
    for chair in sorted(p for p in root.iterdir() if p.is_dir()):
        renders = chair / "renders"
        if renders.is_dir():
            out += [(chair.name, f) for f in sorted(renders.iterdir()) if f.suffix.lower() == ".png"]
    return out or None


def _folder_images(root: Path) -> list[tuple[str, Path]] | None:
    """(sub-folder, image path) of an ImageFolder (images one level down, or directly in root)."""
    if not root.is_dir():
        return None
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            rel = p.relative_to(root)
            prefix = _CHAIR_PREFIX.match(p.name)  # flat layouts name files <chair>_image_...
            out.append((prefix.group(1) if prefix else rel.parts[0] if len(rel.parts) > 1 else "", p))
    return out or None


def find_real_chairs(data_dir=None):
    """(layout "tree" | "folder", root, [(chair id, path)], folders searched) or (None, None, None, searched)."""
    roots = search_roots(data_dir)
    searched = []
    for layout, subdirs, lister in (("tree", TREE_SUBDIRS, _tree_images), ("folder", FOLDER_SUBDIRS, _folder_images)):
        for d in candidate_dirs(roots, subdirs, data_dir if layout == "tree" else None):
            searched.append(d)
            items = lister(d)
            if items:
                return layout, d, items, searched
    return None, None, None, searched


def fallback_notice(searched) -> str:
    """The one line said on stderr when no real chairs are found in the folders `searched`."""
    return (f"chairs: no rendered chairs found in {len(searched)} folders (see --data-dir); using the built-in "
            "synthetic chairs (--dataset synthetic-chairs)")


def chairs_or_synthetic(data_dir=None) -> str:
    """"chairs" when real chairs are found (a folder search, nothing read), else "synthetic-chairs" after the
    fallback notice on stderr."""
    layout, _, _, searched = find_real_chairs(data_dir)
    if layout is not None:
        return "chairs"
    print(fallback_notice(searched), file=sys.stderr, flush=True)
    return "synthetic-chairs"


def _preprocess_one(args) -> np.ndarray:
    path, layout = args
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if layout == "tree":
                w, h = im.size
                side = int(round(min(w, h) * CROP_FRACTION))
                left, top = (w - side) // 2, (h - side) // 2
                im = im.crop((left, top, left + side, top + side))
            if im.mode in ("RGBA", "LA", "P"):  # composite transparency onto white like the renders
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("L")
            if im.size != (64, 64):
                im = im.resize((64, 64), Image.BOX)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise CorruptDatasetError(path, f"unreadable image ({type(e).__name__}: {e})") from e


def preprocess_images(paths: list[Path], layout: str, progress: bool | None = None, workers: int | None = None,
                      desc: str = "preprocessing") -> np.ndarray:
    """uint8 [N, 1, 64, 64]; in `workers` processes (default: all cores) when there are many images."""
    out = np.empty((len(paths), 1, 64, 64), np.uint8)
    jobs = [(p, layout) for p in paths]
    workers = workers or min(os.cpu_count() or 1, 8)
    with Progress(len(paths), desc, enable=progress) as bar:
        if workers > 1 and len(paths) >= 2000:
            import multiprocessing as mp

            with mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(workers) as pool:
                for i, img in enumerate(pool.imap(_preprocess_one, jobs, chunksize=64)):
                    out[i, 0] = img
                    bar.update(1)
        else:
            for i, job in enumerate(jobs):
                out[i, 0] = _preprocess_one(job)
                bar.update(1)
    return out


def split_groups(groups: list[str], fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """bool [N] test mask holding out whole groups (a seeded `fraction` of the distinct ids, at least one,
    never all); with a single group, a seeded `fraction` of the items."""
    groups = np.asarray(groups)
    ids = np.unique(groups)
    rng = np.random.default_rng(seed)
    if len(ids) >= 2:
        k = min(max(1, int(round(len(ids) * fraction))), len(ids) - 1)
        test_ids = ids[rng.permutation(len(ids))[:k]]
        return np.isin(groups, test_ids)
    n = len(groups)
    k = min(max(1, int(round(n * fraction))), n - 1)
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


def load_real_chairs(data_dir=None, cache: bool = True, cache_dir=None, progress: bool | None = None,
                     workers: int | None = None) -> Dataset:
    """The real chairs (see the module docstring); DatasetNotFoundError when none are found."""
    layout, root, items, searched = find_real_chairs(data_dir)
    if layout is None:
        raise DatasetNotFoundError(
            "chairs", searched,
            "rendered_chairs/<chair id>/renders/*.png (600x600 RGB) or chairs_64/<folder>/*.png (64x64)",
            "https://www.di.ens.fr/willow/research/seeing3Dchairs/ (rendered_chairs.tar); or use "
            "--dataset synthetic-chairs for the built-in procedural chairs")
    if len(items) < 2:
        raise CorruptDatasetError(root, f"only {len(items)} image(s); need at least 2 for a train/test split")
    paths = [p for _, p in items]
    preprocessing = PREPROCESS_TREE if layout == "tree" else PREPROCESS_FOLDER
    meta = {"dataset": "chairs", "layout": layout, "preprocessing": preprocessing,
            "split": f"whole chairs, fraction {TEST_FRACTION}, seed {SPLIT_SEED}",
            "source": fingerprint(paths, root)}
    cpath = cache_path("chairs", str(root.resolve()), cache_dir)
    arrays = load_cache(cpath, meta) if cache else None
    if arrays is None:
        images = preprocess_images(paths, layout, progress, workers, desc=f"chairs: preprocessing {root}")
        test = split_groups([g for g, _ in items])
        arrays = {"train": images[~test], "test": images[test]}
        views = [_VIEW.search(p.name) for p in paths]
        if all(views):
            az = np.array([float(m.group(2)) for m in views], np.float32)
            el = np.array([float(m.group(1)) for m in views], np.float32)
            arrays.update(train_azimuth=az[~test], test_azimuth=az[test], train_elevation=el[~test],
                          test_elevation=el[test])
        if cache:
            save_cache(cpath, arrays, meta)
    names = ("azimuth", "elevation") if "train_azimuth" in arrays else ()
    return Dataset(
        name="chairs", train=torch.from_numpy(arrays["train"]), test=torch.from_numpy(arrays["test"]),
        image_size=(1, 64, 64),
        train_factors={k: arrays[f"train_{k}"] for k in names} or None,
        test_factors={k: arrays[f"test_{k}"] for k in names} or None,
        factor_names=names, source=str(root),
        notes=f"{preprocessing}; test split: {meta['split']}",
    )


def load_synthetic_chairs(data_dir=None, train_count: int | None = None, test_count: int | None = None,
                          seed: int = 0, cache: bool = True, cache_dir=None, progress: bool | None = None) -> Dataset:
    """The built-in procedural chairs (jointvae_fast.data.synthetic_chairs), generated once and cached in
    <cache>/preprocessed/. data_dir is unused (accepted for a uniform signature)."""
    train_count = sc.DEFAULT_TRAIN if train_count is None else train_count
    test_count = sc.DEFAULT_TEST if test_count is None else test_count
    for arg, v in (("train_count", train_count), ("test_count", test_count), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{arg} must be an integer >= 0, got {v!r}")
    train_count, test_count, seed = int(train_count), int(test_count), int(seed)
    meta = {"dataset": "synthetic-chairs", "generator_version": sc.GENERATOR_VERSION, "seed": seed,
            "train_count": train_count, "test_count": test_count, "supersample": sc.SUPERSAMPLE}
    cpath = cache_path("synthetic-chairs", f"seed={seed},n={train_count},{test_count}", cache_dir)
    arrays = load_cache(cpath, meta) if cache else None
    if arrays is None:
        t0 = time.perf_counter()
        tr, trf, te, tef = sc.generate_synthetic_chairs(train_count, test_count, seed, progress=progress)
        arrays = {"train": tr, "test": te, **{f"train_{k}": v for k, v in trf.items()},
                  **{f"test_{k}": v for k, v in tef.items()}}
        meta_time = time.perf_counter() - t0
        if cache:
            save_cache(cpath, arrays, meta)
        if train_count + test_count >= 10_000:
            print(f"synthetic chairs: rendered {train_count + test_count} images in {meta_time:.1f} s"
                  f"{f', cached in {cpath}' if cache else ''}", file=sys.stderr, flush=True)
    names = sc.FACTOR_NAMES
    return Dataset(
        name="synthetic-chairs", train=torch.from_numpy(arrays["train"]), test=torch.from_numpy(arrays["test"]),
        image_size=(1, 64, 64),
        train_factors={k: arrays[f"train_{k}"] for k in names}, test_factors={k: arrays[f"test_{k}"] for k in names},
        factor_names=names, source=f"procedural (jointvae_fast.data.synthetic_chairs v{sc.GENERATOR_VERSION}, seed {seed})",
        notes=("64x64 grayscale renders of 7 chair types from known factors; test split = held-out "
               "combinations of shape-factor bins (see synthetic_chairs)"),
        label_names=sc.CHAIR_TYPES,
    )


def load_chairs(data_dir=None, cache: bool = True, cache_dir=None, progress: bool | None = None, **synthetic) -> Dataset:
    """Real chairs when found, else the built-in synthetic chairs with a one-line notice on stderr."""
    try:
        return load_real_chairs(data_dir, cache=cache, cache_dir=cache_dir, progress=progress)
    except DatasetNotFoundError as e:
        print(fallback_notice(e.searched), file=sys.stderr, flush=True)
        return load_synthetic_chairs(data_dir, cache=cache, cache_dir=cache_dir, progress=progress, **synthetic)
