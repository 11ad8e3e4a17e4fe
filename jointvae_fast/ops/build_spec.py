"""The one description of the compiled ops' build (kernels/build.json), as setup.py and the JIT build read it.

Standard library only: setup.py loads this file by path, before (or without) torch. CMakeLists.txt reads the
same build.json with string(JSON).

    spec = read_spec(kdir)                       the parsed build.json of a kernels/ folder
    library_sources(kdir, spec, cuda)            compile units of the library: cpu + torch_cpu (+ cuda + torch_cuda)
    shipped_files(kdir, spec)                    every file the library is built from (sources, headers, build.json):
                                                 what a wheel ships as jointvae_fast/_kernels, nothing test-only
    digest(kdir, files)                          sha256 of those files' relative paths and bytes
    find_cuda_home(spec, environ)                the CUDA toolkit, searched in cuda_home_search order (torch's order)
    arch_list(spec, environ, capabilities)       TORCH_CUDA_ARCH_LIST if set, else the visible GPUs', else the spec's
    make_record / record_mismatch                what a built library was built for, and whether it fits this torch
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

SPEC_FILE = "build.json"
RECORD_SUFFIX = ".build.json"
RECORD_FORMAT = 1


def read_spec(kdir: Path) -> dict:
    """build.json of the kernels folder `kdir`."""
    return json.loads((Path(kdir) / SPEC_FILE).read_text(encoding="utf-8"))


def library_sources(kdir: Path, spec: dict, cuda: bool) -> list[Path]:
    """The library's compile units: the CPU twin and its torch bindings, plus the CUDA kernels and theirs."""
    groups = ("cpu", "torch_cpu", "cuda", "torch_cuda") if cuda else ("cpu", "torch_cpu")
    return [Path(kdir) / rel for g in groups for rel in spec["sources"][g]]


def include_dirs(kdir: Path, spec: dict) -> list[Path]:
    return [Path(kdir) / rel for rel in spec["include_dirs"]]


def shipped_files(kdir: Path, spec: dict) -> list[Path]:
    """build.json, every source of both configurations and the headers its globs match, sorted, no duplicates."""
    kdir = Path(kdir)
    files = {kdir / SPEC_FILE, *library_sources(kdir, spec, cuda=True)}
    for pattern in spec["headers"]:
        files.update(p for p in kdir.glob(pattern) if p.is_file())
    return sorted(files)


def key_files(kdir: Path, spec: dict, cuda: bool) -> list[Path]:
    """What goes into one configuration's library: its sources, the headers, build.json."""
    kdir = Path(kdir)
    unused = set(library_sources(kdir, spec, True)) - set(library_sources(kdir, spec, cuda))
    return [f for f in shipped_files(kdir, spec) if f not in unused]


def digest(kdir: Path, files) -> str:
    """sha256 over (path relative to kdir, bytes) of each file: the same sources give the same digest anywhere."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).relative_to(kdir).as_posix().encode() + b"\0")
        h.update(Path(f).read_bytes() + b"\0")
    return h.hexdigest()


def find_cuda_home(spec: dict, environ=os.environ) -> str | None:
    """The CUDA toolkit folder (bin/nvcc and include/cuda_runtime_api.h), searched in spec["cuda_home_search"]
    order: "env:NAME" (a variable naming the folder), "path:nvcc" (the folder above the folder of nvcc on PATH),
    or a literal folder. None when none qualifies (a bare nvcc wrapper script on PATH does not)."""
    for entry in spec["cuda_home_search"]:
        if entry.startswith("env:"):
            root = environ.get(entry[4:])
        elif entry.startswith("path:"):
            found = shutil.which(entry[5:], path=environ.get("PATH", os.defpath))
            root = str(Path(found).resolve().parent.parent) if found else None
        else:
            root = entry
        if root and os.access(Path(root) / "bin" / "nvcc", os.X_OK) \
                and (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            return str(root)
    return None


def arch_list(spec: dict, environ=os.environ, capabilities=()) -> str:
    """The CUDA architectures to build: $TORCH_CUDA_ARCH_LIST, else the visible GPUs' compute capabilities
    (the newest also as PTX, as torch does), else spec["cuda_arch_list"] (no GPU visible)."""
    if environ.get("TORCH_CUDA_ARCH_LIST"):
        return environ["TORCH_CUDA_ARCH_LIST"]
    caps = sorted(set(capabilities))
    if caps:
        return ";".join([f"{a}.{b}" for a, b in caps[:-1]] + [f"{caps[-1][0]}.{caps[-1][1]}+PTX"])
    return spec["cuda_arch_list"]


def runs_on(arches: str, capability: tuple[int, int]) -> bool:
    """Whether code built for `arches` ("8.0;9.0+PTX", spaces or semicolons) runs on a GPU of `capability`:
    a cubin for X.Y runs on X.Z with Z >= Y; PTX for X.Y (+PTX) is compiled by the driver for any GPU >= X.Y."""
    for item in arches.replace(" ", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        ptx = item.endswith("+PTX")
        major, _, minor = item.removesuffix("+PTX").partition(".")
        try:
            arch = (int(major), int(minor.rstrip("af") or 0))
        except ValueError:
            continue
        if (arch[0] == capability[0] and arch[1] <= capability[1]) or (ptx and arch <= tuple(capability)):
            return True
    return False


def make_record(torch, cuda: bool, arches: str | None, source_digest: str) -> dict:
    """What a library was built for (written next to it): torch, its CUDA, python, the C++ ABI, the arch list."""
    return {
        "format": RECORD_FORMAT,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": "%d.%d" % sys.version_info[:2],
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "cuda_kernels": bool(cuda),
        "cuda_arch_list": arches if cuda else None,
        "sources": source_digest,
    }


def record_path(library: Path) -> Path:
    """<folder>/<name up to the first dot>.build.json, next to the library."""
    library = Path(library)
    return library.with_name(library.name.split(".")[0] + RECORD_SUFFIX)


def read_record(library: Path) -> dict | None:
    try:
        record = json.loads(record_path(library).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict) -> str:
    return (f"torch {record.get('torch')} (CUDA {record.get('torch_cuda')}, python {record.get('python')}, "
            f"C++11 ABI {record.get('cxx11_abi')})")


def record_mismatch(record: dict | None, torch) -> str | None:
    """None when the library of `record` fits the running torch and python; else a one-line reason."""
    if record is None:
        return "it has no build record"
    here = make_record(torch, False, None, "")
    fields = ("format", "torch", "torch_cuda", "python", "cxx11_abi")
    if any(record.get(f) != here[f] for f in fields):
        return f"it was built for {describe(record)}; this is {describe(here)}"
    return None
