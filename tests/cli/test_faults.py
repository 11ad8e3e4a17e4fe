"""Faults: the training process killed (SIGKILL) at random moments, and a full disk.

- SIGKILL: a real `python -m jointvae_fast.train` on tiny MNIST files is killed at seeded random moments
  (several times); after each kill the log has no torn line, every checkpoint on disk is complete, and
  `--resume` continues from the newest one; the finished run's log covers every step once, in order, and
  its final weights equal those of a run that was never interrupted (exact resume on the CPU).
- Disk full: a write that fails with ENOSPC while a checkpoint (or a log line, or a report figure) is
  written ends the command with one `error:` line (exit status 2); the previous checkpoint stays intact
  and loadable, no temporary file is left behind, and `--resume` then finishes the run. Other OSErrors
  are bugs (traceback, exit status 1).
"""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jointvae_fast import evaluate
from jointvae_fast import train as train_cli
from jointvae_fast.errors import BUG_LINE
from jointvae_fast.store import checkpoint, run_layout

from tests.data_fixtures import write_idx_set
from tests.cli.test_bad_inputs import TINY, assert_one_line_error, base_args, one_checkpoint_run  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 60
KILLS = 4


def _env(tmp_path):
    # the CPU build of the fused ops: these tests are about the files a run leaves, not the CUDA backend
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOINTVAE_CACHE": str(tmp_path / "cache"),
           "JOINTVAE_DOWNLOAD": "0", "JOINTVAE_FAST_BACKEND": "cpu", "OMP_NUM_THREADS": "1"}
    env.pop("JOINTVAE_DATA", None)
    return env


def _flags(data, out):
    return ["-m", "jointvae_fast.train", "--dataset", "mnist", "--data-dir", str(data), "--cont", "2", "--disc", "3",
            "--batch-size", "8", "--steps", str(TOTAL), "--log-every", "1", "--save-every", "7", "--keep", "100",
            "--no-images", "--no-progress", "--device", "cpu", "--threads", "1", "--out", str(out)]


def _log_steps(run: Path) -> list[int]:
    """Steps of log.jsonl; fails on a torn (unparsable) line."""
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        steps.append(json.loads(line)["step"])  # a torn line raises here
    return steps


def _complete_checkpoints(run: Path) -> list[int]:
    """Steps of the checkpoint files; each must load (atomic writes never leave a partial one)."""
    steps = []
    for step, path in run_layout.list_checkpoints(run):
        obj = checkpoint.read(path)
        assert obj["training"]["step"] == step
        steps.append(step)
    return steps


