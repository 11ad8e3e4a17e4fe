"""ops.gaussian_aggregate_kl (CPU twin and composite twin) against reference/information.py; its op contracts."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast import ops
from tests.ops_cases import as_torch, assert_close, gaussian_aggregate_bounds, gaussian_cases

TINY32 = float(np.finfo(np.float32).tiny)  # the float32 outputs' own underflow
needs_ops = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops not built")


def _run(fn, mu, logvar, w):
    """(A, d mu, d logvar of <w, A>)."""
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    agg = fn(m, lv)
    dm, dl = torch.autograd.grad((agg * torch.as_tensor(w, dtype=agg.dtype)).sum(), (m, lv), allow_unused=True)
    return agg, (torch.zeros_like(m) if dm is None else dm), (torch.zeros_like(lv) if dl is None else dl)


def _check(agg, dmu, dlv, mu64, lv64, w, f, tiny, float_moments=False):
    _, _, tol_a, tol_dmu, tol_dlv = gaussian_aggregate_bounds(mu64, lv64, w, 2e-6 * f, float_moments)
    assert_close(agg, reference.kl_gaussian_aggregate(mu64, lv64), tol_a + tiny, "A")
    want_mu, want_lv = reference.kl_gaussian_aggregate_vjp(mu64, lv64, np.asarray(w, np.float64))
    assert_close(dmu, want_mu, tol_dmu + tiny, "d mu")
    assert_close(dlv, want_lv, tol_dlv + tiny, "d logvar")


@given(gaussian_cases(), st.sampled_from(["fused", "composite"]), st.booleans())
def test_forward_backward_float32(case, which, strided):
    fn = ops.gaussian_aggregate_kl if which == "fused" else ops.composite_gaussian_aggregate_kl
    mu, lv, _ = as_torch(case, strided=strided)  # strided: column slices, as the encoder's output
    w = np.random.default_rng(case["seed"]).standard_normal(case["D"]).astype(np.float32)
    agg, dmu, dlv = _run(fn, mu, lv, w)
    assert agg.dtype == torch.float32 and agg.shape == (case["D"],)
    # the composite takes the batch moments in float32: its own bound (float_moments)
    _check(agg, dmu, dlv, case["mu"].astype(np.float64), case["logvar"].astype(np.float64), w, 1.0, TINY32,
           float_moments=which == "composite")


@settings(max_examples=20)
@given(gaussian_cases())
def test_float64_matches_reference_tightly(case):
    mu64, lv64 = case["mu"].astype(np.float64), case["logvar"].astype(np.float64)
    w = np.random.default_rng(case["seed"]).standard_normal(case["D"])
    agg, dmu, dlv = _run(ops.gaussian_aggregate_kl, torch.from_numpy(mu64), torch.from_numpy(lv64), w)
    assert agg.dtype == torch.float64
    _check(agg, dmu, dlv, mu64, lv64, w, 1e-8, 1e-300)


@needs_ops
@settings(max_examples=20)
@given(gaussian_cases(), st.sampled_from([torch.float32, torch.float64]))
def test_moments_output_matches_reference(case, dtype):
    """The raw op's second output: float64 (m; s2) [2, D], not differentiable."""
    mu, lv, _ = as_torch(case, dtype=dtype)
    mu.requires_grad_()
    _, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu, lv)
    assert moments.dtype == torch.float64 and moments.shape == (2, case["D"]) and not moments.requires_grad
    mu64, lv64 = case["mu"].astype(np.float64), case["logvar"].astype(np.float64)
    rel = 2e-6 if dtype == torch.float32 else 2e-14
    err_m, err_s2, _, _, _ = gaussian_aggregate_bounds(mu64, lv64, np.ones(case["D"]), rel)
    want_m, want_s2 = reference.gaussian_aggregate_moments(mu64, lv64)
    assert_close(moments[0], want_m, err_m + 1e-300, "m")
    assert_close(moments[1], want_s2, err_s2 + 1e-300, "s2")


