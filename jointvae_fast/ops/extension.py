"""Build (once, cached) and load the compiled `jointvae` custom ops.

`load()` is called by `jointvae_fast.ops` at import. Order of attempts:

1. JOINTVAE_FAST_BACKEND=composite: load nothing (pure-PyTorch fallback).
2. A library built ahead of time by `JOINTVAE_BUILD_EXT=1 pip install --no-build-isolation .`
   (jointvae_fast/_jointvae_ext*.so), when present.
3. A JIT build with ninja (torch.utils.cpp_extension.load) of kernels/ into
   ~/.cache/jointvae_fast/ext/<hash of sources + torch version + python + cuda flag + arch list>
   ($JOINTVAE_FAST_CACHE overrides the root). The CUDA part is built when torch is a CUDA build and nvcc
   is found ($CUDA_HOME/bin/nvcc or /usr/local/cuda/bin/nvcc), even with no GPU visible; then
   TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0". JOINTVAE_FAST_BACKEND=cpu skips the CUDA part.
   If the CUDA build fails, a CPU-only build is tried; if that fails too, a warning says why.

Never raises: the result is a dict (loaded, cuda, reason, build_dir, seconds, sources).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # the jointvae_fast package directory
_EXT_NAME = "jointvae_ext"
_INFO: dict | None = None


def kernels_dir() -> Path | None:
    """The kernels/ sources: packaged copy (non-editable install) or the repository's kernels/."""
    for cand in (_PKG / "_kernels", _PKG.parent / "kernels"):
        if (cand / "torch" / "ops.cpp").is_file():
            return cand
    return None


def find_nvcc() -> str | None:
    """Path of nvcc: $CUDA_HOME/bin/nvcc, $CUDA_PATH/bin/nvcc, /usr/local/cuda/bin/nvcc, or PATH."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc")


def source_files(kdir: Path, cuda: bool) -> list[str]:
    files = [kdir / "cpu" / "latent_cpu.cpp", kdir / "cpu" / "tc_pairwise_cpu.cpp", kdir / "torch" / "ops.cpp", kdir / "torch" / "autograd.cpp"]
    if cuda:
        files += [kdir / "torch" / "ops_cuda.cpp", kdir / "cuda" / "latent_kernels.cu"]
    return [str(f) for f in files]


def _build_key(kdir: Path, cuda: bool, arch: str) -> str:
    import torch

    h = hashlib.sha256()
    # torch's build.ninja names the sources by absolute path: two checkouts sharing one build folder
    # would rebuild each other's library on every import, so the folder is part of the key.
    h.update(str(kdir.resolve()).encode())
    for f in sorted(p for p in kdir.rglob("*") if p.suffix in {".h", ".cuh", ".cpp", ".cu"}):
        h.update(str(f.relative_to(kdir)).encode())
        h.update(f.read_bytes())
    h.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}|cuda={cuda}|{arch}".encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    env = os.environ.get("JOINTVAE_FAST_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "jointvae_fast" / "ext"


def _jit_build(kdir: Path, cuda: bool) -> dict:
    import torch

    nvcc = find_nvcc()
    if nvcc and not os.environ.get("CUDA_HOME"):
        # cpp_extension reads CUDA_HOME once, at its import; keep it set for the process.
        os.environ["CUDA_HOME"] = str(Path(nvcc).parent.parent)
    saved = {k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST",)}
    arch = ""
    if cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "visible-gpu")
    try:
        import logging

        log = logging.getLogger("torch.utils.cpp_extension")
        level = log.level
        log.setLevel(logging.ERROR)  # its import warns "No CUDA runtime is found" on GPU-less machines
        try:
            from torch.utils import cpp_extension
        finally:
            log.setLevel(level)

        if cuda and cpp_extension.CUDA_HOME is None:
            cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
        # CUDA_HOME is part of the key: ninja rebuilds whenever the include paths in build.ninja change
        build_dir = cache_root() / _build_key(kdir, cuda, f"{arch}|{os.environ.get('CUDA_HOME') if cuda else ''}")
        build_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (build_dir / f"{_EXT_NAME}.so").exists()
        if fresh:
            part = "CPU+CUDA" if cuda else "CPU"
            print(f"jointvae_fast: compiling the fused ops ({part}) into {build_dir} (once, about a minute)...",
                  file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        cpp_extension.load(
            name=_EXT_NAME,
            sources=source_files(kdir, cuda),
            extra_include_paths=[str(kdir / "include"), str(kdir)],
            extra_cflags=["-O3", "-fno-math-errno", "-fno-trapping-math"],
            extra_cuda_cflags=["-O3"],
            build_directory=str(build_dir),
            with_cuda=cuda,
            is_python_module=False,
            verbose=False,
        )
        return {"build_dir": str(build_dir), "seconds": time.perf_counter() - t0, "fresh_build": fresh}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load_prebuilt() -> dict | None:
    import torch

    kdir = kernels_dir()
    newest = max((p.stat().st_mtime for p in kdir.rglob("*") if p.is_file()), default=0.0) if kdir else 0.0
    for so in sorted(_PKG.glob(f"_{_EXT_NAME}*.so")):
        if so.stat().st_mtime < newest:  # an in-place build older than the sources: rebuild by JIT instead
            continue
        torch.ops.load_library(str(so))
        return {"build_dir": str(so), "seconds": 0.0, "fresh_build": False}
    return None


def load() -> dict:
    """Load the ops once per process; returns what happened (see module docstring)."""
    global _INFO
    if _INFO is not None:
        return _INFO
    import torch

    mode = os.environ.get("JOINTVAE_FAST_BACKEND", "").strip().lower()
    info = {"loaded": False, "cuda": False, "reason": "", "build_dir": None, "seconds": 0.0}
    if mode == "composite":
        info["reason"] = "JOINTVAE_FAST_BACKEND=composite"
        _INFO = info
        return info
    want_cuda = bool(torch.version.cuda) and find_nvcc() is not None and mode != "cpu"
    errors = []
    try:
        pre = _load_prebuilt()
    except Exception as e:  # a stale prebuilt library: fall back to the JIT build
        pre = None
        errors.append(f"prebuilt library failed to load: {e}")
    if pre is not None:
        info.update(pre, loaded=True, cuda=_has_cuda_kernel())
        info["reason"] = "prebuilt library"
        _INFO = info
        return info
    kdir = kernels_dir()
    if kdir is None:
        info["reason"] = "kernels/ sources not found next to the package (install with pip install -e .)"
    else:
        for cuda in ([True, False] if want_cuda else [False]):
            try:
                info.update(_jit_build(kdir, cuda), loaded=True, cuda=cuda)
                break
            except Exception as e:  # compile errors, missing compiler, ...
                errors.append(f"{'CUDA' if cuda else 'CPU'} build failed: {str(e)[-2000:]}")
        if info["loaded"]:
            why = "built with CUDA" if info["cuda"] else (
                "CPU only: " + ("torch has no CUDA" if not torch.version.cuda else
                                "no nvcc found" if find_nvcc() is None else
                                "JOINTVAE_FAST_BACKEND=cpu" if mode == "cpu" else "CUDA build failed"))
            info["reason"] = why
    if errors:
        info["errors"] = errors
        warnings.warn("jointvae_fast: " + " | ".join(errors) + (
            "" if info["loaded"] else " -- using the pure-PyTorch composite ops"), RuntimeWarning, stacklevel=2)
    _INFO = info
    return info


def _has_cuda_kernel() -> bool:
    import torch

    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("jointvae::sample_latent", "CUDA")
    except Exception:
        return False
