"""The error policy: a problem of the user's making is one line; anything else is a bug with a traceback.

`UserInputError` (and its subclasses) covers bad settings, data files, checkpoints, run directories,
devices and a full or read-only disk. It is raised where the input is checked, with a message that
names the input and says what would be valid. The command-line tools run their work through
`run_cli`, which prints a UserInputError as the single line `error: <message>` (exit status 2) and
every other exception as its traceback followed by one line saying that it is a bug (exit status 1);
an OSError that can only mean a full or read-only disk (ENOSPC, EDQUOT, EROFS, EFBIG) is also one line,
wherever it was raised.

UserInputError subclasses ValueError so that callers of the Python API that catch ValueError keep
working; the CLIs catch only UserInputError, so a ValueError raised by a bug is never mistaken for a
user's mistake.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, NoReturn

EXIT_USAGE = 2
EXIT_BUG = 1
BUG_LINE = ("this is a bug in jointvae_fast, not a problem with your input: please report it with the "
            "traceback above on the project's issue tracker")
# errno values that can only mean a full or read-only disk, wherever they come from
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
# ... and those that, at a path the user chose, mean the machine or the user's files are at fault
ENVIRONMENT_ERRNOS = DISK_ERRNOS | {errno.EACCES, errno.EPERM, errno.EIO, errno.ENOTDIR, errno.EISDIR,
                                    errno.ENAMETOOLONG}


class UserInputError(ValueError):
    """A problem of the user's making: the message names the input and what would be valid."""


class StorageError(UserInputError):
    """A file that could not be written or read because of the machine (disk full, read-only, no permission)."""


def one_line(message: str) -> str:
    """`message` with its line breaks folded into '; ' (the CLIs print exactly one error line)."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return "; ".join(parts) if parts else "(no message)"


@contextmanager
def storage(path, action: str = "write") -> Iterator[None]:
    """Turn an OSError of the environment (ENOSPC, EROFS, EACCES, ...) while touching `path` into StorageError;
    other OSErrors (likely bugs) propagate unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        raise StorageError(f"cannot {action} {path}: {e.strerror or os.strerror(e.errno)}") from e


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line form for a bad command line: `error: <what> (see --help)`."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE)


def run_cli(work: Callable[[], int]) -> int:
    """Run a CLI's `work`: its exit status; a UserInputError -> one line and EXIT_USAGE; any other exception
    -> its traceback, a line saying it is a bug, EXIT_BUG. KeyboardInterrupt and SystemExit pass through."""
    try:
        return work()
    except UserInputError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            _report_bug()
            return EXIT_BUG
        print(f"error: cannot write {e.filename or 'a file'}: {e.strerror}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception:
        _report_bug()
        return EXIT_BUG


def _report_bug() -> None:
    traceback.print_exc(file=sys.stderr)
    print(BUG_LINE, file=sys.stderr, flush=True)
