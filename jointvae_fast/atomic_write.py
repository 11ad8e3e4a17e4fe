"""Atomic file writes: a crash never leaves a half-written file under the real name.

`with atomic_write(path) as f: ...` writes to a temporary file in the target's
folder, flushes it to disk and renames it over `path` (os.replace, atomic on
POSIX and Windows); on any error the temporary file is removed and `path` is
left as it was.

The file gets the mode a plain `open(path, "w")` would leave: a new file
0o666 & ~umask (the temporary file is created with os.open(..., 0o666), so the
kernel applies the umask, and a default ACL of the folder, itself; tempfile.mkstemp
would give 0o600), and a file that is replaced keeps its permission bits
(rwx for user, group, others; the setuid, setgid and sticky bits and the
owner are not carried over).
"""
from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import storage

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty file `.NAME.<random>.tmp` beside `path` (never an existing one), opened for writing."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary file name beside {path}")


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace `path` when the block exits without error. The file's mode:
    that of the file it replaces, else 0o666 & ~umask (module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
            except FileNotFoundError:
                mode = None
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
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
