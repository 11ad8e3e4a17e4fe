"""Layers with torch's parameters, computed faster on the CPU.

- BiasApartConvTranspose2d (bias_apart.py): nn.ConvTranspose2d with the bias added after the convolution.
- PatchConvTranspose2d (patch_deconv.py): a transposed convolution as one matrix product and col2im (the
  decoder's last layer, one image channel; on the CPU, torch's layer elsewhere).
"""
from .bias_apart import BiasApartConvTranspose2d
from .patch_deconv import PatchConvTranspose2d, torch_layers

__all__ = ["BiasApartConvTranspose2d", "PatchConvTranspose2d", "torch_layers"]
