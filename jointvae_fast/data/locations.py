"""Where dataset files are looked for, where preprocessed caches go, and the errors for missing/bad data.

Search order for a dataset's files (first match wins):
  1. the `data_dir` argument (the training CLI's --data-dir);
  2. every folder in the environment variable JOINTVAE_DATA (os.pathsep-separated);
  3. the per-user cache folder: $JOINTVAE_CACHE, else $XDG_CACHE_HOME/jointvae_fast, else
     ~/.cache/jointvae_fast (downloads are written there too);
  4. dataset-specific system folders (Fashion-MNIST: /usr/share/datasets/fashion-mnist, Debian's
     dataset-fashion-mnist package).
Preprocessed arrays are cached in <cache folder>/preprocessed/.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserInputError

ENV_DATA = "JOINTVAE_DATA"
ENV_CACHE = "JOINTVAE_CACHE"


class DatasetNotFoundError(UserInputError, FileNotFoundError):
    """A dataset whose files were not found; the message lists the folders searched, the file names
    expected and where to get them."""

    def __init__(self, name: str, searched: list[Path], expected: str, get_it: str, extra: str = ""):
        self.name, self.searched, self.expected, self.get_it = name, list(searched), expected, get_it
        lines = [f"dataset {name!r} not found.", "Searched (in order):"]
        lines += [f"  {p}" for p in searched] or ["  (nothing)"]
        lines += [f"Expected: {expected}", f"Get it: {get_it}"]
        if extra:
            lines.append(extra)
        lines.append(f"Point to it with --data-dir DIR (or data_dir=...) or the environment variable {ENV_DATA}.")
        super().__init__("\n".join(lines))


class CorruptDatasetError(UserInputError):
    """A dataset file that exists but cannot be used (bad magic, wrong size, truncated, unreadable).
    `path` names the file."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


def cache_root() -> Path:
    """The per-user cache folder (see the module docstring); not created here."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jointvae_fast"


def search_roots(data_dir=None) -> list[Path]:
    """The folders searched, in order: data_dir, $JOINTVAE_DATA entries, the cache folder (duplicates dropped)."""
    roots: list[Path] = []
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
        roots.append(Path(data_dir).expanduser())
    for part in os.environ.get(ENV_DATA, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    roots.append(cache_root())
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def candidate_dirs(roots: list[Path], subdirs: list[str], data_dir=None, extra: list[Path] = ()) -> list[Path]:
    """root/sub for every root and sub (the data_dir itself is also a candidate), then `extra`."""
    out: list[Path] = []
    for r in roots:
        if data_dir is not None and r == Path(data_dir).expanduser():
            out.append(r)
        out += [r / s for s in subdirs]
    out += [Path(e) for e in extra]
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen
