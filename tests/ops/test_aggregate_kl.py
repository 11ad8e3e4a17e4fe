"""ops.aggregate_kl (CPU twin and composite twin) against reference/information.py; its op contracts."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast import ops
from tests.ops_cases import aggregate_bounds, assert_close, latent_cases

TINY32 = float(np.finfo(np.float32).tiny)  # the float32 outputs' own underflow
needs_ops = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops not built")


def _run(fn, logits, dims, w):
    """(agg_kl, qbar, d logits of <w, agg_kl>)."""
    lg = logits.clone().requires_grad_()
    agg, qbar = fn(lg, dims)
    (g,) = torch.autograd.grad((agg * torch.as_tensor(w, dtype=agg.dtype)).sum(), lg)
    return agg, qbar, g


@given(latent_cases(max_d=0), st.sampled_from(["fused", "composite"]), st.booleans())
def test_forward_backward_float32(case, which, strided):
    if not case["dims"]:
        return
    fn = ops.aggregate_kl if which == "fused" else ops.composite_aggregate_kl
    dims, lg64 = case["dims"], case["logits"].astype(np.float64)
    logits = torch.from_numpy(case["logits"])
    if strided:  # a column slice, as the encoder's output
        logits = torch.cat([logits, logits], dim=1)[:, : logits.shape[1]]
    w = np.random.default_rng(case["seed"]).standard_normal(len(dims)).astype(np.float32)
    agg, qbar, g = _run(fn, logits, dims, w)
    tol_q, tol_a, tol_d = aggregate_bounds(lg64, dims, w)
    f = 1.0 if which == "fused" else 8.0  # the composite takes the batch mean in float32
    assert_close(qbar, reference.aggregate_posterior(lg64, dims), f * tol_q + TINY32, "qbar")
    assert_close(agg, reference.kl_aggregate(lg64, dims), f * tol_a + TINY32, "agg_kl")
    (want,) = reference.kl_aggregate_vjp(lg64, dims, w.astype(np.float64))
    assert_close(g, want, f * tol_d + TINY32, "d logits")


@settings(max_examples=20)
@given(latent_cases(max_b=64, max_d=0, max_k=16))
def test_float64_matches_reference_tightly(case):
    if not case["dims"]:
        return
    dims, lg64 = case["dims"], case["logits"].astype(np.float64)
    w = np.random.default_rng(case["seed"]).standard_normal(len(dims))
    agg, qbar, g = _run(ops.aggregate_kl, torch.from_numpy(lg64), dims, w)
    tol_q, tol_a, tol_d = aggregate_bounds(lg64, dims, w)
    assert_close(qbar, reference.aggregate_posterior(lg64, dims), 1e-8 * tol_q + 1e-300, "qbar")
    assert_close(agg, reference.kl_aggregate(lg64, dims), 1e-8 * tol_a + 1e-300, "agg_kl")
    assert_close(g, reference.kl_aggregate_vjp(lg64, dims, w)[0], 1e-8 * tol_d + 1e-300, "d logits")


@needs_ops
def test_information_is_kl_minus_aggregate_and_large_batches_match():
    """B = 3000 spans several fixed row chunks of the CPU twin; I = KL - A against the reference."""
    rng = np.random.default_rng(3)
    dims = [10, 3]
    lg64 = rng.standard_normal((3000, 13)) * 2
    lg = torch.from_numpy(lg64).float()
    agg, qbar = ops.aggregate_kl(lg, dims)
    _, _, kd = ops.kl_capacity_loss(None, None, lg, dims, 0.0, 0.0, 0.0, 0.0)
    want = reference.batch_information(lg.double().numpy(), dims)
    _, tol_a, _ = aggregate_bounds(lg.double().numpy(), dims, np.ones(2))
    assert_close(kd - agg, want, tol_a + 1e-5, "information")
    assert torch.equal(agg, ops.aggregate_kl(lg, dims)[0])  # deterministic


@needs_ops
def test_extremes_and_unused_classes_stay_finite():
    lg = torch.full((5, 7), -1e4)
    lg[:, 0] = 1e4  # variable 0 always class 0; classes 1-3 never used (qbar = 0)
    lg[torch.arange(5), 4 + torch.arange(5) % 3] = 1e4
    for fn in (ops.aggregate_kl, ops.composite_aggregate_kl):
        agg, qbar, g = _run(fn, lg, [4, 3], np.array([1.0, -2.0], np.float32))
        assert torch.isfinite(agg).all() and torch.isfinite(g).all()
        assert agg[0].item() == pytest.approx(np.log(4), rel=1e-6)  # one class of four: A = log K
        assert qbar[:4].tolist() == [1.0, 0.0, 0.0, 0.0]


@needs_ops
@pytest.mark.parametrize("dims", [[2], [3, 5]])
def test_gradcheck_and_opcheck(dims):
    from torch.library import opcheck

    lg = torch.randn(6, sum(dims), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ops.aggregate_kl(x, dims)[0], (lg,))
    opcheck(torch.ops.jointvae.aggregate_kl.default, (lg, dims))
    agg, qbar = torch.ops.jointvae.aggregate_kl(lg.detach(), dims)
    opcheck(torch.ops.jointvae.aggregate_kl_backward.default, (torch.ones_like(agg), lg.detach(), qbar, dims))


@needs_ops
def test_compiles_fullgraph():
    dims = [4, 3]
    lg = torch.randn(8, 7, requires_grad=True)
    f = torch.compile(lambda x: ops.aggregate_kl(x, dims)[0].sum(), fullgraph=True, backend="aot_eager")
    (g,) = torch.autograd.grad(f(lg), lg)
    (want,) = torch.autograd.grad(ops.aggregate_kl(lg, dims)[0].sum(), lg)
    torch.testing.assert_close(g, want)


@pytest.mark.parametrize("fn", [ops.aggregate_kl, ops.composite_aggregate_kl])
def test_bad_inputs_name_the_argument(fn):
    lg = torch.randn(4, 5)
    with pytest.raises(ValueError, match="disc_dims"):
        fn(lg, [2, 2])
    with pytest.raises(TypeError, match="logits"):
        fn(lg.numpy(), [5])
    with pytest.raises(ValueError, match="logits"):
        fn(lg[0], [5])
    with pytest.raises(ValueError, match="at least one row"):
        fn(lg[:0], [5])


@needs_ops
def test_torch_check_guards_the_raw_ops():
    lg = torch.randn(4, 5)
    with pytest.raises(RuntimeError, match="at least one row"):
        torch.ops.jointvae.aggregate_kl(lg[:0], [5])
    agg, qbar = torch.ops.jointvae.aggregate_kl(lg, [5])
    with pytest.raises(RuntimeError, match="grad_agg"):
        torch.ops.jointvae.aggregate_kl_backward(torch.ones(2), lg, qbar, [5])
    with pytest.raises(RuntimeError, match="qbar"):
        torch.ops.jointvae.aggregate_kl_backward(torch.ones(1), lg, qbar[:3], [5])
