"""The JIT build's cache key (jointvae_fast/ops/extension.py): one build folder per kernel source tree."""
import shutil
from pathlib import Path

from jointvae_fast.ops.extension import _build_key, kernels_dir


def _copy_kernels(dst: Path) -> Path:
    shutil.copytree(kernels_dir(), dst, ignore=shutil.ignore_patterns("*.o", "*.so"))
    return dst


def test_same_sources_same_folder_same_key(tmp_path):
    k = _copy_kernels(tmp_path / "a" / "kernels")
    assert _build_key(k, False, "x") == _build_key(k, False, "x")


def test_two_checkouts_of_the_same_sources_get_separate_build_folders(tmp_path):
    """torch's build.ninja records absolute source paths, so a shared folder made checkouts rebuild each other."""
    a = _copy_kernels(tmp_path / "a" / "kernels")
    b = _copy_kernels(tmp_path / "b" / "kernels")
    assert _build_key(a, False, "x") != _build_key(b, False, "x")


def test_a_changed_source_changes_the_key(tmp_path):
    k = _copy_kernels(tmp_path / "a" / "kernels")
    before = _build_key(k, False, "x")
    header = next(p for p in sorted(k.rglob("*.h")))
    header.write_text(header.read_text() + "\n// changed\n")
    assert _build_key(k, False, "x") != before
