"""How the compiled ops are found and loaded (jointvae_fast/ops/extension.py): never at import, nothing left
changed in the process, a prebuilt library only when its record fits, and one warning line when it does not or a
build fails. Fresh processes where a library would be loaded twice (torch registers the namespace once)."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from jointvae_fast import ops
from jointvae_fast.ops import build_spec, extension

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
fused = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")


def run_python(code: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env or ENV, cwd=ROOT)


def test_importing_the_ops_loads_and_changes_nothing(tmp_path):
    """Import (and attribute access) builds and loads nothing, imports no cpp_extension, sets no variable."""
    code = """
import os, sys, logging
before = dict(os.environ)
import jointvae_fast.ops as ops
from jointvae_fast.ops import sample_latent, kl_capacity_loss, fused, extension
import jointvae_fast.model, jointvae_fast.objective, jointvae_fast.training.step
assert fused._INFO is None and extension._INFO is None, "loaded at import"
assert "torch.utils.cpp_extension" not in sys.modules
assert dict(os.environ) == before
print("ok")
"""
    env = dict(ENV, JOINTVAE_FAST_CACHE=str(tmp_path / "cache"))
    r = run_python(code, env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert not (tmp_path / "cache").exists()  # nothing built


@fused
def test_loading_leaves_environment_cuda_home_and_loggers_as_they_were():
    """The first op call loads (from the cache this session's build filled) and changes no process-wide state."""
    code = """
import os, logging
from torch.utils import cpp_extension
state = lambda: (dict(os.environ), cpp_extension.CUDA_HOME, logging.getLogger("torch.utils.cpp_extension").level)
before = state()
import torch
from jointvae_fast import ops
ops.sample_latent(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 2), [2], 0.5)
assert ops.backend() != "composite", ops.backend_info()
assert state() == before, (state(), before)
print(ops.backend_info()["source"])
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("JIT cache", "prebuilt"), r.stdout


def test_build_settings_are_restored_after_a_build_and_after_a_failure(monkeypatch):
    class FakeCppExtension:
        CUDA_HOME = "/torch/guess"

    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "7.5")
    with extension._build_settings(FakeCppExtension, "/opt/cuda", "8.0;9.0"):
        assert FakeCppExtension.CUDA_HOME == "/opt/cuda" and os.environ["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    assert FakeCppExtension.CUDA_HOME == "/torch/guess" and os.environ["TORCH_CUDA_ARCH_LIST"] == "7.5"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    with pytest.raises(ZeroDivisionError):
        with extension._build_settings(FakeCppExtension, "/opt/cuda", "9.0"):
            1 / 0
    assert FakeCppExtension.CUDA_HOME == "/torch/guess" and "TORCH_CUDA_ARCH_LIST" not in os.environ


@fused
@pytest.mark.slow
def test_first_op_use_inside_torch_compile_fullgraph():
    """The library loads during tracing (outside the graph): fullgraph=True compiles and matches eager."""
    code = """
import torch
from jointvae_fast import ops
from jointvae_fast.ops import fused
def step(mu, lv, lg):
    z = ops.sample_latent(mu, lv, lg, [4], 0.5, noise=(torch.zeros_like(mu), torch.full_like(lg, 0.3)))
    return z.sum() + ops.kl_capacity_loss(mu, lv, lg, [4], 0.0, 0.0, 1.0, 1.0)[0]
x = [torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 4)]
assert fused._INFO is None
got = torch.compile(step, fullgraph=True, backend="aot_eager")(*x)
assert fused._INFO is not None and ops.backend() != "composite"
torch.testing.assert_close(got, step(*x))
print("ok")
"""
    r = run_python(code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------
# the prebuilt library and its record


def _plant_prebuilt(pkg: Path, library_bytes: bytes, record: dict) -> Path:
    pkg.mkdir(parents=True, exist_ok=True)
    lib = pkg / "_jointvae_ext.cpython-311-x86_64-linux-gnu.so"
    lib.write_bytes(library_bytes)
    build_spec.record_path(lib).write_text(json.dumps(record))
    return lib


def _fitting_record(cuda: bool) -> dict:
    kdir = extension.kernels_dir()
    spec = build_spec.read_spec(kdir)
    return build_spec.make_record(torch, cuda, None, build_spec.digest(kdir, build_spec.key_files(kdir, spec, cuda)))


LOAD_WITH_PKG = """
import sys, warnings
from pathlib import Path
from jointvae_fast.ops import extension
kernels = extension.kernels_dir()
extension.PKG = Path(sys.argv[1])
extension.kernels_dir = lambda: kernels
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    info = extension.load()
print(info["source"])
for x in w:
    print("WARNING:", x.message)
