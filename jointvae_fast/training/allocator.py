"""The CPU allocator setting of the training CLI (process-wide; no effect on results).

glibc's malloc hands every freed block of 128 KiB..32 MiB back to the kernel, so each training step's
activations and gradients come from fresh mmaps and pay a page fault per 4 KiB page on first touch.
`tune_cpu_allocator()` raises the mmap and trim thresholds (mallopt) so freed blocks stay in the heap and
are reused. `python -m jointvae_fast.train` calls it once at its start for a CPU run; a library user who
wants it calls it once (measured effect: docs/performance.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_ALLOCATOR_TUNED: bool | None = None
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit (HEAP_MAX / 2)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def tune_cpu_allocator() -> bool:
    """Keep freed blocks up to 32 MiB in glibc's heap instead of unmapping them; True when applied.

    mallopt(M_MMAP_THRESHOLD, 32 MiB) and mallopt(M_TRIM_THRESHOLD, 1 GiB), once per process, Linux/glibc
    only (elsewhere, or if libc cannot be found, nothing happens and False is returned).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = sys.platform.startswith("linux") and _mallopt_thresholds()
    return _ALLOCATOR_TUNED


def _mallopt_thresholds() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return (mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1) and ok