def _kill_at_random(proc, run: Path, stderr: Path, target: int, pause: float) -> None:
    """SIGKILL `proc` `pause` seconds after its log reaches step `target` (or at once if it ends first).
    The log is watched only once the process has started training (its start line is on stderr): before
    that, the lines of the killed process it will cut back are still there. The wait for that start line
    allows for a first build of the fused ops on a loaded machine."""
    deadline = time.monotonic() + 900  # until training starts: a first build of the fused ops can take minutes
    started = False
    while proc.poll() is None and time.monotonic() < deadline:
        if "run directory" in stderr.read_text():
            if not started:  # then 120 s to reach the target step
                started, deadline = True, time.monotonic() + 120
            try:
                steps = _log_steps(run)
            except (json.JSONDecodeError, KeyError):
                steps = []  # a line being written right now; look again
            if steps and steps[-1] >= target:
                break
        time.sleep(0.005)
    time.sleep(pause)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_sigkill_at_random_moments_then_resume(tmp_path):
    data = tmp_path / "data"
    write_idx_set(data, n_train=64, n_test=8, seed=0)
    env = _env(tmp_path)
    rng = random.Random(2026)
    run = tmp_path / "run"
    args = _flags(data, run)
    resumed_at = []
    for kill in range(KILLS + 1):
        last_ckpt = _complete_checkpoints(run)[-1] if kill else 0
        cmd = [sys.executable, *args] if kill == 0 else [sys.executable, "-m", "jointvae_fast.train", "--resume",
                                                       str(run), "--no-progress"]
        with open(tmp_path / f"stderr-{kill}.txt", "w+") as err:
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=err, stdout=subprocess.DEVNULL)
            if kill < KILLS:
                # the first kill after the first checkpoint (step 7), later ones anywhere up to 3 checkpoints on
                target = 8 + rng.randrange(14) if kill == 0 else last_ckpt + rng.randrange(1, 22)
                _kill_at_random(proc, run, tmp_path / f"stderr-{kill}.txt", target, rng.uniform(0.0, 0.03))
            else:
                assert proc.wait(timeout=300) == 0
            err.seek(0)
            text = err.read()
        assert "Traceback" not in text, text
        if kill:
            assert f"resuming at step {last_ckpt}" in text, text  # the newest complete checkpoint
            resumed_at.append(last_ckpt)
        steps = _log_steps(run)  # no torn line, even right after a kill
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert not list((run / run_layout.CHECKPOINT_DIR).glob(".*.tmp"))  # a killed write's temporary is cleaned on resume
    assert len(set(resumed_at)) > 1, f"the kills all hit the same checkpoint: {resumed_at}"
    assert _log_steps(run) == list(range(1, TOTAL + 1))
    assert _complete_checkpoints(run)[-1] == TOTAL

    # the same run without interruptions: identical final weights (resume is exact on the CPU)
    clean = tmp_path / "clean"
    proc = subprocess.run([sys.executable, *_flags(data, clean)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    a = checkpoint.read(run_layout.checkpoint_path(run, TOTAL))["model"]
    b = checkpoint.read(run_layout.checkpoint_path(clean, TOTAL))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- full disk


class _FullDisk:
    """A binary file whose writes stop with ENOSPC after `room` bytes (like a disk that fills up)."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data):
        data = bytes(data)
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def _fill_disk_at_checkpoint(monkeypatch, nth: int) -> None:
    """The nth checkpoint file opened for writing (and every one after it) hits a full disk."""
    real = os.fdopen
    seen = {"n": 0}

    def fdopen(fd, *a, **k):
        f = real(fd, *a, **k)
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".step-" in Path(target).name:
            seen["n"] += 1
            if seen["n"] >= nth:
                return _FullDisk(f, room=1000)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)


def _check_stopped_cleanly(out: Path, rc, err, keep_step: int) -> None:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("training ")]
    assert_one_line_error(rc, "\n".join(lines), "No space left on device")
    assert [s for s, _ in run_layout.list_checkpoints(out)][-1] == keep_step
    checkpoint.load_model(run_layout.checkpoint_path(out, keep_step))  # intact, digest verified
    assert not [p for p in (out / run_layout.CHECKPOINT_DIR).iterdir() if p.name.startswith(".")]  # no temp file left
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_disk_full_during_a_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _fill_disk_at_checkpoint(m, nth=2)
        rc = train_cli.main(base_args(out, "--save-every", "2", steps=6), dataset=TINY)
    _check_stopped_cleanly(out, rc, capsys.readouterr().err, keep_step=2)
    assert train_cli.main(["--resume", str(out), "--no-progress"], dataset=TINY) == 0
    assert "resuming at step 2" in capsys.readouterr().err
    assert [s for s, _ in run_layout.list_checkpoints(out)][-1] == 6


def test_disk_full_while_logging(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_open = open
    lines = {"n": 0}

    def full_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if Path(path).name == "log.jsonl" and "a" in mode:
            lines["n"] += 1
            if lines["n"] >= 4:  # the 4th log line finds the disk full
                f.close()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return f

    with monkeypatch.context() as m:
        m.setattr("builtins.open", full_open)
        rc = train_cli.main(base_args(out, "--save-every", "2", steps=6), dataset=TINY)
    _check_stopped_cleanly(out, rc, capsys.readouterr().err, keep_step=2)


def _raise_oserror(code: int, filename: str):
    def raise_(*a, **k):
        raise OSError(code, os.strerror(code), filename)
    return raise_


def test_disk_full_while_writing_a_report(one_checkpoint_run, tmp_path, monkeypatch, capsys):
    """A full disk met anywhere (here: while the figures are saved) is still one line, naming the file."""
    monkeypatch.setattr("jointvae_fast.analysis.report.write_figures",
                        _raise_oserror(errno.ENOSPC, str(tmp_path / "rep" / "kl_units.png")))
    rc = evaluate.main([str(one_checkpoint_run), "--no-progress", "--out", str(tmp_path / "rep")], dataset=TINY)
    assert_one_line_error(rc, capsys.readouterr().err, "kl_units.png", "No space left on device")


def test_other_os_errors_are_bugs(one_checkpoint_run, tmp_path, monkeypatch, capsys):
    """An OSError that does not mean a full or read-only disk (here ENOENT from deep inside) is a bug."""
    monkeypatch.setattr("jointvae_fast.analysis.report.write_figures",
                        _raise_oserror(errno.ENOENT, "/nonexistent/internal/path"))
    rc = evaluate.main([str(one_checkpoint_run), "--no-progress", "--out", str(tmp_path / "rep")], dataset=TINY)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" in err and BUG_LINE in err and "error: " not in err
