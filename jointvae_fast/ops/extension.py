"""Find, build if needed, and load the compiled `jointvae` custom ops.

`load()` runs once, on the first op call or backend() (ops/fused.py), never at import. Order of attempts:

1. JOINTVAE_FAST_BACKEND=composite: load nothing (the pure-PyTorch ops).
2. "prebuilt": jointvae_fast/_jointvae_ext*.so, compiled by `pip install .` / `pip wheel .` (setup.py), loaded when
   its record (_jointvae_ext.build.json: torch, CUDA, python, C++ ABI, arch list, source digest) fits the running
   torch and, where kernels/ sources sit beside it, their digest; otherwise one warning line says why and:
3. "JIT cache" / "JIT build": kernels/ (the checkout's, or the copy a wheel ships as jointvae_fast/_kernels)
   built by torch.utils.cpp_extension + ninja into <cache root>/<key> (key: the kernels folder, the digest of
   what goes into the library, torch, python, CUDA toolkit, arch list). A folder whose record fits is loaded
   without running ninja or a compiler. The CUDA part is built when torch has CUDA and a CUDA toolkit is found
   (kernels/build.json's search order), even without a visible GPU; JOINTVAE_FAST_BACKEND=cpu skips it. If the
   CUDA build fails, a CPU-only build is tried.
4. "composite": nothing loaded; one warning line says why.

Builds hold build_lock.hold (an OS lock that a killed build cannot leave behind; a stale record is cleared and
reported). A build running in another process is waited on for at most $JOINTVAE_FAST_LOCK_WAIT seconds
(default 900), then the composite ops take over.

No process-wide side effect outlives a build: the CUDA toolkit and the arch list reach torch's build through
cpp_extension.CUDA_HOME and TORCH_CUDA_ARCH_LIST, set for the build only and restored afterwards.
Never raises: the result is a dict (loaded, cuda, source, reason, library, build_dir, seconds, ...).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

from . import build_lock, build_spec

PKG = Path(__file__).resolve().parent.parent  # the jointvae_fast package directory
DEFAULT_LOCK_WAIT = 900.0
_INFO: dict | None = None


class BuildUnavailable(RuntimeError):
    """A JIT build that cannot run or failed; the message says why in one line. `toolchain`: nothing can be built
    here (no compiler, no ninja, a busy lock), so a CPU-only build is not tried after a CUDA one."""

    def __init__(self, message: str, toolchain: bool = False):
        super().__init__(message)
        self.toolchain = toolchain


def kernels_dir() -> Path | None:
    """The kernels/ sources: the copy a wheel ships (jointvae_fast/_kernels) or the repository's kernels/."""
    for cand in (PKG / "_kernels", PKG.parent / "kernels"):
        if (cand / build_spec.SPEC_FILE).is_file():
            return cand
    return None


def cache_root() -> Path:
    """$JOINTVAE_FAST_CACHE, else $XDG_CACHE_HOME/jointvae_fast/ext, else ~/.cache/jointvae_fast/ext."""
    env = os.environ.get("JOINTVAE_FAST_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "jointvae_fast" / "ext"


def build_key(kdir: Path, source_digest: str, tag: str) -> str:
    """16 hex digits of sha256(kernels folder, source digest, torch, python, tag). The folder is in the key because
    torch's build.ninja names sources by absolute path: checkouts sharing a folder would rebuild each other."""
    h = hashlib.sha256()
    h.update(str(Path(kdir).resolve()).encode() + b"\0" + source_digest.encode())
    h.update(f"|{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}|{tag}".encode())
    return h.hexdigest()[:16]


def visible_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the visible CUDA GPUs (empty without any)."""
    if not torch.cuda.is_available():
        return []
    return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]


def want_cuda(spec: dict) -> bool:
    """Build the CUDA part: torch has CUDA, a toolkit is found, and JOINTVAE_FAST_BACKEND is not cpu."""
    return bool(torch.version.cuda) and build_spec.find_cuda_home(spec) is not None and _mode() != "cpu"


def jit_plan(kdir: Path, spec: dict, cuda: bool) -> dict:
    """Where the JIT build of this configuration lives: cuda_home, arches, digest, build_dir, library."""
    cuda_home = build_spec.find_cuda_home(spec) if cuda else None
    arches = build_spec.arch_list(spec, os.environ, visible_capabilities()) if cuda else None
    source_digest = build_spec.digest(kdir, build_spec.key_files(kdir, spec, cuda))
    build_dir = cache_root() / build_key(kdir, source_digest, f"cuda={cuda}|{arches}|{cuda_home}")
    return {"cuda_home": cuda_home, "arches": arches, "digest": source_digest, "build_dir": build_dir,
            "library": build_dir / f"{spec['library']}.so"}


def toolchain_problem(cuda_home: str | None) -> str | None:
    """Why a JIT build cannot run here (no C++ compiler, no ninja), or None. nvcc was found with cuda_home."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler: {cxx!r} is not on PATH (install g++ or set CXX)"
    if shutil.which("ninja") is None:
        return "ninja is not on PATH (pip install ninja)"
    return None


# ---------------------------------------------------------------------------------------------------------
# the build


@contextlib.contextmanager
def _build_settings(cpp_extension, cuda_home: str | None, arches: str | None):
    """cpp_extension.CUDA_HOME and TORCH_CUDA_ARCH_LIST for one build; both restored afterwards."""
    saved_home, saved_arch = cpp_extension.CUDA_HOME, os.environ.get("TORCH_CUDA_ARCH_LIST")
    try:
        if cuda_home is not None:
            cpp_extension.CUDA_HOME = cuda_home
            os.environ["TORCH_CUDA_ARCH_LIST"] = arches
        yield
    finally:
        cpp_extension.CUDA_HOME = saved_home
        if saved_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch


def _cpp_extension():
    """torch.utils.cpp_extension, imported with its "No CUDA runtime is found" log line (GPU-less machines) muted;
    the logger's level is restored."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        log.setLevel(level)
    return cpp_extension


def first_error_line(text: str) -> str:
    """The compiler's first line that says error (else the message's first line), trimmed to 200 characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    hit = next((ln for ln in lines if "error" in ln.lower() and not ln.lower().startswith("error building")), None)
    return (hit or (lines[0] if lines else "unknown error"))[:200]


