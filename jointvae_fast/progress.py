"""Progress display for long preprocessing: a tqdm bar on a terminal, sparse plain lines otherwise."""
from __future__ import annotations

import sys
import time


class _SparseLines:
    """Prints `desc: done/total` to stderr at most every `every_s` seconds (for logs, not terminals)."""

    def __init__(self, total: int, desc: str, every_s: float = 15.0):
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(f"{self.desc}: {self.done}/{self.total} ({now - self.t0:.0f} s)", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and time.monotonic() - self.t0 >= self.every_s:
            print(f"{self.desc}: done, {self.total} in {time.monotonic() - self.t0:.0f} s", file=sys.stderr, flush=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, desc: str, enable: bool | None = None):
    """A context manager with update(n). enable=None: a tqdm bar when stderr is a terminal, else sparse
    lines; True: always tqdm; False: silent."""
    if enable is False:
        return _Silent()
    if enable is None and not sys.stderr.isatty():
        return _SparseLines(total, desc)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)
