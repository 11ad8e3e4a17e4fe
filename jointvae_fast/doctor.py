"""python -m jointvae_fast.doctor: what this installation runs on, and what is wrong with it, in one screen.

Versions (python, torch and its CUDA, nvcc, the C++ compiler, ninja); the ops backend and why (prebuilt /
JIT cache / JIT build at first use / composite, with the path); the arch list the CUDA kernels were built for
against the visible GPUs' compute capabilities; CPU features (AVX-512, AVX512-BF16, threads); the cache folders
and their sizes; then each problem found with what to do. Exit 0 when there is none, 1 otherwise.

The doctor loads the compiled library only when that compiles nothing (a prebuilt library or a JIT cache hit);
`--build` lets it build too. `gather()` reads the machine into facts, `diagnose(facts)` finds the problems
(pure: the tests plant problems in the facts' sources and check what it says).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.locations import cache_root as data_cache_root
from .errors import ArgumentParser, run_cli
from .ops import backend_info, build_lock, build_spec, extension

HUNG_BUILD_S = 30 * 60  # a build holding its lock longer than this is reported


@dataclass
class Problem:
    what: str
    fix: str


# ---------------------------------------------------------------------------------------------------------
# facts


def nvcc_version(cuda_home: str | None) -> str | None:
    """"13.0" from `nvcc --version` of the toolkit found (None without one or when it does not run)."""
    if cuda_home is None:
        return None
    try:
        out = subprocess.run([str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def gpus() -> list[tuple[str, tuple[int, int]]]:
    """(name, compute capability) of each visible GPU."""
    caps = extension.visible_capabilities()
    return [(torch.cuda.get_device_name(i) if torch.cuda.is_available() else f"GPU {i}", tuple(c))
            for i, c in enumerate(caps)]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def folder_size(path: Path, leave_out=()) -> int:
    """Bytes of the files under `path`, those under the folders `leave_out` (another cache inside it) left out."""
    if not Path(path).is_dir():
        return 0
    out = [Path(p).resolve() for p in leave_out]
    return sum(f.stat().st_size for f in Path(path).rglob("*")
               if f.is_file() and not any(o in f.resolve().parents for o in out))


def build_locks(root: Path, torch_blocks: bool) -> list[dict]:
    """lock_state of every build folder under the JIT cache root that records a build."""
    if not root.is_dir():
        return []
    states = (build_lock.lock_state(d, torch_blocks) for d in sorted(root.iterdir()) if d.is_dir())
    return [s for s in states if s is not None]


def plan_backend() -> dict:
    """What the first op call would load, without loading or building: {"source", "path", "why", "record",
    "prebuilt_problems", "needs_build", "toolchain_problem", "cuda"}."""
    mode = os.environ.get("JOINTVAE_FAST_BACKEND", "").strip().lower()
    kdir = extension.kernels_dir()
    spec = build_spec.read_spec(kdir) if kdir is not None else None
    plan = {"source": "composite", "path": None, "why": "", "record": None, "prebuilt_problems": [],
            "needs_build": False, "toolchain_problem": None, "cuda": False}
    if mode == "composite":
        return dict(plan, why="JOINTVAE_FAST_BACKEND=composite")
    for lib in extension.prebuilt_libraries():
        problem = extension.prebuilt_problem(lib, kdir, spec)
        if problem is None:
            record = build_spec.read_record(lib)
            return dict(plan, source="prebuilt", path=str(lib), why="compiled at install", record=record,
                        cuda=bool(record.get("cuda_kernels")))
        plan["prebuilt_problems"].append(f"{lib}: {problem}")
    if kdir is None:
        return dict(plan, why="no usable prebuilt library and no kernel sources to build from")
    for cuda in ([True, False] if extension.want_cuda(spec) else [False]):
        jit = extension.jit_plan(kdir, spec, cuda)
        record = build_spec.read_record(jit["library"])
        if jit["library"].is_file() and build_spec.record_mismatch(record, torch) is None:
            return dict(plan, source="JIT cache", path=str(jit["library"]), why="built at an earlier first use",
                        record=record, cuda=cuda)
    jit = extension.jit_plan(kdir, spec, extension.want_cuda(spec))
    problem = extension.toolchain_problem(jit["cuda_home"])
    if problem:
        return dict(plan, why=f"nothing built and {problem}", toolchain_problem=problem)
    return dict(plan, source="JIT build", path=str(jit["build_dir"]), needs_build=True, cuda=jit["cuda_home"] is not None,
                why="not built yet: the first op call compiles it (about a minute)")


def gather(load: bool = True, build: bool = False) -> dict:
    """Everything the report shows. load: confirm the backend by loading the library when that compiles nothing
    (or also when it does, with build)."""
    spec = build_spec.read_spec(extension.kernels_dir()) if extension.kernels_dir() else None
    cuda_home = build_spec.find_cuda_home(spec) if spec else None
    plan = plan_backend()
    loaded = backend_info() if load and (build or not plan["needs_build"]) else None
    cpp_extension = extension._cpp_extension()
    flags = cpu_flags()
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_home": cuda_home, "nvcc": nvcc_version(cuda_home),
        "cxx": shutil.which(os.environ.get("CXX", "c++")), "ninja": shutil.which("ninja"),
        "plan": plan, "loaded": loaded, "gpus": gpus(),
        "cpu": {"avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
                "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                "cores": os.cpu_count()},
        "caches": {"compiled ops (JIT builds)": extension.cache_root(),
                   "datasets (downloads, preprocessed)": data_cache_root()},
        "locks": build_locks(extension.cache_root(), build_lock.torch_lock_blocks(cpp_extension)),
    }


# ---------------------------------------------------------------------------------------------------------
# problems


def diagnose(facts: dict) -> list[Problem]:
    """Each known problem in `facts` with what to do."""
    found: list[Problem] = []
    plan = facts["plan"]
    for p in plan["prebuilt_problems"]:
        found.append(Problem(f"prebuilt library not used: {p}",
                             "reinstall for this torch: pip install --no-build-isolation --force-reinstall jointvae-fast "
                             "(from its source); meanwhile the ops are JIT-built or composite"))
    if plan["toolchain_problem"]:
        found.append(Problem(f"no compiled ops: {plan['toolchain_problem']}; the ops run as composite PyTorch (slower)",
                             "install a wheel built for this torch, or a C++ compiler and ninja for the JIT build"))
    loaded = facts["loaded"]
    if loaded is not None and loaded.get("errors"):
        found.append(Problem("loading the ops reported: " + "; ".join(loaded["errors"]),
                             "see the message; python -m jointvae_fast.doctor --build retries the build"))
    for state in facts["locks"]:
        if state["stale"] or state["torch_lock"]:
            left = state["torch_lock"] or state["path"]
            found.append(Problem(f"stale {build_lock.describe(state)}",
                                 f"the next build there clears it; or delete {left}"))
        elif state["held"] and state["age_s"] > HUNG_BUILD_S:
            found.append(Problem(f"a build has held its lock for long: {build_lock.describe(state)}",
                                 f"if it hangs, kill {state['pid']}; the next build takes over"))
    record = plan["record"] or {}
    arches = record.get("cuda_arch_list") if record.get("cuda_kernels") else None
    for i, (name, cap) in enumerate(facts["gpus"]):
        sm = f"{cap[0]}.{cap[1]}"
        if arches is None:
            found.append(Problem(f"GPU {i} ({name}, compute capability {sm}) is visible but the compiled ops have no "
                                 "CUDA kernels: CUDA tensors use the composite ops",
                                 "install the CUDA toolkit (nvcc; set CUDA_HOME) and rebuild"))
        elif not build_spec.runs_on(arches, cap):
            found.append(Problem(f"GPU {i} ({name}, compute capability {sm}) is not covered by the arch list "
                                 f"{arches} the CUDA kernels were built for",
                                 f"rebuild with TORCH_CUDA_ARCH_LIST=\"{arches};{sm}\" (pip install "
                                 "--no-build-isolation --force-reinstall ., or for the JIT build just run with it)"))
    return found


# ---------------------------------------------------------------------------------------------------------
# report


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def render(facts: dict, problems: list[Problem]) -> str:
    plan, loaded, cpu = facts["plan"], facts["loaded"], facts["cpu"]
    cuda = f"CUDA {facts['torch_cuda']}" if facts["torch_cuda"] else "no CUDA"
    nvcc = f"nvcc {facts['nvcc']} ({facts['cuda_home']})" if facts["nvcc"] else "nvcc: not found"
    lines = ["jointvae_fast doctor",
             f"  versions   python {facts['python']} | torch {facts['torch']} ({cuda}) | {nvcc}",
             f"  tools      c++: {facts['cxx'] or 'not found'} | ninja: {facts['ninja'] or 'not found'}"]
    backend = loaded["backend"] if loaded else ("composite" if plan["source"] == "composite" else
                                               ("cuda+cpu" if plan["cuda"] else "cpu") + " (not loaded)")
    lines.append(f"  ops        {backend}: {plan['source']} -- {plan['why']}")
    if plan["path"]:
        lines.append(f"             {plan['path']}")
    record = plan["record"] or {}
    arches = record.get("cuda_arch_list") if record.get("cuda_kernels") else None
    gpu_text = ", ".join(f"{n} (sm {c[0]}.{c[1]})" for n, c in facts["gpus"]) or "none visible"
    lines.append(f"  CUDA       kernels built for: {arches or 'no CUDA kernels'} | GPUs: {gpu_text}")
    lines.append(f"  CPU        AVX-512 {_yes(cpu['avx512'])} | AVX512-BF16 {_yes(cpu['avx512_bf16'])} | torch uses "
                 f"{cpu['capability']} | threads {cpu['threads']} of {cpu['cores']} cores")
    caches = facts["caches"]
    for name, path in caches.items():
        others = [p for p in caches.values() if Path(path).resolve() in Path(p).resolve().parents]  # nested caches
        size = _size(folder_size(path, others)) if Path(path).is_dir() else "absent"
        lines.append(f"  cache      {name}: {path} ({size})")
    if not problems:
        lines.append("  problems   none")
    for p in problems:
        lines += [f"  PROBLEM    {p.what}", f"    fix:     {p.fix}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m jointvae_fast.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build the compiled ops if needed (else reported only)")
    parser.add_argument("--no-load", action="store_true", help="do not load the compiled library")
    args = parser.parse_args(argv)

    def work() -> int:
        facts = gather(load=not args.no_load, build=args.build)
        problems = diagnose(facts)
        print(render(facts, problems))
        return 1 if problems else 0

    return run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
