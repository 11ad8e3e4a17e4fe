"""One preprocessing pass of a folder or array file into the image cache (image_cache), in parallel over the
cores with a progress bar; a later load whose files and options are unchanged only checks and maps it.

Folder: the files are listed (listing) and compared with the cache's index by (relative path, size, mtime):
unchanged images keep their rows; new and changed ones are decoded and appended (the cache is extended);
when the detected channel count changes, or more than half of the rows would be stale, it is rebuilt. Each
case is said in one line. Images that cannot be read are skipped and remembered (not retried until the file
changes); the caller decides whether too many were. What was done is said in Ingested.notes (the caller prints
them once the data proved usable, so a bad input gives one error line only); the progress shows a bar on a
terminal, elsewhere a line only when the pass takes longer than 15 s.
Array file: rebuilt whenever the file's size or mtime changes; otherwise reused.
New and changed files are first probed (decode.probe: header only; grayscale or colour, or unreadable).
Channels (options.channels None): 1 when every image is grayscale (an array: when it has one channel),
else 3, with grayscale images repeated to RGB and a line saying so. Forced to 1, colour is converted to
luma (ITU-R 601-2, PIL's convert("L")).
"""
from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
from PIL import Image

from ...progress import Progress
from . import arrays, decode
from .image_cache import (IMAGES, cache_folder, grow, header, locked, read_index, row_bytes, write_index,
                          write_skipped)
from .listing import Listing, require_images
from .options import PixelOptions
from .parallel import ordered_map
from .split import row_keys

STALE_FRACTION = 0.5  # rebuild instead of extending when more than this share of the rows would be stale
ARRAY_CHUNK = 512  # rows of an array file read at a time


@dataclass
class Ingested:
    """The cached images of one source: usable `keys` (sorted) and their cache `rows`."""

    folder: Path  # the cache folder
    images: Path  # its raw file
    total: int  # rows in the raw file
    channels: int
    size: int
    keys: list[str]
    rows: np.ndarray  # int64 [len(keys)]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    listed: int = 0  # images listed (usable + skipped)
    notes: list[str] = field(default_factory=list)  # how the data was read, said once per load


def _probe_task(path: str):
    try:
        return decode.probe(path), None
    except decode.Skip as e:
        return None, e.args[0]


def _decode_task(path: str, opts: PixelOptions, channels: int):
    try:
        return decode.decode(path, opts, channels), None
    except decode.Skip as e:
        return None, e.args[0]


def _channel_note(root: Path, gray: int, colour: int, channels: int, forced: bool) -> str | None:
    if channels == 3 and gray and colour:
        return (f"{root}: {gray} grayscale and {colour} colour images: all read as RGB"
                + ("" if forced else " (--channels 1 reads them as grayscale)"))
    if channels == 1 and colour:
        return f"{root}: {colour} colour image(s) converted to grayscale (--channels 1)"
    return None


def _write_rows(target: Path, start: int, results, n: int, channels: int, size: int, desc: str,
                progress) -> list[int | str]:
    """Write the arrays of `results` ((array, None) or (None, reason), n of them) as rows start, start+1, ...
    of `target` (grown to fit, then cut to the rows written); per result its row, or the reason it failed."""
    grow(target, start + n, channels, size)
    out: list[int | str] = []
    row = start
    mm = np.memmap(target, np.uint8, "r+", shape=(start + n, channels, size, size)) if n else None
    with Progress(n, desc, enable=progress, quiet_first=True) as bar:
        for arr, reason in results:
            if arr is None:
                out.append(reason)
            else:
                mm[row] = arr
                out.append(row)
                row += 1
            bar.update(1)
    if mm is not None:
        mm.flush()
        del mm
    grow(target, row, channels, size)
    return out


def ingest_folder(listing: Listing, opts: PixelOptions, cache_dir=None, workers: int | None = None,
                  progress: bool | None = None) -> Ingested:
    """The images of a folder's listing (listing.list_images) in the cache (module docstring)."""
    require_images(listing)
    folder = cache_folder(listing.root, opts, cache_dir)
    with locked(folder):
        return _ingest_listing(listing, opts, folder, workers, progress)