def _load_cached(plan: dict) -> bool:
    """Load the JIT folder's library when it was built for this torch from these sources."""
    record = build_spec.read_record(plan["library"])
    if not plan["library"].is_file() or build_spec.record_mismatch(record, torch) is not None \
            or record.get("sources") != plan["digest"]:
        return False
    torch.ops.load_library(str(plan["library"]))
    return True


def _jit_build(kdir: Path, spec: dict, cuda: bool) -> dict:
    plan = jit_plan(kdir, spec, cuda)
    if _load_cached(plan):
        return _result("JIT cache", plan, 0.0, [])
    problem = toolchain_problem(plan["cuda_home"])
    if problem:
        raise BuildUnavailable(problem, toolchain=True)
    cpp_extension = _cpp_extension()
    wait = float(os.environ.get("JOINTVAE_FAST_LOCK_WAIT", DEFAULT_LOCK_WAIT))
    try:
        with build_lock.hold(plan["build_dir"], wait, build_lock.torch_lock_blocks(cpp_extension)) as notes:
            for note in notes:
                print(f"jointvae_fast: {note}", file=sys.stderr, flush=True)
            if _load_cached(plan):  # another process built it while we waited
                return _result("JIT cache", plan, 0.0, notes)
            t0 = time.perf_counter()
            _compile(kdir, spec, cuda, plan, cpp_extension)
            return _result("JIT build", plan, time.perf_counter() - t0, notes)
    except build_lock.LockBusy as e:
        raise BuildUnavailable(str(e), toolchain=True) from None


def _result(source: str, plan: dict, seconds: float, notes: list[str]) -> dict:
    return {"source": source, "library": str(plan["library"]), "build_dir": str(plan["build_dir"]),
            "fresh_build": source == "JIT build", "seconds": seconds, "notes": notes}


def _compile(kdir: Path, spec: dict, cuda: bool, plan: dict, cpp_extension) -> None:
    """torch's JIT build of the library into plan["build_dir"] (loads it), then its build record."""
    print(f"jointvae_fast: compiling the fused ops ({'CPU+CUDA' if cuda else 'CPU'}) into {plan['build_dir']} "
          "(once, about a minute)...", file=sys.stderr, flush=True)
    try:
        with _build_settings(cpp_extension, plan["cuda_home"], plan["arches"]):
            cpp_extension.load(
                name=spec["library"],
                sources=[str(s) for s in build_spec.library_sources(kdir, spec, cuda)],
                extra_include_paths=[str(d) for d in build_spec.include_dirs(kdir, spec)],
                extra_cflags=list(spec["cxx_flags"]) + list(spec.get("torch_openmp_flags", [])),
                extra_ldflags=list(spec.get("torch_openmp_flags", [])),
                extra_cuda_cflags=list(spec["nvcc_flags"]),
                build_directory=str(plan["build_dir"]),
                with_cuda=cuda,
                is_python_module=False,
                verbose=False,
            )
    except Exception as e:  # compiler errors, a failed load: one line, the full text in a file
        log = plan["build_dir"] / "build-error.log"
        log.write_text(str(e))
        raise BuildUnavailable(f"{first_error_line(e)} (full log: {log})") from e
    record = build_spec.make_record(torch, cuda, plan["arches"], plan["digest"])
    build_spec.record_path(plan["library"]).write_text(json.dumps(record, indent=1))


