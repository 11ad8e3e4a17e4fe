"""python -m jointvae_fast.doctor: planted problems (a stale lock, a prebuilt library for another torch, no
compiler, a GPU the arch list lacks) are each reported with what to do; a clean setup exits 0."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from jointvae_fast import doctor
from jointvae_fast.ops import build_spec, extension
from tests.kernels.test_build_lock import plant_killed_build

ROOT = Path(__file__).resolve().parents[2]


def run_doctor(env_extra: dict, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    return subprocess.run([sys.executable, "-m", "jointvae_fast.doctor", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """No prebuilt library, an empty JIT cache, no GPU: the doctor's facts come from what a test plants here."""
    kdir = extension.kernels_dir()
    monkeypatch.setattr(extension, "PKG", tmp_path / "pkg")
    monkeypatch.setattr(extension, "kernels_dir", lambda: kdir)
    monkeypatch.setenv("JOINTVAE_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JOINTVAE_FAST_BACKEND", raising=False)
    monkeypatch.setattr(extension, "visible_capabilities", lambda: [])
    (tmp_path / "pkg").mkdir()
    return tmp_path


def plant_prebuilt(pkg: Path, cuda: bool = False, arches=None, **record_changes) -> Path:
    kdir = extension.kernels_dir()
    spec = build_spec.read_spec(kdir)
    record = build_spec.make_record(torch, cuda, arches, build_spec.digest(kdir, build_spec.key_files(kdir, spec, cuda)))
    lib = pkg / "_jointvae_ext.cpython-311-x86_64-linux-gnu.so"
    lib.write_bytes(b"\x7fELF planted")
    build_spec.record_path(lib).write_text(json.dumps(dict(record, **record_changes)))
    return lib


def problems() -> list[str]:
    return [f"{p.what} || {p.fix}" for p in doctor.diagnose(doctor.gather(load=False))]


def test_a_clean_setup_has_no_problem_and_exits_0(tmp_path):
    r = run_doctor({"JOINTVAE_FAST_CACHE": str(tmp_path / "cache"), "JOINTVAE_FAST_BACKEND": "cpu"}, "--no-load")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for heading in ("versions", "ops", "CUDA", "CPU", "AVX-512", "AVX512-BF16", "threads", "cache", "problems   none"):
        assert heading in out, heading
    assert f"torch {torch.__version__}" in out
    assert len(out.splitlines()) <= 24  # one screen


def test_a_stale_lock_is_reported_with_pid_and_age_and_exits_1(tmp_path):
    pid = plant_killed_build(tmp_path / "cache" / "0123456789abcdef", minutes_ago=125)
    r = run_doctor({"JOINTVAE_FAST_CACHE": str(tmp_path / "cache"), "JOINTVAE_FAST_BACKEND": "cpu"}, "--no-load")
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "PROBLEM" in ln)
    assert "stale build lock" in line and f"pid {pid}" in line and "125 min old" in line and "no longer running" in line
    assert "fix:" in r.stdout and "jointvae.lock" in r.stdout.split("fix:")[1]


def test_a_prebuilt_library_for_another_torch(setup):
    plant_prebuilt(setup / "pkg", torch="2.3.0+cu118")
    found = problems()
    assert any("built for torch 2.3.0+cu118" in p and "reinstall" in p for p in found), found


def test_no_compiler_and_nothing_built(setup, monkeypatch):
    monkeypatch.setenv("PATH", str(setup / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    found = problems()
    assert any("no C++ compiler" in p and "composite" in p for p in found), found


def test_no_compiler_is_fine_with_a_prebuilt_library(setup, monkeypatch):
    plant_prebuilt(setup / "pkg")
    monkeypatch.setenv("PATH", str(setup / "empty"))
    facts = doctor.gather(load=False)
    assert facts["plan"]["source"] == "prebuilt" and doctor.diagnose(facts) == []


@pytest.mark.parametrize("cap,covered", [((7, 5), False), ((8, 0), True), ((8, 6), True), ((9, 0), True),
                                         ((10, 0), False), ((12, 0), False)])
def test_a_gpu_the_arch_list_lacks(setup, monkeypatch, cap, covered):
    """A fake compute capability against a prebuilt library with CUDA kernels for 8.0;9.0."""
    plant_prebuilt(setup / "pkg", cuda=True, arches="8.0;9.0")
    monkeypatch.setattr(doctor, "gpus", lambda: [("Fake GPU", cap)])
    found = problems()
    hit = [p for p in found if "not covered by the arch list 8.0;9.0" in p]
    assert bool(hit) != covered, found
    if hit:
        assert f"compute capability {cap[0]}.{cap[1]}" in hit[0] and f"TORCH_CUDA_ARCH_LIST=\"8.0;9.0;{cap[0]}.{cap[1]}\"" in hit[0]


def test_a_gpu_without_cuda_kernels(setup, monkeypatch):
    plant_prebuilt(setup / "pkg", cuda=False)
    monkeypatch.setattr(doctor, "gpus", lambda: [("Fake GPU", (9, 0))])
    assert any("no CUDA kernels" in p for p in problems())


@given(major=st.integers(1, 12), minor=st.integers(0, 9), gpu_major=st.integers(1, 12), gpu_minor=st.integers(0, 9),
       ptx=st.booleans())
def test_runs_on_follows_cuda_binary_compatibility(major, minor, gpu_major, gpu_minor, ptx):
    """A cubin for X.Y runs on X.Z with Z >= Y only; PTX (+PTX) on any GPU at or above X.Y."""
    arches = f"{major}.{minor}" + ("+PTX" if ptx else "")
    cubin = gpu_major == major and gpu_minor >= minor
    via_ptx = ptx and (gpu_major, gpu_minor) >= (major, minor)
    assert build_spec.runs_on(arches, (gpu_major, gpu_minor)) == (cubin or via_ptx)
    assert build_spec.runs_on(f"5.0;{arches}", (gpu_major, gpu_minor)) == (cubin or via_ptx or
                                                                          (gpu_major == 5))
