"""The JIT build's lock (jointvae_fast/ops/build_lock.py): a killed build leaves no lock that blocks, its record is
reported as stale and cleared; a live holder is waited on for a bounded time and named."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jointvae_fast.ops import build_lock

pytestmark = pytest.mark.skipif(build_lock.fcntl is None, reason="no fcntl (not POSIX)")


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant_killed_build(build_dir: Path, minutes_ago: float = 90, torch_lock: bool = True) -> int:
    """What a build killed mid-way leaves: our lock file recording its (dead) pid, and torch's `lock` file."""
    build_dir.mkdir(parents=True, exist_ok=True)
    pid = dead_pid()
    (build_dir / build_lock.LOCK_NAME).write_text(json.dumps({"pid": pid, "started": time.time() - 60 * minutes_ago}))
    if torch_lock:
        (build_dir / build_lock.TORCH_LOCK_NAME).write_text("")
        old = time.time() - 60 * minutes_ago
        os.utime(build_dir / build_lock.TORCH_LOCK_NAME, (old, old))
    return pid


def test_a_killed_build_is_reported_stale_with_its_pid_and_age(tmp_path):
    pid = plant_killed_build(tmp_path)
    state = build_lock.lock_state(tmp_path, torch_blocks=True)
    assert state["stale"] and not state["held"] and state["pid"] == pid and not state["pid_alive"]
    assert 85 * 60 < state["age_s"] < 95 * 60
    line = build_lock.describe(state)
    assert f"pid {pid}" in line and "90 min old" in line and "no longer running" in line
    assert "blocks every build" in line  # torch's FileBaton file


def test_torch_lock_file_is_no_problem_for_a_torch_that_locks_with_the_os(tmp_path):
    plant_killed_build(tmp_path)
    assert build_lock.lock_state(tmp_path, torch_blocks=False)["torch_lock"] is None


def test_hold_clears_a_stale_lock_at_once_and_says_so(tmp_path):
    pid = plant_killed_build(tmp_path)
    t0 = time.monotonic()
    with build_lock.hold(tmp_path, wait=30, torch_blocks=True) as notes:
        assert time.monotonic() - t0 < 10  # no waiting on a dead process
        assert not (tmp_path / build_lock.TORCH_LOCK_NAME).exists()
        rec = json.loads((tmp_path / build_lock.LOCK_NAME).read_text())
        assert rec["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {pid}" in notes[0] and "stale" in notes[0]
    assert build_lock.lock_state(tmp_path) is None  # a clean release leaves no record


def test_a_live_holder_is_waited_on_for_a_bounded_time_and_named(tmp_path):
    code = ("import sys, time; from jointvae_fast.ops import build_lock\n"
            "with build_lock.hold(sys.argv[1], wait=5):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    try:
        assert holder.stdout.readline().strip() == "held"
        state = build_lock.lock_state(tmp_path)
        assert state["held"] and state["pid"] == holder.pid and not state["stale"]
        with pytest.raises(build_lock.LockBusy, match=f"pid {holder.pid}"):
            with build_lock.hold(tmp_path, wait=0.5):
                pass
    finally:
        holder.kill()
        holder.wait()
    # its death released the lock: the next build takes it and reports the stale record
    with build_lock.hold(tmp_path, wait=5) as notes:
        assert any(f"pid {holder.pid}" in n for n in notes)


def test_torch_lock_blocks_tells_file_baton_from_os_lock():
    class Baton:
        FileBaton = object

    class Flock:
        FileBaton = object
        FileLock = object

    assert build_lock.torch_lock_blocks(Baton) and not build_lock.torch_lock_blocks(Flock)