"""


def _load_with_pkg(pkg: Path) -> tuple[str, list[str]]:
    r = subprocess.run([sys.executable, "-c", LOAD_WITH_PKG, str(pkg)], capture_output=True, text=True, timeout=300,
                       env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.strip().splitlines()
    return lines[0], [ln for ln in lines[1:] if ln.startswith("WARNING:")]


@fused
def test_a_prebuilt_library_whose_record_fits_is_loaded(tmp_path):
    info = ops.backend_info()
    lib = _plant_prebuilt(tmp_path, Path(info["library"]).read_bytes(), _fitting_record(info["cuda"]))
    source, warned = _load_with_pkg(lib.parent)
    assert source == "prebuilt" and not warned


@fused
@pytest.mark.parametrize("field,value,says", [
    ("torch", "2.3.0+cu118", "built for torch 2.3.0+cu118"),
    ("python", "3.9", "python 3.9"),
    ("sources", "0" * 64, "other kernel sources"),
])
def test_a_prebuilt_library_that_does_not_fit_is_skipped_in_one_line(tmp_path, field, value, says):
    """A mismatch is one warning line and the JIT cache (a rebuild) takes over; never an undefined symbol."""
    info = ops.backend_info()
    record = dict(_fitting_record(info["cuda"]), **{field: value})
    _plant_prebuilt(tmp_path, Path(info["library"]).read_bytes(), record)
    source, warned = _load_with_pkg(tmp_path)
    assert source in ("JIT cache", "JIT build")
    assert len(warned) == 1 and says in warned[0] and "\n" not in warned[0], warned


def test_a_prebuilt_library_that_fails_to_load_is_one_line_not_a_traceback(tmp_path):
    _plant_prebuilt(tmp_path, b"not a shared library", _fitting_record(False))
    source, warned = _load_with_pkg(tmp_path)
    assert len(warned) == 1 and "failed to load" in warned[0], warned


def test_a_prebuilt_library_without_a_record_is_not_loaded(tmp_path):
    assert "no build record" in extension.prebuilt_problem(tmp_path / "_jointvae_ext.so", None, None)


# ---------------------------------------------------------------------------------------------------------
# builds that cannot run or fail


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """extension with no prebuilt library, an empty cache, and a kernels/ copy the test may break."""
    kdir = tmp_path / "kernels"
    shutil.copytree(extension.kernels_dir(), kdir, ignore=shutil.ignore_patterns("*.o", "*.so"))
    monkeypatch.setattr(extension, "PKG", tmp_path / "pkg")
    monkeypatch.setattr(extension, "kernels_dir", lambda: kdir)
    monkeypatch.setenv("JOINTVAE_FAST_CACHE", str(tmp_path / "cache"))
    return kdir


def _load_warning(capture) -> str:
    msgs = [str(w.message) for w in capture if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "\n" not in msgs[0]
    return msgs[0]


def test_no_compiler_is_one_warning_and_the_composite_ops(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        info = extension._load()
    msg = _load_warning(w)
    assert not info["loaded"] and info["source"] == "composite"
    assert "no C++ compiler" in msg and "composite" in msg
    assert msg.count("cannot build") == 1  # not once per configuration


@pytest.mark.slow
def test_a_failing_build_says_why_in_one_warning(isolated, monkeypatch):
    """A compile error: the compiler's first error line and the log's path in one warning; composite ops."""
    spec = build_spec.read_spec(isolated)
    spec["sources"] = {"cpu": ["cpu/broken.cpp"], "torch_cpu": [], "cuda": [], "torch_cuda": []}
    (isolated / "build.json").write_text(json.dumps(spec))
    (isolated / "cpu" / "broken.cpp").write_text("int broken( { return 0; }\n")
    monkeypatch.setenv("JOINTVAE_FAST_BACKEND", "cpu")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        info = extension._load()
    msg = _load_warning(w)
    assert not info["loaded"]
    assert "CPU build failed" in msg and "broken.cpp" in msg and "error" in msg and "full log:" in msg
    log = Path(msg.split("full log: ")[1].split(")")[0])
    assert log.is_file() and "broken" in log.read_text()


def test_the_torch_library_is_compiled_and_linked_with_openmp(tmp_path):
    """at::parallel_for is an inline OpenMP loop in ATen's headers: without -fopenmp at compile and link time
    every CPU op ran on one thread whatever torch.set_num_threads said. The JIT build passes build.json's
    torch_openmp_flags to both, and setup.py reads the same field."""
    kdir = Path(extension.__file__).resolve().parents[2] / "kernels"
    spec = build_spec.read_spec(kdir)
    assert "-fopenmp" in spec["torch_openmp_flags"]
    seen = {}

    class FakeCppExtension:
        CUDA_HOME = None

        @staticmethod
        def load(**kw):
            seen.update(kw)

    plan = {"build_dir": tmp_path, "cuda_home": None, "arches": None, "digest": "x",
            "library": tmp_path / "jointvae_ext.so"}
    extension._compile(kdir, spec, False, plan, FakeCppExtension)
    for flag in spec["torch_openmp_flags"]:
        assert flag in seen["extra_cflags"] and flag in seen["extra_ldflags"]
    setup_py = (kdir.parent / "setup.py").read_text()
    assert 'extra_link_args=list(SPEC.get("torch_openmp_flags"' in setup_py
