"""Preprocessed-array caches: one .npz per (dataset, source), written atomically, checked on load.

A cache file holds the arrays plus `__meta__` (a JSON string): the format version, the dataset name,
a description of the preprocessing and a fingerprint of the source files. `load_cache` returns None
(so the caller rebuilds) when the file is missing, unreadable, or its meta differs from the expected
one, i.e. when the source files or the preprocessing changed.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..atomic_write import atomic_write
from .locations import cache_root

CACHE_FORMAT = 1


def fingerprint(files, root=None) -> str:
    """sha256 over (path relative to root, size, mtime_ns) of every file: changes when any file does."""
    h = hashlib.sha256()
    for f in files:
        f = Path(f)
        st = f.stat()
        rel = f.relative_to(root) if root is not None else f.resolve()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_path(name: str, source: str, cache_dir=None) -> Path:
    """<cache>/preprocessed/<name>-<hash of the source location>.npz"""
    key = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return Path(cache_dir or cache_root()) / "preprocessed" / f"{name}-{key}.npz"


def load_cache(path: Path, meta: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays when `path` exists and its meta equals `meta` (plus the format); else None."""
    path = Path(path)
    if not path.is_file():
        return None
    want = dict(meta, cache_format=CACHE_FORMAT)
    try:
        with np.load(path, allow_pickle=False) as z:
            got = json.loads(str(z["__meta__"]))
            if got != json.loads(json.dumps(want)):
                return None
            return {k: z[k] for k in z.files if k != "__meta__"}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as e:  # damaged: rebuild it
        warnings.warn(f"ignoring unreadable cache {path} ({type(e).__name__}: {e}); rebuilding it", stacklevel=2)
        return None


def save_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> bool:
    """Write arrays + meta to `path` atomically (temp file in the same folder, then os.replace).
    Returns False (with a warning) when the folder is not writable; the data is still usable."""
    path = Path(path)
    try:
        with atomic_write(path) as f:
            np.savez(f, __meta__=np.array(json.dumps(dict(meta, cache_format=CACHE_FORMAT))), **arrays)
    except OSError as e:
        warnings.warn(f"could not write cache {path} ({e}); the data will be preprocessed again next time", stacklevel=2)
        return False
    return True
