"""A non-editable install ships the explorer's page, the pretrained registry folder (setup.py package_data) and the
library's sources; the sdist can build the library."""
import subprocess
import sys
import tarfile
from pathlib import Path

from jointvae_fast.ops import build_spec

ROOT = Path(__file__).resolve().parents[2]


def test_build_py_copies_the_page_and_the_registry(tmp_path):
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "jointvae_fast"
    for name in ("index.html", "explore.js", "explore.css"):
        assert (pkg / "explore" / "static" / name).is_file(), name
    assert (pkg / "pretrained" / "models" / "README.md").is_file()
    shipped = sorted(p.relative_to(ROOT / "jointvae_fast") for p in (ROOT / "jointvae_fast/pretrained/models").rglob("*")
                     if p.is_file())
    assert all((pkg / p).is_file() for p in shipped), shipped  # every model folder's files


def test_build_py_ships_exactly_the_library_sources(tmp_path):
    """jointvae_fast/_kernels holds build.json, the sources and their headers (the JIT fallback of a wheel), and no
    test C++ (kernels/tests, kernels/emulation)."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    kernels = ROOT / "kernels"
    want = {p.relative_to(kernels) for p in build_spec.shipped_files(kernels, build_spec.read_spec(kernels))}
    got = {p.relative_to(tmp_path / "jointvae_fast" / "_kernels")
           for p in (tmp_path / "jointvae_fast" / "_kernels").rglob("*") if p.is_file()}
    assert got == want
    assert not {p.parts[0] for p in got} & {"tests", "emulation"}


def test_the_source_distribution_can_build_the_library(tmp_path):
    """The sdist carries kernels/build.json (setup.py reads it) and every file the library is built from."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (sdist,) = tmp_path.glob("*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    kernels = ROOT / "kernels"
    for f in build_spec.shipped_files(kernels, build_spec.read_spec(kernels)):
        assert str(f.relative_to(ROOT)) in names, f
    assert "setup.py" in names and "jointvae_fast/ops/build_spec.py" in names


def test_build_py_ships_every_module(tmp_path):
    """Every .py file of the package reaches a non-editable install (a folder without __init__.py did not)."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pkg = ROOT / "jointvae_fast"
    missing = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
               if "__pycache__" not in p.parts and not (tmp_path / "jointvae_fast" / p.relative_to(pkg)).is_file()]
    assert not missing, missing
