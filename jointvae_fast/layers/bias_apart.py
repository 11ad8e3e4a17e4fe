"""BiasApartConvTranspose2d: the decoder's transposed convolutions with their bias added apart."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BiasApartConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters, same state_dict) that adds its bias after the convolution.

    y = conv_transpose2d(x, W) + b[None, :, None, None], b cast to y's dtype (bf16 under autocast, as the fused
    bias would give). The math is the layer's; what changes is the backward: autograd reduces db = sum over
    (batch, H, W) of dy with a plain sum. With the bias fused, oneDNN's transposed-convolution backward made the
    layer's forward + backward 1.1-2.0x as slow in bf16 and up to 1.16x in fp32 on the development CPU
    (`benchmarks/run.py --suite layers`; docs/performance.md). x [B, C_in, H, W] -> y [B, C_out, 2H, 2W] for the
    paper's k=4, s=2, p=1."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None or self.padding_mode != "zeros":
            return super().forward(x, output_size)
        y = F.conv_transpose2d(x, self.weight, None, self.stride, self.padding, self.output_padding, self.groups,
                               self.dilation)
        if self.bias is None:
            return y
        return y + self.bias.to(y.dtype).view(1, -1, 1, 1)
