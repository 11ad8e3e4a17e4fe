"""PatchConvTranspose2d: the decoder's last layer as one matrix product and col2im.

It must be nn.ConvTranspose2d to float32 rounding: the same output and gradients (input, weight, bias) for
any batch, channels, size and the layer options the route takes, in both memory layouts; under bf16
autocast it computes in float32 (the fp32 layer on the upcast input); off the route it is
BiasApartConvTranspose2d; same state_dict. The 32x32 and 64x64 decoders use it for their last layer.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from jointvae_fast import ops
from jointvae_fast.layers import BiasApartConvTranspose2d, PatchConvTranspose2d
from jointvae_fast.model import JointVAE

fused = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")


def _pair(cin, cout, k, s, p, seed, bias=True):
    torch.manual_seed(seed)
    ref = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, bias=bias)
    layer = PatchConvTranspose2d(cin, cout, k, stride=s, padding=p, bias=bias)
    layer.load_state_dict(ref.state_dict())
    if bias:  # a bias far from 0, so that a dropped or misplaced bias shows
        with torch.no_grad():
            ref.bias.uniform_(-3, 3)
            layer.bias.copy_(ref.bias)
    return ref, layer


def _run(layer, x, g, channels_last=False, bf16=False):
    """(y, dx, dW[, db]) of layer(x) under upstream gradient g."""
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.backward(g.to(y.dtype))
    return [y, x.grad, layer.weight.grad] + ([layer.bias.grad] if layer.bias is not None else [])


@fused
@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 4), cin=st.sampled_from([1, 3, 8, 32]), cout=st.sampled_from([1, 2, 3]),
       size=st.integers(1, 9), geometry=st.sampled_from([(4, 2, 1), (3, 1, 1), (2, 2, 0), (5, 3, 2)]),
       bias=st.booleans(), channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_nn_conv_transpose_in_float32(batch, cin, cout, size, geometry, bias, channels_last, seed):
    k, s, p = geometry
    out = (size - 1) * s - 2 * p + k
    if out < 1:
        return
    ref, layer = _pair(cin, cout, k, s, p, seed, bias)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, cin, size, size, generator=gen)
    g = torch.randn(batch, cout, out, out, generator=gen)
    for want, got in zip(_run(ref, x, g, channels_last), _run(layer, x, g, channels_last)):
        assert got.dtype == torch.float32
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6 * scale * cin)


@fused
def test_bf16_autocast_computes_the_float32_layer():
    """Under bf16 autocast the output is float32 and equals the float32 layer applied to the input."""
    ref, layer = _pair(32, 1, 4, 2, 1, 0)
    x = torch.randn(4, 32, 16, 16).bfloat16().float()  # representable in bf16: upcasting is exact
    g = torch.randn(4, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x.bfloat16()).dtype == torch.float32
    for want, got in zip(_run(ref, x, g), _run(layer, x, g, channels_last=True, bf16=True)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6 * max(1.0, want.abs().max().item()) * 32)


def test_off_the_route_it_is_the_bias_apart_layer():
    ref, layer = _pair(8, 1, 4, 2, 1, 0)
    x = torch.randn(2, 8, 5, 5)
    apart = BiasApartConvTranspose2d(8, 1, 4, stride=2, padding=1)
    apart.load_state_dict(layer.state_dict())
    layer.patches = False
    torch.testing.assert_close(layer(x), apart(x), rtol=0, atol=0)
    layer.patches = True
    torch.testing.assert_close(layer(x, output_size=[11, 11]), ref(x, output_size=[11, 11]))  # output_size: torch's
    torch.testing.assert_close(layer.double()(x.double()), apart.double()(x.double()))  # float64: torch's


def test_the_decoders_last_layer_uses_it_and_keeps_the_state_dict():
    for size in (32, 64):
        model = JointVAE((1, size, size), 10, [10])
        deconvs = [m for m in model.features_to_img if isinstance(m, nn.ConvTranspose2d)]
        assert isinstance(deconvs[-1], PatchConvTranspose2d)
        assert not any(isinstance(m, PatchConvTranspose2d) for m in deconvs[:-1])
        plain = JointVAE((1, size, size), 10, [10])
        plain.load_state_dict(model.state_dict())
    rgb = JointVAE((3, 32, 32), 10, [10])  # three channels: oneDNN was as fast (docs/performance.md)
    assert not any(isinstance(m, PatchConvTranspose2d) for m in rgb.modules())
