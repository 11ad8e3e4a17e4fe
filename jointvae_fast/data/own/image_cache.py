"""The uint8 image cache of an own data set: one folder per (source, pixel options) in <cache>/images/.

    <cache>/images/<source name>-<key>/
        images.u8     raw uint8 rows [rows, C, SIZE, SIZE] (memory-mapped for training; only appended to)
        index.json    what the rows are: format, source, pixel options, channels, size, rows, and per image file
                      [size, mtime_ns, row (-1: skipped), grayscale, reason skipped] (an array: its size, mtime
                      and key); written atomically after the rows
        skipped.txt   the images that could not be read, one "path<TAB>reason" a line
        lock          held (flock) while the cache is checked or written, so concurrent processes (DDP ranks)
                      build it once

key = sha256 of the source's absolute path and the pixel options: other options keep their own cache.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from ...atomic_write import atomic_write_text
from ...errors import storage
from ..locations import cache_root
from .options import PixelOptions

FORMAT = 1
IMAGES, INDEX, SKIPPED, LOCK = "images.u8", "index.json", "skipped.txt", "lock"


def cache_folder(source: Path, opts: PixelOptions, cache_dir=None) -> Path:
    """<cache>/images/<name>-<16 hex digits of the key> (module docstring)."""
    key = hashlib.sha256(json.dumps({"source": str(source), "pixels": opts.as_dict()}, sort_keys=True).encode())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name)[:40] or "data"
    return Path(cache_dir or cache_root()) / "images" / f"{name}-{key.hexdigest()[:16]}"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The folder created and its lock held (exclusive) for the duration."""
    with storage(folder, "create the image cache in"):
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def header(kind: str, source: Path, opts: PixelOptions) -> dict[str, Any]:
    """The part of index.json that must match for the cache to be used."""
    return {"format": FORMAT, "kind": kind, "source": str(source), "pixels": json.loads(json.dumps(opts.as_dict()))}


def read_index(folder: Path, want: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(index, None) when folder holds a usable index matching `want` and its rows; else (None, why not)."""
    path = folder / INDEX
    if not path.is_file():
        return None, None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        ok = all(index.get(k) == v for k, v in want.items())
        size = (folder / IMAGES).stat().st_size
        need = int(index["rows"]) * int(index["channels"]) * int(index["size"]) ** 2
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"its index is unreadable ({type(e).__name__})"
    if not ok:
        return None, "it was written for other options or by another version"
    if size < need:
        return None, f"{IMAGES} is shorter than its index says"
    return index, None


def write_index(folder: Path, index: dict[str, Any]) -> None:
    with storage(folder / INDEX):
        atomic_write_text(folder / INDEX, json.dumps(index, separators=(",", ":")) + "\n")


def skipped_text(skipped) -> str:
    """The list of images that could not be read: one "path<TAB>reason" line each."""
    return "".join(f"{rel}\t{why}\n" for rel, why in skipped)


def write_skipped(folder: Path, skipped: list[tuple[str, str]]) -> Path:
    """skipped.txt (skipped_text) in the cache folder, written when it changes; its path."""
    path = folder / SKIPPED
    text = skipped_text(skipped)
    try:
        same = path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        atomic_write_text(path, text)
    return path


def row_bytes(channels: int, size: int) -> int:
    return channels * size * size


def grow(path: Path, rows: int, channels: int, size: int) -> None:
    """Make the raw file at `path` exactly `rows` rows long (created when missing)."""
    with storage(path):
        with open(path, "ab"):
            pass
        os.truncate(path, rows * row_bytes(channels, size))