@pytest.mark.parametrize("fn", [ops.gaussian_aggregate_kl, ops.composite_gaussian_aggregate_kl])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_rows_have_zero_variance(fn, dtype):
    """Every row with the same posterior (large mu, logvar at the extremes): s2 = exp(logvar) exactly as far as
    the sums go, so A = the rows' own KL and d mu = w m / B (a variance taken from mean mu^2 - m^2 would not be)."""
    row_mu = torch.tensor([[999.9, -1e3, 0.3, 123.456]], dtype=dtype)
    row_lv = torch.tensor([[-20.0, 20.0, -20.0, 1.5]], dtype=dtype)
    B = 37
    mu, lv = row_mu.expand(B, 4), row_lv.expand(B, 4)
    w = np.array([1.0, -2.0, 0.5, 3.0])
    agg, dmu, dlv = _run(fn, mu, lv, w)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(agg.double(), torch.from_numpy(reference.kl_normal(row_mu.double().numpy(),
                                                                                  row_lv.double().numpy())),
                               rtol=tol, atol=0)
    torch.testing.assert_close(dmu.double(), (torch.from_numpy(w) * row_mu.double() / B).expand(B, 4),
                               rtol=tol, atol=0)
    want_lv = torch.from_numpy(reference.kl_normal_vjp(row_mu.double().numpy(), row_lv.double().numpy(), w)[1]) / B
    torch.testing.assert_close(dlv.double(), want_lv.expand(B, 4), rtol=tol, atol=0)


@pytest.mark.parametrize("fn", [ops.gaussian_aggregate_kl, ops.composite_gaussian_aggregate_kl])
def test_one_row_is_the_rows_kl(fn):
    mu = torch.tensor([[0.5, -3.0, 1e3]], dtype=torch.float64)
    lv = torch.tensor([[-20.0, 2.0, 20.0]], dtype=torch.float64)
    np.testing.assert_allclose(fn(mu, lv).numpy(), reference.kl_normal(mu.numpy(), lv.numpy()), rtol=1e-12)


@needs_ops
def test_information_is_kl_minus_aggregate_and_large_batches_match():
    """B = 3000 spans several fixed row chunks of the CPU twin; I = KL - A against the reference; deterministic."""
    rng = np.random.default_rng(3)
    mu = torch.from_numpy(rng.standard_normal((3000, 6)) * 2 + 5).float()
    lv = torch.from_numpy(rng.uniform(-5, 5, (3000, 6))).float()
    agg = ops.gaussian_aggregate_kl(mu, lv)
    _, kc, _ = ops.kl_capacity_loss(mu, lv, None, [], 0.0, 0.0, 0.0, 0.0)
    mu64, lv64 = mu.double().numpy(), lv.double().numpy()
    _, _, tol_a, _, _ = gaussian_aggregate_bounds(mu64, lv64, np.ones(6))
    assert_close(agg, reference.kl_gaussian_aggregate(mu64, lv64), tol_a, "A")
    assert_close(kc - agg, reference.gaussian_batch_information(mu64, lv64), tol_a + 1e-4, "information")
    assert torch.equal(agg, ops.gaussian_aggregate_kl(mu, lv))
    assert torch.equal(agg, ops.gaussian_aggregate_kl(mu.contiguous(), lv.t().contiguous().t()))


@needs_ops
def test_floor_keeps_extremes_finite_and_composite_agrees():
    """logvar < -87 with one mu per unit: s2 = exp(logvar) < finfo(float32).tiny; both twins floor it, so A and
    the gradients are the formulas at s2 = tiny, finite, and the two agree."""
    tiny = float(torch.finfo(torch.float32).tiny)
    mu = torch.tensor([[2.0, -1.0, 0.5]]).expand(5, 3)
    lv = torch.tensor([[-90.0, -120.0, 0.0]]).expand(5, 3)
    w = np.array([1.0, 1.0, 1.0], np.float32)
    fused = _run(ops.gaussian_aggregate_kl, mu, lv, w)
    comp = _run(ops.composite_gaussian_aggregate_kl, mu, lv, w)
    for a, b, what in zip(fused, comp, ("A", "d mu", "d logvar")):
        assert torch.isfinite(a).all() and torch.isfinite(b).all(), what
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=what)
    want = 0.5 * (np.array([4.0, 1.0]) + tiny - 1.0 - np.log(tiny))
    np.testing.assert_allclose(fused[0][:2].detach().numpy(), want, rtol=1e-6)
    _, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu, lv)
    assert moments[1, :2].tolist() == [tiny, tiny]
    _, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu.double(), lv.double())  # float64: no floor here
    np.testing.assert_allclose(moments[1, :2].numpy(), np.exp([-90.0, -120.0]), rtol=1e-12)


@pytest.mark.parametrize("fn", [ops.gaussian_aggregate_kl, ops.composite_gaussian_aggregate_kl])
def test_no_units(fn):
    mu = torch.zeros(4, 0, requires_grad=True)
    agg = fn(mu, torch.zeros(4, 0))
    assert agg.shape == (0,) and agg.dtype == torch.float32


