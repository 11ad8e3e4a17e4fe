"""A non-editable install ships the explorer's page and the pretrained registry folder (setup.py package_data)."""
import subprocess
import sys
from pathlib import Path

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


def test_build_py_ships_every_module(tmp_path):
    """Every .py of the package is in a non-editable build (a folder without __init__.py is silently left out
    by find_packages: grids/ was, once)."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    source = ROOT / "jointvae_fast"
    missing = [str(p.relative_to(source)) for p in source.rglob("*.py") if not (tmp_path / "jointvae_fast" /
                                                                             p.relative_to(source)).is_file()]
    assert not missing, f"left out of the build: {missing}"
