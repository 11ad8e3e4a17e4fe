"""jointvae_fast: Joint-VAE (Dupont 2018) with fused CUDA/CPU kernels.

Importing the package is cheap: the compiled extension is built or loaded the
first time `jointvae_fast.ops` is imported.
"""

__version__ = "0.1.0"