@needs_ops
def test_half_inputs_are_upcast_before_the_op_is_called(monkeypatch):
    """float16/bfloat16 never reach the compiled op (no raised-and-caught C++ error per call): upcast first, the
    result equals the float32 computation on the upcast inputs, bit for bit, and is differentiable."""
    from jointvae_fast.ops import fused as fused_mod

    op = fused_mod._gaussian_aggregate_op

    def refuse_half(*args):
        halves = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype in (torch.float16, torch.bfloat16)]
        assert not halves, f"the compiled op was called with {halves}"
        return op(*args)

    monkeypatch.setattr(fused_mod, "_gaussian_aggregate_op", refuse_half)
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(9, 5, generator=g) * 3, torch.randn(9, 5, generator=g)
    for dt in (torch.bfloat16, torch.float16):
        h_mu, h_lv = mu.to(dt).requires_grad_(), lv.to(dt).requires_grad_()
        got = ops.gaussian_aggregate_kl(h_mu, h_lv)
        want = ops.gaussian_aggregate_kl(h_mu.detach().float(), h_lv.detach().float())
        assert got.dtype == torch.float32 and torch.equal(got, want)
        dmu, dlv = torch.autograd.grad(got.sum(), (h_mu, h_lv))
        assert dmu.dtype == dt and dlv.dtype == dt and torch.isfinite(dmu.float()).all()


@needs_ops
@pytest.mark.parametrize("D", [1, 4])
def test_gradcheck_and_opcheck(D):
    from torch.library import opcheck

    g = torch.Generator().manual_seed(D)
    mu = torch.randn(6, D, dtype=torch.float64, generator=g, requires_grad=True)
    lv = torch.randn(6, D, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(ops.gaussian_aggregate_kl, (mu, lv))
    assert torch.autograd.gradcheck(ops.composite_gaussian_aggregate_kl, (mu, lv))
    for dtype in (torch.float32, torch.float64):
        m, l = mu.detach().to(dtype), lv.detach().to(dtype)
        opcheck(torch.ops.jointvae.gaussian_aggregate_kl.default, (m.requires_grad_(), l))
        agg, moments = torch.ops.jointvae.gaussian_aggregate_kl(m.detach(), l)
        opcheck(torch.ops.jointvae.gaussian_aggregate_kl_backward.default,
                (torch.randn_like(agg), m.detach(), l, moments))


@needs_ops
def test_compiles_fullgraph():
    g = torch.Generator().manual_seed(2)
    mu, lv = torch.randn(8, 3, generator=g, requires_grad=True), torch.randn(8, 3, generator=g, requires_grad=True)
    f = torch.compile(lambda m, l: ops.gaussian_aggregate_kl(m, l).sum(), fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(f(mu, lv), (mu, lv))
    want = torch.autograd.grad(ops.gaussian_aggregate_kl(mu, lv).sum(), (mu, lv))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("fn", [ops.gaussian_aggregate_kl, ops.composite_gaussian_aggregate_kl])
def test_bad_inputs_name_the_argument(fn):
    mu, lv = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(TypeError, match="mu must be a torch.Tensor"):
        fn(mu.numpy(), lv)
    with pytest.raises(TypeError, match="logvar must be a torch.Tensor"):
        fn(mu, None)
    with pytest.raises(ValueError, match="mu must be 2-D"):
        fn(mu[0], lv)
    with pytest.raises(ValueError, match="logvar must be 2-D"):
        fn(mu, lv[None])
    with pytest.raises(ValueError, match="mu .* and logvar .* must have the same shape"):
        fn(mu, lv[:, :2])
    with pytest.raises(TypeError, match="share a dtype"):
        fn(mu, lv.double())
    with pytest.raises(TypeError, match="floating point"):
        fn(mu.long(), lv.long())
    with pytest.raises(ValueError, match="at least one row"):
        fn(mu[:0], lv[:0])


@needs_ops
def test_torch_check_guards_the_raw_ops():
    mu, lv = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="at least one row"):
        torch.ops.jointvae.gaussian_aggregate_kl(mu[:0], lv[:0])
    with pytest.raises(RuntimeError, match="logvar"):
        torch.ops.jointvae.gaussian_aggregate_kl(mu, lv[:, :2])
    agg, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu, lv)
    with pytest.raises(RuntimeError, match="grad_agg"):
        torch.ops.jointvae.gaussian_aggregate_kl_backward(torch.ones(2), mu, lv, moments)
    with pytest.raises(RuntimeError, match="moments"):
        torch.ops.jointvae.gaussian_aggregate_kl_backward(torch.ones(3), mu, lv, moments.float())
    with pytest.raises(RuntimeError, match="moments"):
        torch.ops.jointvae.gaussian_aggregate_kl_backward(torch.ones(3), mu, lv, moments[:1])