# ---------------------------------------------------------------------------------------------------------
# the prebuilt library


def prebuilt_libraries() -> list[Path]:
    """Libraries compiled into the package by setup.py (normally one)."""
    return sorted(PKG.glob("_jointvae_ext*.so")) + sorted(PKG.glob("_jointvae_ext*.pyd"))


def prebuilt_problem(library: Path, kdir: Path | None, spec: dict | None) -> str | None:
    """Why the prebuilt `library` must not be loaded here (a one-line reason), or None."""
    record = build_spec.read_record(library)
    mismatch = build_spec.record_mismatch(record, torch)
    if mismatch:
        return mismatch
    if kdir is not None and spec is not None:
        cuda = bool(record.get("cuda_kernels"))
        if build_spec.digest(kdir, build_spec.key_files(kdir, spec, cuda)) != record.get("sources"):
            return f"it was built from other kernel sources than {kdir}"
    return None


def _load_prebuilt(kdir: Path | None, spec: dict | None, errors: list[str]) -> dict | None:
    for lib in prebuilt_libraries():
        problem = prebuilt_problem(lib, kdir, spec)
        if problem is None:
            try:
                torch.ops.load_library(str(lib))
            except OSError as e:  # e.g. an undefined symbol: report in one line, fall through
                problem = f"it failed to load ({first_error_line(e)})"
        if problem is not None:
            errors.append(f"prebuilt {lib.name} not used: {problem}")
            continue
        return {"source": "prebuilt", "library": str(lib), "build_dir": str(lib.parent), "fresh_build": False,
                "seconds": 0.0, "record": build_spec.read_record(lib)}
    return None


# ---------------------------------------------------------------------------------------------------------


def _mode() -> str:
    return os.environ.get("JOINTVAE_FAST_BACKEND", "").strip().lower()


def has_cuda_kernel() -> bool:
    """Whether the loaded library registered CUDA kernels."""
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("jointvae::sample_latent", "CUDA")
    except RuntimeError:
        return False


def load() -> dict:
    """Load the ops once per process; returns what happened (module docstring). Never raises."""
    global _INFO
    if _INFO is None:
        _INFO = _load()
    return _INFO


def _load() -> dict:
    info = {"loaded": False, "cuda": False, "source": "composite", "reason": "", "library": None,
            "build_dir": None, "seconds": 0.0}
    mode = _mode()
    if mode == "composite":
        info["reason"] = "JOINTVAE_FAST_BACKEND=composite"
        return info
    errors: list[str] = []
    kdir = kernels_dir()
    spec = build_spec.read_spec(kdir) if kdir is not None else None
    pre = _load_prebuilt(kdir, spec, errors)
    if pre is not None:
        info.update(pre, loaded=True, cuda=has_cuda_kernel(), reason="prebuilt library (compiled at install)")
        return info
    if kdir is None:
        info["reason"] = "no usable prebuilt library and no kernels/ sources to build from"
    else:
        cuda_wanted = want_cuda(spec)
        for cuda in ([True, False] if cuda_wanted else [False]):
            try:
                info.update(_jit_build(kdir, spec, cuda), loaded=True, cuda=cuda)
                break
            except BuildUnavailable as e:
                errors.append(f"cannot build: {e}" if e.toolchain else f"{'CUDA' if cuda else 'CPU'} build failed: {e}")
                if e.toolchain:
                    break
        if info["loaded"]:
            info["reason"] = f"{info['source']}, " + ("with CUDA" if info["cuda"] else "CPU only: " + (
                "torch has no CUDA" if not torch.version.cuda else
                "JOINTVAE_FAST_BACKEND=cpu" if mode == "cpu" else
                "no CUDA toolkit found" if not cuda_wanted else "the CUDA build failed"))
        else:
            info["reason"] = "no compiled library: " + errors[-1]
    if errors:
        info["errors"] = errors
        tail = "" if info["loaded"] else " -- using the pure-PyTorch composite ops"
        warnings.warn("jointvae_fast: " + "; ".join(errors) + tail, RuntimeWarning, stacklevel=3)
    return info
