"""The one build description (kernels/build.json, ops/build_spec.py) and the JIT build's cache key: one folder per
kernel source tree, keyed by what goes into the library and nothing else."""
import re
import shutil
from pathlib import Path

import pytest

from jointvae_fast.ops import build_spec
from jointvae_fast.ops.extension import build_key, kernels_dir

KDIR = kernels_dir()
SPEC = build_spec.read_spec(KDIR)


def _copy_kernels(dst: Path) -> Path:
    shutil.copytree(KDIR, dst, ignore=shutil.ignore_patterns("*.o", "*.so"))
    return dst


def _key(kdir: Path, cuda=False) -> str:
    spec = build_spec.read_spec(kdir)
    return build_key(kdir, build_spec.digest(kdir, build_spec.key_files(kdir, spec, cuda)), "x")


def test_same_sources_same_folder_same_key(tmp_path):
    k = _copy_kernels(tmp_path / "a" / "kernels")
    assert _key(k) == _key(k)


def test_two_checkouts_of_the_same_sources_get_separate_build_folders(tmp_path):
    """torch's build.ninja records absolute source paths, so a shared folder made checkouts rebuild each other."""
    a = _copy_kernels(tmp_path / "a" / "kernels")
    b = _copy_kernels(tmp_path / "b" / "kernels")
    assert _key(a) != _key(b)
    # ...while the source digest (recorded with a library) is the same anywhere
    assert build_spec.digest(a, build_spec.key_files(a, SPEC, False)) == \
        build_spec.digest(b, build_spec.key_files(b, SPEC, False))


@pytest.mark.parametrize("rel", ["include/jointvae/philox.h", "cpu/latent_cpu.cpp", "torch/ops.cpp", "build.json"])
def test_a_changed_library_file_changes_the_key(tmp_path, rel):
    k = _copy_kernels(tmp_path / "a" / "kernels")
    before = _key(k)
    (k / rel).write_text((k / rel).read_text() + ("\n" if rel.endswith(".json") else "\n// changed\n"))
    assert _key(k) != before


def test_a_changed_cuda_source_changes_only_the_cuda_key(tmp_path):
    k = _copy_kernels(tmp_path / "a" / "kernels")
    cpu, cuda = _key(k, False), _key(k, True)
    f = k / SPEC["sources"]["cuda"][0]
    f.write_text(f.read_text() + "\n// changed\n")
    assert _key(k, False) == cpu and _key(k, True) != cuda


def test_test_only_cpp_does_not_change_the_key(tmp_path):
    """kernels/tests and kernels/emulation are not part of the library: touching them rebuilds nothing."""
    k = _copy_kernels(tmp_path / "a" / "kernels")
    before = (_key(k, False), _key(k, True))
    for f in [*(k / "tests").rglob("*.cpp"), *(k / "emulation").rglob("*")]:
        f.write_text(f.read_text() + "\n// changed\n")
    (k / "tests" / "new_test.cpp").write_text("int main() { return 0; }\n")
    assert (_key(k, False), _key(k, True)) == before


def test_shipped_files_hold_no_test_code():
    shipped = {f.relative_to(KDIR).parts[0] for f in build_spec.shipped_files(KDIR, SPEC)}
    assert not shipped & {"tests", "emulation"}, shipped


def _quoted_includes(path: Path) -> list[str]:
    """#include "..." lines of `path`, leaving out the emulation branch (#if defined(JV_CUDA_EMULATION))."""
    found, skip = [], []
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("#if"):
            skip.append("JV_CUDA_EMULATION" in s and "!" not in s)
        elif s.startswith("#else") and skip:
            skip[-1] = not skip[-1]
        elif s.startswith("#endif") and skip:
            skip.pop()
        elif not any(skip):
            m = re.match(r'#\s*include\s+"([^"]+)"', s)
            if m:
                found.append(m.group(1))
    return found


def test_every_header_the_library_includes_is_shipped():
    """Following #include "..." from each source (next to the file, then the include folders) stays inside
    shipped_files: a header outside build.json's globs would be missing from a wheel's JIT sources."""
    shipped = set(build_spec.shipped_files(KDIR, SPEC))
    todo = list(build_spec.library_sources(KDIR, SPEC, cuda=True))
    seen = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for inc in _quoted_includes(f):
            cands = [f.parent / inc] + [d / inc for d in build_spec.include_dirs(KDIR, SPEC)]
            hit = next((c.resolve() for c in cands if c.is_file()), None)
            assert hit is not None, f"{f}: #include \"{inc}\" not found"
            todo.append(hit)
    missing = sorted(str(p.relative_to(KDIR.resolve())) for p in seen if p not in {s.resolve() for s in shipped})
    assert not missing, f"included by the library but not in build.json's headers: {missing}"
    assert len(seen) > len(build_spec.library_sources(KDIR, SPEC, cuda=True))  # headers were followed


def test_every_listed_source_exists():
    for cuda in (False, True):
        for f in build_spec.library_sources(KDIR, SPEC, cuda):
            assert f.is_file(), f


def test_cmake_reads_the_same_description():
    """CMakeLists.txt takes its sources, include folders, flags and arch list from build.json, not its own lists."""
    text = (KDIR.parent / "CMakeLists.txt").read_text()
    assert "build.json" in text
    for rel in [*SPEC["sources"]["cpu"], *SPEC["sources"]["cuda"]]:
        assert rel not in text, f"CMakeLists.txt names {rel} itself"
