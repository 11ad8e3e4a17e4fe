"""Preprocessing in parallel over the cores: `ordered_map(fn, items, workers)` yields fn(item) in order.

Worker processes are forked (spawned on macOS), so `fn` must be a module-level function (or a
functools.partial of one). Fewer than MIN_PER_WORKER items per worker run in this process.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sys
from typing import Callable, Iterable, Iterator

MIN_PER_WORKER = 32


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable, items: Iterable, n_items: int, workers: int | None = None, chunksize: int = 8,
                min_per_worker: int = MIN_PER_WORKER) -> Iterator:
    """fn(item) for each of the `n_items` items, in order, over `workers` processes (default: every core).
    Items are taken from `items` a window at a time (a few per worker), so a lazy iterable of large items
    (chunks of an array) is never read far ahead."""
    workers = min(workers or default_workers(), max(1, n_items // max(1, min_per_worker)))
    if workers <= 1:
        yield from map(fn, items)
        return
    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    pool = ctx.Pool(workers)
    window = 4 * workers * chunksize
    try:
        it = iter(items)
        while True:
            batch = list(itertools.islice(it, window))
            if not batch:
                break
            yield from pool.imap(fn, batch, chunksize=chunksize)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
