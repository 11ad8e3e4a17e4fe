"""Progress of long work (data preprocessing, training, encoding): one display for all of them.

On a terminal a tqdm bar; otherwise (logs, pipes) a plain line at most every `every_s` seconds:
    `<desc> <done>/<total>[ <status>] [<elapsed>]`
and, if the work took at least `every_s`, its last state when it ends. The first plain line comes with the
first update, or with quiet_first=True only once `every_s` seconds have passed (short work then prints nothing). enable=False shows nothing;
enable=True shows a bar even when the stream is not a terminal.
"""
from __future__ import annotations

import math
import os
import sys
import time


def format_seconds(s: float) -> str:
    """[h:]mm:ss, or "?" for a non-finite value."""
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def _is_terminal(stream) -> bool:
    """True when `stream` writes to a terminal of known size."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class Progress:
    """A context manager: update(n, status) advances by n; write(message); close() ends the display.

    total: units of work; desc: what is being done; unit: the bar's unit name; initial: units already done.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "img", initial: int = 0, enable: bool | None = None,
                 every_s: float = 15.0, stream=None, quiet_first: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done = initial
        self.status = ""
        self.t0 = time.monotonic()
        self.last_line = self.t0 if quiet_first else -math.inf
        self.printed_state = True  # nothing new to print yet
        self.enabled = enable is not False
        self.bar = None
        if enable is True or (enable is None and _is_terminal(self.stream)):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                            file=self.stream, smoothing=0.1)

    def update(self, n: int = 1, status: str | None = None, force: bool = False) -> None:
        """Advance by n units; `status` replaces the short text shown after the count; `force` prints a line now."""
        if not self.enabled:
            return
        self.done += n
        if status is not None:
            self.status = status
        if self.bar is not None:
            if status is not None:
                self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(n)
            return
        self.printed_state = False
        now = time.monotonic()
        if force or now - self.last_line >= self.every_s:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last_line = now
        self.printed_state = True
        status = f" {self.status}" if self.status else ""
        print(f"{self.desc} {self.done}/{self.total}{status} [{format_seconds(now - self.t0)}]",
              file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """A message line that does not break the bar."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and not self.printed_state and time.monotonic() - self.t0 >= self.every_s:
            self._line(time.monotonic())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
