"""Atomic file writes: a crash never leaves a half-written file under the real name.

`with atomic_write(path) as f: ...` writes to a temporary file in the target's
folder, flushes it to disk and renames it over `path` (os.replace, atomic on
POSIX and Windows); on any error the temporary file is removed and `path` is
left as it was.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import storage


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace `path` when the block exits without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` by `text` (UTF-8) atomically, as `atomic_write`; a full or read-only disk is a
    StorageError naming `path`."""
    with storage(path), atomic_write(path) as f:
        f.write(text.encode("utf-8"))
