"""Build (once, cached by source hash) and import `jointvae_emulated_cuda`: kernels/cuda run by the CPU
emulation of kernels/emulation (tests only; see docs/emulation.md). Not a test module.

The JIT build is the package's own (torch.utils.cpp_extension + ninja), into
<cache root>/emulated-<key of kernels/emulation and the library's sources, torch, python, pybind11 version>; the headers are
pybind11's (the test extra), not torch's. The module has no torch code: it takes and returns NumPy arrays.
"""
from __future__ import annotations

import functools
import sys

# the one place this test helper uses the package's build machinery
from jointvae_fast.ops import build_spec
from jointvae_fast.ops.extension import build_key, cache_root, kernels_dir

MODULE = "jointvae_emulated_cuda"
SOURCES = ("emulation/python_module.cpp", "emulation/latent_kernels_emulated.cpp", "emulation/cuda_emulation.cpp")


@functools.lru_cache(maxsize=None)
def load():
    """The compiled module (built on first use, about 30 s)."""
    import pybind11
    from torch.utils import cpp_extension

    kdir = kernels_dir()
    files = sorted(p for p in (kdir / "emulation").iterdir() if p.is_file())
    files += build_spec.key_files(kdir, build_spec.read_spec(kdir), cuda=True)
    source_digest = build_spec.digest(kdir, files)
    build_dir = cache_root() / f"emulated-{build_key(kdir, source_digest, f'emulated|pybind11 {pybind11.__version__}')}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob(f"{MODULE}*.so")):
        print(f"tests: compiling the emulated CUDA kernels into {build_dir} (once)...", file=sys.stderr, flush=True)
    return cpp_extension.load(
        name=MODULE,
        sources=[str(kdir / s) for s in SOURCES],
        extra_include_paths=[pybind11.get_include(), str(kdir / "include"), str(kdir)],
        extra_cflags=["-O2", "-DJV_CUDA_EMULATION", "-pthread"],
        extra_ldflags=["-pthread"],
        build_directory=str(build_dir),
        with_cuda=False,
        is_python_module=True,
        verbose=False,
    )
