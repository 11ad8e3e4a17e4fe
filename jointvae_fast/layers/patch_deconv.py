"""The decoder's last layer as one matrix product and col2im: PatchConvTranspose2d.

oneDNN runs a transposed convolution to one channel far below its rate (the 32x32 decoder's last layer,
32 -> 1 channels, ran its forward at about 4 GFLOP/s on the development CPU). With patches
(jointvae_fast/ops/patches.py) it is one dense matrix product and a gather:

    y = col2im(rows(x) @ W.reshape(C_in, C_out k k)) + b        rows(x) = x as [B h w, C_in] (NHWC rows)

x [B, C_in, h, w] -> y [B, C_out, H, W], H = (h - 1) s - 2p + k. Same parameters and state_dict as
nn.ConvTranspose2d. It computes in float32 also under bf16 autocast (input upcast): the product is small and
the reconstruction's logits keep full precision. The patch route runs on the CPU with the compiled ops
loaded, for groups 1, dilation 1, zero padding, square kernels and no output_padding; otherwise (CUDA, or
`patches=False`) BiasApartConvTranspose2d's forward runs. Output layout on the patch route: channels_last.
The same rewrite of the encoder's first convolution (im2col then a product) was slower than oneDNN's there
(docs/performance.md), so that layer stays nn.Conv2d.
"""
from __future__ import annotations

import torch

from .. import ops
from .bias_apart import BiasApartConvTranspose2d


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()


class PatchConvTranspose2d(BiasApartConvTranspose2d):
    """nn.ConvTranspose2d as one matrix product + col2im on the CPU (module docstring). `patches` (default
    True) switches the route off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.patches = True

    def _patch_route(self, x: torch.Tensor, output_size) -> bool:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (self.patches and output_size is None and x.dim() == 4 and x.dtype != torch.float64
                and self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
                and k[0] == k[1] and s[0] == s[1] and p[0] == p[1] and self.output_padding == (0, 0)
                and ops.patches_available(x.device))

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if not self._patch_route(x, output_size):
            return super().forward(x, output_size)
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        B, C, h, w = x.shape
        H, W = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
        with torch.autocast(x.device.type, enabled=False):
            rows = _fp32(x).permute(0, 2, 3, 1).reshape(B * h * w, C)  # a view when x is channels_last
            cols = rows @ _fp32(self.weight).reshape(C, -1)  # [B h w, C_out k k]
            y = ops.col2im(cols, (B, self.out_channels, H, W), k, s, p, channels_last=True)
            if self.bias is not None:
                y = y + _fp32(self.bias).view(1, -1, 1, 1)
        return y


def torch_layers(module: torch.nn.Module) -> torch.nn.Module:
    """Switch the patch route of every PatchConvTranspose2d in `module` off (torch's ops run: for exported graphs,
    and for the benchmarks' ablation); returns `module`."""
    for m in module.modules():
        if isinstance(m, PatchConvTranspose2d):
            m.patches = False
    return module
