"""ops.im2col / ops.col2im (jointvae_fast/ops/patches.py): the compiled CPU ops against known answers.

- im2col against F.unfold (the composite twin) exactly (it is a copy), for any kernel, stride, padding, image
  size and memory layout, and against a hand-computed case;
- col2im against F.fold, and as the adjoint of im2col: <im2col(x), P> = <x, col2im(P)> (float64);
- gradcheck (each op's backward is the other), opcheck (schema, fake kernel, autograd registration),
  torch.compile(fullgraph=True) through both;
- bad arguments raise ValueError naming the argument.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from jointvae_fast import ops
from jointvae_fast.ops import patches

fused = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")


@st.composite
def geometries(draw):
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, k - 2 * p), 11))
    W = draw(st.integers(max(1, k - 2 * p), 11))
    return draw(st.integers(0, 3)), draw(st.integers(1, 4)), H, W, k, s, p


def _image(B, C, H, W, layout, seed, dtype=torch.float64):
    x = torch.randn(B, C, H, W + 3, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    if layout == "channels_last":
        return x[..., :W].contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a column slice: no layout at all
        return x[..., 1 : W + 1]
    return x[..., :W].contiguous()


@fused
@settings(max_examples=80, deadline=None)
@given(g=geometries(), layout=st.sampled_from(["nchw", "channels_last", "strided"]), seed=st.integers(0, 2**16))
def test_im2col_is_unfold_and_col2im_is_fold(g, layout, seed):
    B, C, H, W, k, s, p = g
    x = _image(B, C, H, W, layout, seed)
    cols = patches.im2col(x, k, s, p)
    want = F.unfold(x, k, padding=p, stride=s).transpose(1, 2).reshape(-1, C * k * k)
    assert cols.shape == want.shape and torch.equal(cols, want)
    P = torch.randn(cols.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    for channels_last in (False, True):
        got = patches.col2im(P, (B, C, H, W), k, s, p, channels_last=channels_last)
        assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(got, patches.composite_col2im(P, (B, C, H, W), k, s, p), rtol=1e-12, atol=1e-12)
    # the adjoint identity, which col2im must satisfy whatever its summation order
    lhs = (cols * P).sum()
    rhs = (x * patches.col2im(P, (B, C, H, W), k, s, p)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@fused
def test_a_hand_computed_case():
    """A 1x1x3x3 image, kernel 2, stride 1, padding 0: the four 2x2 windows; col2im of ones counts the
    windows over each pixel."""
    x = torch.arange(9.0).view(1, 1, 3, 3)
    cols = patches.im2col(x, 2, 1, 0)
    assert cols.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    counts = patches.col2im(torch.ones(4, 4), (1, 1, 3, 3), 2, 1, 0)
    assert counts.view(3, 3).tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    # the paper's geometry (k 4, s 2, p 1) on a 4x4 image: grid point (0, 0) reads pixels 0..2 of rows 0..2
    y = torch.arange(16.0).view(1, 1, 4, 4)
    first = patches.im2col(y, 4, 2, 1)[0].view(4, 4)
    assert first.tolist() == [[0, 0, 0, 0], [0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]]


@fused
@pytest.mark.parametrize("k, s, p", [(4, 2, 1), (3, 1, 1), (2, 3, 0)])
def test_gradcheck_and_opcheck(k, s, p):
    from torch.library import opcheck

    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: patches.im2col(t, k, s, p), (x,))
    cols = patches.im2col(x.detach(), k, s, p).requires_grad_()
    torch.autograd.gradcheck(lambda t: patches.col2im(t, (2, 3, 6, 5), k, s, p, True), (cols,))
    opcheck(torch.ops.jointvae.im2col.default, (x, k, s, p))
    opcheck(torch.ops.jointvae.col2im.default, (cols, [2, 3, 6, 5], k, s, p, True))


@fused
def test_compiles_fullgraph():
    def f(x, w):
        cols = patches.im2col(x, 4, 2, 1) @ w
        return patches.col2im(cols, (x.shape[0], 1, 8, 8), 4, 2, 1).square().sum()

    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    w = torch.randn(16, 16, requires_grad=True)
    want = torch.autograd.grad(f(x, w), (x, w))
    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(x, w), (x, w))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@fused
def test_float32_and_the_composite_twin_agree():
    x = torch.randn(3, 2, 9, 7)
    cols = patches.im2col(x, 4, 2, 1)
    torch.testing.assert_close(cols, patches.composite_im2col(x, 4, 2, 1))
    torch.testing.assert_close(patches.col2im(cols, x.shape, 4, 2, 1),
                               patches.composite_col2im(cols, x.shape, 4, 2, 1), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: patches.im2col(torch.zeros(2, 3, 4), 4, 2, 1), "image must be"),
    (lambda: patches.im2col(torch.zeros(1, 1, 4, 4), 0, 2, 1), "kernel"),
    (lambda: patches.im2col(torch.zeros(1, 1, 4, 4), 4, 0, 1), "stride"),
    (lambda: patches.im2col(torch.zeros(1, 1, 4, 4), 4, 2, -1), "padding"),
    (lambda: patches.im2col(torch.zeros(1, 1, 2, 2), 5, 1, 0), "smaller than the kernel"),
    (lambda: patches.col2im(torch.zeros(3, 16), (1, 1, 4, 4), 4, 2, 1), "patches must be"),
    (lambda: patches.col2im(torch.zeros(4, 16), (1, 4, 4), 4, 2, 1), "image_size"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
