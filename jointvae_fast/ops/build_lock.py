"""The JIT build's lock: one build per folder at a time, and never a wait on a process that is gone.

An exclusive fcntl.flock on <build dir>/jointvae.lock. While it is held the file records {"pid", "started"}; a
clean release empties it. The kernel drops a flock when its holder dies, so a killed build never blocks the next
one; the record it leaves (a pid no longer running) is the "stale lock" that `lock_state` finds, the doctor
reports and the next build clears. Older torch (its FileBaton) locked a build folder by the mere existence of a
file named `lock` and waited on it forever: when torch locks that way, the build that holds our lock deletes
such a file (nobody else can be building there). A live holder is waited on for at most `wait` seconds.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock of ours, torch's only
    fcntl = None

LOCK_NAME = "jointvae.lock"
TORCH_LOCK_NAME = "lock"


class LockBusy(RuntimeError):
    """A live process held the build lock for longer than we were willing to wait."""


def torch_lock_blocks(cpp_extension) -> bool:
    """Whether this torch locks a build folder by a file's existence (FileBaton: a leftover blocks forever)
    rather than by an OS lock (FileLock: released when its holder dies)."""
    return hasattr(cpp_extension, "FileBaton") and not hasattr(cpp_extension, "FileLock")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _held(path: Path) -> bool:
    """Whether some open file description (a live build) holds the flock of `path`."""
    if fcntl is None or not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def lock_state(build_dir: Path, torch_blocks: bool = False) -> dict | None:
    """The lock of `build_dir`: {"path", "pid", "pid_alive", "age_s", "held", "stale", "torch_lock"}, or None when
    it records no build. stale: the recorded build is gone (killed) and nobody holds the lock. torch_lock: the
    path of torch's `lock` file when `torch_blocks` and one is there (it would block torch's build forever)."""
    path = Path(build_dir) / LOCK_NAME
    try:
        rec = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        rec = None
    torch_lock = Path(build_dir) / TORCH_LOCK_NAME
    torch_lock = str(torch_lock) if torch_blocks and torch_lock.exists() else None
    if not isinstance(rec, dict) and torch_lock is None:
        return None
    rec = rec if isinstance(rec, dict) else {}
    pid = rec.get("pid") if isinstance(rec.get("pid"), int) else None
    started = rec.get("started") if isinstance(rec.get("started"), (int, float)) else None
    alive = pid_alive(pid) if pid is not None else False
    held = _held(path)
    age = time.time() - (started if started is not None else Path(torch_lock or path).stat().st_mtime)
    return {"path": str(path), "pid": pid, "pid_alive": alive, "age_s": max(0.0, age), "held": held,
            "stale": not held and not alive, "torch_lock": torch_lock}


def describe(state: dict) -> str:
    """One line: which lock, how old, whose, and whether that process still runs."""
    who = f"pid {state['pid']}" if state["pid"] is not None else "pid unknown"
    run = "running" if state["pid_alive"] else "no longer running"
    extra = f"; torch's {state['torch_lock']} blocks every build there" if state["torch_lock"] else ""
    return f"build lock {state['path']} ({state['age_s'] / 60:.0f} min old; {who}, {run}){extra}"


@contextlib.contextmanager
def hold(build_dir: Path, wait: float, torch_blocks: bool = False):
    """Hold the build lock of `build_dir`; yields notes (a stale lock that was cleared). A lock held by a live
    process is waited on for `wait` seconds, then LockBusy names that process."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if fcntl is None:
        yield notes
        return
    with open(build_dir / LOCK_NAME, "a+") as f:
        _acquire(f, build_dir, wait)
        try:
            state = lock_state(build_dir, torch_blocks)
            if state is not None and state["pid"] != os.getpid() and not state["pid_alive"]:
                notes.append("cleared a stale " + describe(state))
            if state is not None and state["torch_lock"]:
                Path(state["torch_lock"]).unlink(missing_ok=True)
            _write(f, {"pid": os.getpid(), "started": time.time()})
            yield notes
        finally:
            _write(f, None)
            fcntl.flock(f, fcntl.LOCK_UN)


def _acquire(f, build_dir: Path, wait: float) -> None:
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            state = lock_state(build_dir) or {"pid": None}
            if time.monotonic() >= deadline:
                raise LockBusy(f"another build (pid {state['pid']}) has held {f.name} for over {wait:.0f} s; "
                               f"set JOINTVAE_FAST_LOCK_WAIT to wait longer") from None
            if not told:
                print(f"jointvae_fast: waiting for the build of pid {state['pid']} in {build_dir} "
                      f"(at most {wait:.0f} s)...", file=sys.stderr, flush=True)
                told = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _write(f, record: dict | None) -> None:
    f.seek(0)
    f.truncate()
    if record is not None:
        f.write(json.dumps(record))
    f.flush()
