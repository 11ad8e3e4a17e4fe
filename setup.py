"""jointvae-fast: Joint-VAE with fused CUDA/CPU latent kernels.

Install (README): pip install -e ".[test]". The compiled ops are built by JIT at first use
(jointvae_fast/ops/extension.py). Ahead-of-time build instead:
    JOINTVAE_BUILD_EXT=1 pip install --no-build-isolation -e .
(--no-build-isolation so the build sees the installed torch). Without JOINTVAE_BUILD_EXT this file
never imports torch: pip's isolated build environment has none.
A non-editable install copies kernels/ into the package (jointvae_fast/_kernels) for the JIT build.
"""
import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
KERNEL_SUFFIXES = {".h", ".cuh", ".cpp", ".cu"}


class BuildPyWithKernels(build_py):
    """build_py that also ships kernels/ as jointvae_fast/_kernels (sources of the JIT build)."""

    def run(self):
        super().run()
        src = HERE / "kernels"
        if not getattr(self, "editable_mode", False) and src.is_dir():
            dst = Path(self.build_lib) / "jointvae_fast" / "_kernels"
            shutil.rmtree(dst, ignore_errors=True)
            for f in src.rglob("*"):
                if f.is_file() and f.suffix in KERNEL_SUFFIXES:
                    target = dst / f.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target)


cmdclass = {"build_py": BuildPyWithKernels}
ext_modules = []
if os.environ.get("JOINTVAE_BUILD_EXT") == "1":
    nvcc = None
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            nvcc = os.path.join(root, "bin", "nvcc")
            os.environ.setdefault("CUDA_HOME", root)  # before cpp_extension is imported: it reads it once
            break

    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    with_cuda = bool(torch.version.cuda) and nvcc is not None and os.environ.get("JOINTVAE_FAST_BACKEND") != "cpu"
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    sources = ["kernels/cpu/latent_cpu.cpp", "kernels/torch/ops.cpp", "kernels/torch/autograd.cpp"]
    if with_cuda:
        sources += ["kernels/torch/ops_cuda.cpp", "kernels/cuda/latent_kernels.cu"]
    Ext = CUDAExtension if with_cuda else CppExtension
    ext_modules.append(
        Ext(
            name="jointvae_fast._jointvae_ext",
            sources=sources,
            include_dirs=[str(HERE / "kernels" / "include"), str(HERE / "kernels")],
            extra_compile_args={"cxx": ["-O3", "-fno-math-errno", "-fno-trapping-math"], "nvcc": ["-O3"]},
        )
    )
    cmdclass["build_ext"] = BuildExtension.with_options(no_python_abi_suffix=False)

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
    # explorer's browser test (skips without them); tensorboard: train --tensorboard (optional), and its test
    # h5py: --dataset FILE.h5 (HDF5 image arrays, optional), and its tests
    extras_require={"test": ["pytest", "hypothesis", "pybind11", "selenium>=4.11", "tensorboard", "h5py"],
                    "tensorboard": ["tensorboard"], "hdf5": ["h5py"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