def _ingest_listing(listing: Listing, opts: PixelOptions, folder: Path, workers, progress) -> Ingested:
    root = listing.root
    t0 = time.perf_counter()
    notes: list[str] = []
    old, why = read_index(folder, header("folder", root, opts))
    old_files = old["files"] if old else {}
    current = {f.rel: f for f in listing.images}
    same = {rel for rel, f in current.items() if old_files.get(rel, [None, None])[:2] == [f.size, f.mtime_ns]}
    entries = {rel: list(old_files[rel]) for rel in same}  # [size, mtime, row, gray, reason]
    new = [f for rel, f in current.items() if rel not in same]
    probed = ordered_map_files(_probe_task, new, workers, progress, f"{root.name}: reading headers")
    for f, (gray, reason) in zip(new, probed):
        entries[f.rel] = [f.size, f.mtime_ns, -1, gray, reason]
    usable = [rel for rel in sorted(entries) if entries[rel][4] is None]
    gray = sum(1 for rel in usable if entries[rel][3])
    channels = opts.channels or (1 if usable and gray == len(usable) else 3)
    stale = (old["rows"] - sum(1 for rel in same if old_files[rel][2] >= 0)) if old else 0
    rebuild = old is None or channels != old["channels"] or stale > STALE_FRACTION * max(1, old["rows"])
    todo = [rel for rel in usable if rebuild or entries[rel][2] < 0]
    if old is None:
        notes.append(f"{root}: {len(todo)} images preprocessed to {channels}x{opts.size}x{opts.size} ({opts.fit}) "
                     f"into the cache {folder}" + (f" (the old cache was not usable: {why})" if why else ""))
    elif todo or len(same) != len(old_files):
        removed = len(set(old_files) - set(current))
        changed = sum(1 for rel in current if rel in old_files and rel not in same)
        what = (f"{len(new) - changed} new, {changed} changed, {removed} removed image file(s)")
        action = ("rebuilt it" + (f" (channels {old['channels']} -> {channels})" if channels != old["channels"]
                                  else "")) if rebuild else f"extended it by {len(todo)} image(s)"
        notes.append(f"{root}: the cache was out of date ({what}): {action}")
    if old is None or todo or len(same) != len(old_files) or rebuild:
        start = 0 if rebuild else old["rows"]
        target = folder / (IMAGES + ".part" if rebuild else IMAGES)
        results = ordered_map_files(functools.partial(_decode_task, opts=opts, channels=channels),
                                    [current[rel] for rel in todo], workers, None, None, lazy=True)
        placed = _write_rows(target, start, results, len(todo), channels, opts.size,
                             f"{root.name}: preprocessing", progress)
        for rel, r in zip(todo, placed):
            entries[rel][2], entries[rel][4] = (r, None) if isinstance(r, int) else (-1, r)
        if rebuild:
            os.replace(target, folder / IMAGES)
        total = start + sum(1 for r in placed if isinstance(r, int))
        write_index(folder, {**header("folder", root, opts), "channels": channels, "size": opts.size,
                             "rows": total, "files": entries})
    else:
        total = old["rows"]
    keys = [rel for rel in sorted(entries) if entries[rel][2] >= 0]
    skipped = sorted([(rel, e[4]) for rel, e in entries.items() if e[2] < 0] + listing.broken)
    write_skipped(folder, skipped)
    n_gray = sum(1 for rel in keys if entries[rel][3])
    n_colour = sum(1 for rel in keys if entries[rel][3] is False)
    if notes:
        notes[-1] += f" ({time.perf_counter() - t0:.1f} s)"
    note = _channel_note(root, n_gray, n_colour, channels, opts.channels is not None)
    notes += [note] if note else []
    if listing.revisited:
        notes.append(f"{root}: {len(listing.revisited)} folder(s) reached again through a symlink were not read "
                     f"twice, e.g. {listing.revisited[0]}")
    return Ingested(folder, folder / IMAGES, total, channels, opts.size, keys,
                    np.array([entries[rel][2] for rel in keys], np.int64), skipped,
                    len(current) + len(listing.broken), notes)


def ordered_map_files(fn, files, workers, progress, desc, lazy: bool = False):
    """fn(str(path)) of each listed file in order, in parallel (parallel.ordered_map); a list with a progress
    bar, or (lazy) an iterator whose consumer shows progress."""
    it = ordered_map(fn, (str(f.path) for f in files), len(files), workers, chunksize=8)
    if lazy:
        return it
    out = []
    with Progress(len(files), desc, enable=progress, quiet_first=True) as bar:
        for r in it:
            out.append(r)
            bar.update(1)
    return out


