"""jointvae-fast: Joint-VAE with fused CUDA/CPU latent kernels.

What each install builds (README "Install"; the build itself is described once, in kernels/build.json):
    pip install --no-build-isolation .   compiles the ops into the package: the CPU twin, and the CUDA kernels too
    pip wheel --no-build-isolation .     where torch has CUDA and a CUDA toolkit is found (the arch list:
                                         $TORCH_CUDA_ARCH_LIST, else the visible GPUs', else build.json's). The
                                         library records what it was built for (_jointvae_ext.build.json).
    pip install -e .                     compiles nothing: the ops are JIT-built at first use into a cache (the
                                         developer path); JOINTVAE_BUILD_EXT=1 compiles them in place instead.
--no-build-isolation lets the build see the installed torch: in pip's default isolated build environment there is
no torch, so the package is built without the library (a line says so) and JIT-builds its ops at first use.
JOINTVAE_BUILD_EXT=0 never compiles. A non-editable install also ships the library's sources (build.json, the
sources, their headers: no test code) as jointvae_fast/_kernels, so a mismatched torch can still JIT-build them.
"""
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "kernels"


def _load_build_spec():
    """jointvae_fast/ops/build_spec.py, loaded by path (standard library only; the package is not imported)."""
    loader = importlib.util.spec_from_file_location("_jointvae_build_spec", HERE / "jointvae_fast" / "ops" / "build_spec.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


bs = _load_build_spec()
SPEC = bs.read_spec(KERNELS)


class BuildPyWithKernels(build_py):
    """build_py that also ships the library's sources (build_spec.shipped_files) as jointvae_fast/_kernels."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dst = Path(self.build_lib) / "jointvae_fast" / "_kernels"
        shutil.rmtree(dst, ignore_errors=True)
        for f in bs.shipped_files(KERNELS, SPEC):
            target = dst / f.relative_to(KERNELS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def _torch_build():
    """(ext_modules, build_ext command) compiling the ops with the installed torch, or ([], None) without torch."""
    if os.environ.get("JOINTVAE_BUILD_EXT") == "0":
        return [], None
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("jointvae-fast: torch is not importable in this build environment, so the compiled ops are not built "
              "into the package; they will be JIT-compiled at first use. To build them now: "
              "pip install --no-build-isolation .", file=sys.stderr)
        return [], None
    cuda_home = bs.find_cuda_home(SPEC)
    with_cuda = bool(torch.version.cuda) and cuda_home is not None and os.environ.get("JOINTVAE_FAST_BACKEND") != "cpu"
    arches = None
    if with_cuda:
        caps = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
        arches = bs.arch_list(SPEC, os.environ, caps)
        os.environ["TORCH_CUDA_ARCH_LIST"] = arches  # this build process only
        cpp_extension.CUDA_HOME = cuda_home  # the toolkit build.json's search found (torch's own guess may differ)
    record = bs.make_record(torch, with_cuda, arches, bs.digest(KERNELS, bs.key_files(KERNELS, SPEC, with_cuda)))
    Ext = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    ext = Ext(
        name="jointvae_fast._" + SPEC["library"],
        sources=[str(p.relative_to(HERE)) for p in bs.library_sources(KERNELS, SPEC, with_cuda)],
        include_dirs=[str(p) for p in bs.include_dirs(KERNELS, SPEC)],
        # -g0: setuptools adds python's CFLAGS (-g), which made the library 17x larger; the JIT build has no -g
        extra_compile_args={"cxx": list(SPEC["cxx_flags"]) + list(SPEC.get("torch_openmp_flags", [])) + ["-g0"],
                            "nvcc": list(SPEC["nvcc_flags"])},
        extra_link_args=list(SPEC.get("torch_openmp_flags", [])),  # at::parallel_for runs serially without it
    )

    class BuildOps(cpp_extension.BuildExtension):
        """torch's build_ext, writing the library's build record next to it; in an editable install it builds
        nothing unless JOINTVAE_BUILD_EXT=1 (the JIT build is the developer path)."""

        def run(self):
            if getattr(self, "editable_mode", False) and os.environ.get("JOINTVAE_BUILD_EXT") != "1":
                print("jointvae-fast: editable install: the ops are JIT-compiled at first use", file=sys.stderr)
                return
            super().run()
            for e in self.extensions:
                bs.record_path(Path(self.get_ext_fullpath(e.name))).write_text(json.dumps(record, indent=1))

        def get_outputs(self):
            if getattr(self, "editable_mode", False) and os.environ.get("JOINTVAE_BUILD_EXT") != "1":
                return []
            return super().get_outputs() + [str(bs.record_path(Path(o))) for o in super().get_outputs()]

    return [ext], BuildOps


ext_modules, build_ext_cmd = _torch_build()
cmdclass = {"build_py": BuildPyWithKernels}
if build_ext_cmd is not None:
    cmdclass["build_ext"] = build_ext_cmd

setup(
    name="jointvae-fast",
    version="0.1.0",
    description="Joint-VAE (Dupont 2018) with fused CUDA/CPU kernels, a NumPy reference, and benchmarks",
    python_requires=">=3.10",
    packages=find_packages(include=["jointvae_fast", "jointvae_fast.*"]),
    # the explorer's page and the pretrained model folders (model.pt, card.md, metrics.json) ship in the package
    package_data={"jointvae_fast.explore": ["static/*"], "jointvae_fast.pretrained": ["models/*.md", "models/*/*"]},
    install_requires=["torch>=2.4", "numpy", "scipy", "tqdm", "pillow", "matplotlib", "ninja"],
    # pybind11: the CUDA-emulation tests' binding; selenium drives Debian's chromium + chromedriver in the
    # explorer's browser test (skips without them); tensorboard: train --tensorboard (optional), and its test;
    # h5py: --dataset FILE.h5 (HDF5 image arrays, optional), and its tests;
    # onnxscript: torch.onnx's exporter (export --format onnx); onnxruntime: the export tests run the ONNX files
    extras_require={"test": ["pytest", "hypothesis", "pybind11", "selenium>=4.11", "tensorboard", "onnxscript",
                             "onnxruntime", "h5py"],
                    "tensorboard": ["tensorboard"],
                    "onnx": ["onnxscript"], "hdf5": ["h5py"],
                    "docs": ["mkdocs>=1.6,<2", "mkdocs-material", "mkdocstrings[python]"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
