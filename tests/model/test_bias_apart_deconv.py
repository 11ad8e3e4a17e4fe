"""BiasApartConvTranspose2d: the decoder's transposed convolution with its bias added apart.

It must be nn.ConvTranspose2d to float rounding: the same output and the same gradients (input, weight, bias)
as the fused layer with the same parameters, in float32 and under bf16 autocast, for any batch, channel
counts and size; and the same state_dict, so checkpoints of either load into the other.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from jointvae_fast.model import BiasApartConvTranspose2d, JointVAE

U_BF16 = 2.0**-8


def _pair(cin, cout, seed, bias=True):
    torch.manual_seed(seed)
    fused = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)
    apart = BiasApartConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)
    apart.load_state_dict(fused.state_dict())
    if bias:  # a bias far from 0, so that a dropped or misplaced bias shows
        with torch.no_grad():
            fused.bias.uniform_(-3, 3)
            apart.bias.copy_(fused.bias)
    return fused, apart


def _run(layer, x, g, bf16=False, channels_last=False):
    """(y, dx, dW, db) of layer(x) with upstream gradient g, float32 results."""
    x = x.clone().requires_grad_()
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    layer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.backward(g.to(y.dtype))
    grads = [x.grad, layer.weight.grad] + ([layer.bias.grad] if layer.bias is not None else [])
    return [y.float()] + [t.float() for t in grads]


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    cin=st.sampled_from([1, 3, 8, 32]),
    cout=st.sampled_from([1, 3, 16, 32]),
    size=st.sampled_from([1, 2, 4, 7, 16]),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_the_fused_layer_in_float32(batch, cin, cout, size, channels_last, seed):
    fused, apart = _pair(cin, cout, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, cin, size, size, generator=gen)
    g = torch.randn(batch, cout, 2 * size, 2 * size, generator=gen)
    for want, got in zip(_run(fused, x, g, channels_last=channels_last), _run(apart, x, g, channels_last=channels_last)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cin, cout, size", [(64, 32, 4), (32, 32, 8), (32, 1, 16), (32, 3, 32)])
def test_matches_the_fused_layer_under_bf16_autocast(cin, cout, size):
    """Output bf16 (as the fused layer's), within two bf16 roundings of the fused output (the conv's and the
    add's); gradients within a few roundings relative to their scale."""
    fused, apart = _pair(cin, cout, 0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, cin, size, size, generator=gen)
    g = torch.randn(4, cout, 2 * size, 2 * size, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert apart(x).dtype == fused(x).dtype == torch.bfloat16
    for want, got in zip(_run(fused, x, g, bf16=True, channels_last=True), _run(apart, x, g, bf16=True, channels_last=True)):
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0, atol=4 * U_BF16 * scale)


def test_no_bias_and_output_size_fall_back_to_the_fused_layer():
    fused, apart = _pair(8, 4, 0, bias=False)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(apart(x), fused(x))
    fused, apart = _pair(8, 4, 0)
    torch.testing.assert_close(apart(x, output_size=[11, 11]), fused(x, output_size=[11, 11]))


def test_the_decoder_uses_it_and_keeps_the_state_dict_keys():
    model = JointVAE((1, 32, 32), 10, [10])
    deconvs = [m for m in model.features_to_img if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and all(isinstance(m, BiasApartConvTranspose2d) for m in deconvs)
    keys = [k for k in model.state_dict() if k.startswith("features_to_img.")]
    assert keys == [f"features_to_img.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