def convert_chunk(nhwc: np.ndarray, opts: PixelOptions, channels: int) -> np.ndarray:
    """uint8 [n, H, W, c] (c in 1, 3, 4) -> uint8 [n, channels, SIZE, SIZE]: copied when already at the size
    (1 channel repeated to 3), else image by image through decode.finish (alpha, mode, fit)."""
    n, h, w, c = nhwc.shape
    if _is_copy(h, w, c, opts.size, channels):
        chw = nhwc.transpose(0, 3, 1, 2)
        return np.repeat(chw, channels, 1) if c != channels else np.ascontiguousarray(chw)
    out = np.empty((n, channels, opts.size, opts.size), np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    for i in range(n):
        out[i] = decode.finish(Image.fromarray(nhwc[i, :, :, 0] if c == 1 else nhwc[i], mode), opts, channels)
    return out


def _is_copy(h: int, w: int, c: int, size: int, channels: int) -> bool:
    return h == w == size and (c == channels or (c == 1 and channels == 3))


def _array_note(reader: arrays.ArrayReader, scale: str, channels: int) -> str:
    line = arrays.describe(reader, scale)
    c = reader.layout.channels
    if c != channels:
        line += ("; converted to grayscale (--channels 1)" if channels == 1 else
                 "; composited on the background" if c == 4 else "; gray repeated to RGB (--channels 3)")
    return line


def _build_array(reader: arrays.ArrayReader, opts: PixelOptions, channels: int, target: Path, workers,
                 progress) -> str:
    """Write the array's images into the raw file `target`; the line describing how it was read."""
    lay = reader.layout
    grow(target, lay.n, channels, opts.size)
    mm = np.memmap(target, np.uint8, "r+", shape=(lay.n, channels, opts.size, opts.size))
    chunks = reader.chunks(ARRAY_CHUNK)
    start, first = next(chunks)
    scale = arrays.value_scale(reader.path, first)

    def prepared():
        for s, raw in itertools.chain([(start, first)], chunks):
            yield arrays.as_nhwc(arrays.to_uint8(reader.path, raw, scale, s), lay.order)

    copy = _is_copy(*lay.hw, lay.channels, opts.size, channels)
    n_chunks = -(-lay.n // ARRAY_CHUNK)
    row = 0
    with Progress(lay.n, f"{reader.path.name}: preprocessing", enable=progress, quiet_first=True) as bar:
        for block in ordered_map(functools.partial(convert_chunk, opts=opts, channels=channels), prepared(),
                                 n_chunks, 1 if copy else workers, chunksize=1, min_per_worker=1):
            mm[row : row + len(block)] = block
            row += len(block)
            bar.update(len(block))
    mm.flush()
    del mm
    return _array_note(reader, scale, channels)


def ingest_array(reader: arrays.ArrayReader, opts: PixelOptions, cache_dir=None, workers: int | None = None,
                 progress: bool | None = None) -> Ingested:
    """The images of an array file (arrays.open_array) in the cache (module docstring)."""
    path = reader.path
    notes: list[str] = []
    st = path.stat()
    folder = cache_folder(path, opts, cache_dir)
    want = {**header("array", path, opts), "file": [st.st_size, st.st_mtime_ns], "key": reader.key}
    with locked(folder):
        index, why = read_index(folder, want)
        if index is None:
            channels = opts.channels or (1 if reader.layout.channels == 1 else 3)
            t0 = time.perf_counter()
            part = folder / (IMAGES + ".part")
            try:
                note = _build_array(reader, opts, channels, part, workers, progress)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, folder / IMAGES)
            index = {**want, "channels": channels, "size": opts.size, "rows": reader.layout.n, "read_as": note}
            write_index(folder, index)
            write_skipped(folder, [])
            notes.append(f"{path}: {reader.layout.n} images preprocessed to {channels}x{opts.size}x{opts.size} "
                         f"({opts.fit}) into the cache {folder}" + (f" (the old cache was not usable: {why})" if why
                                                                    else "")
                         + f" ({time.perf_counter() - t0:.1f} s)")
    n = index["rows"]
    return Ingested(folder, folder / IMAGES, n, index["channels"], opts.size, row_keys(n), np.arange(n, dtype=np.int64),
                    [], n, notes + [index["read_as"]])
