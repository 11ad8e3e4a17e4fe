"""The fused ops (CPU twin) against the NumPy reference: forward and backward, explicit noise.

Tolerances are derived in tests/ops_cases.py (float32 vs float64 reference on the same inputs).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast import ops
from tests.ops_cases import (
    as_torch,
    assert_close,
    kl_cont_scale,
    kl_disc_scale,
    latent_cases,
    y_atol,
    z_scale,
)

pytestmark = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")


def _ref_latent(case, training=True):
    return reference.sample_latent(case["mu"], case["logvar"], case["logits"], case["dims"], case["tau"],
                                   case["eps"], case["u"], training=training)


def _check_latent(case, got, training=True, rel=1.0):
    D = case["D"]
    want = _ref_latent(case, training)
    zs = z_scale(case) if training else np.abs(case["mu"].astype(np.float64))
    assert_close(got[:, :D], want[:, :D], rel * 1e-6 * zs + 1e-30, "z")
    assert_close(got[:, D:], want[:, D:], rel * y_atol(case["tau"]), "y")


@given(latent_cases(), st.sampled_from(["fused", "composite"]))
def test_sample_latent_forward_backward_float32(case, which):
    fn = ops.sample_latent if which == "fused" else ops.composite_sample_latent
    mu, lv, lg = (t.requires_grad_() for t in as_torch(case, strided=False))
    noise = (torch.from_numpy(case["eps"]), torch.from_numpy(case["u"]))
    latent = fn(mu, lv, lg, case["dims"], case["tau"], noise=noise)
    assert latent.dtype == torch.float32 and latent.shape == (case["B"], case["D"] + sum(case["dims"]))
    # the composite computes log_softmax + g without the max shift folded in: allow it 4x the fused bound
    _check_latent(case, latent, rel=1.0 if which == "fused" else 4.0)
    g = np.random.default_rng(case["seed"] + 1).standard_normal(tuple(latent.shape)).astype(np.float32)
    dmu, dlv, dl = torch.autograd.grad(latent, (mu, lv, lg), torch.from_numpy(g), allow_unused=True)
    wmu, wlv, wl = reference.sample_latent_vjp(case["mu"], case["logvar"], case["logits"], case["dims"], case["tau"],
                                               case["eps"], case["u"], g)
    D, tau = case["D"], case["tau"]
    if D:
        assert_close(dmu, wmu, 1e-7 * np.abs(g[:, :D]), "d mu")
        # d logvar = g/2 exp(logvar/2) eps: relative to |g| |exp(logvar/2) eps|
        sig = np.abs(np.exp(case["logvar"].astype(np.float64) / 2) * case["eps"])
        assert_close(dlv, wlv, 1e-6 * np.abs(g[:, :D]) * sig + 1e-30, "d logvar")
    if case["dims"]:
        # y (g - <g, y>) / tau: the y error (y_atol) times |g| + |<g, y>| <= 2 max|g|, over tau
        gmax = np.abs(g[:, D:]).max(axis=1, keepdims=True)
        f = 1.0 if which == "fused" else 4.0
        assert_close(dl, wl, f * y_atol(tau) * 4 * gmax / tau, "d logits")


@settings(max_examples=15)
@given(latent_cases(max_b=64, max_d=16, max_k=16))
def test_sample_latent_float64_matches_reference_tightly(case):
    mu, lv, lg = (t.requires_grad_() for t in as_torch(case, dtype=torch.float64))
    noise = (torch.from_numpy(case["eps"]).double(), torch.from_numpy(case["u"]).double())
    latent = ops.sample_latent(mu, lv, lg, case["dims"], case["tau"], noise=noise)
    assert latent.dtype == torch.float64
    _check_latent(case, latent, rel=1e-8)
    g = np.random.default_rng(case["seed"]).standard_normal(tuple(latent.shape))
    got = torch.autograd.grad(latent, (mu, lv, lg), torch.from_numpy(g), allow_unused=True)
    want = reference.sample_latent_vjp(case["mu"], case["logvar"], case["logits"], case["dims"], case["tau"],
                                       case["eps"], case["u"], g)
    for name, a, b in zip(("mu", "logvar", "logits"), got, want):
        if b.size:
            assert_close(a, b, 1e-9 * (1 + np.abs(b)) * (1 + 1 / case["tau"]), f"d {name} (float64)")


@given(latent_cases())
def test_sample_latent_eval_mode(case):
    mu, lv, lg = as_torch(case)
    got = ops.sample_latent(mu, lv, lg, case["dims"], case["tau"], training=False)
    want = _ref_latent(case, training=False)
    np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
    comp = ops.composite_sample_latent(mu, lv, lg, case["dims"], case["tau"], training=False)
    np.testing.assert_array_equal(comp.numpy(), got.numpy())


def _ref_kl(case, c_cont, c_disc, g_cont, g_disc):
    kc = reference.kl_normal(case["mu"], case["logvar"]) if case["D"] else np.zeros(0)
    kd = reference.kl_categorical(case["logits"], case["dims"]) if case["dims"] else np.zeros(0)
    loss = g_cont * abs(kc.sum() - c_cont) + g_disc * abs(kd.sum() - c_disc)
    return loss, kc, kd


@given(latent_cases(), st.floats(0, 50), st.floats(0, 10), st.floats(0, 100), st.floats(0, 100),
       st.sampled_from(["fused", "composite"]))
def test_kl_capacity_loss_forward_backward_float32(case, c_cont, c_disc, g_cont, g_disc, which):
    fn = ops.kl_capacity_loss if which == "fused" else ops.composite_kl_capacity_loss
    mu, lv, lg = (t.requires_grad_() for t in as_torch(case, strided=False))
    loss, kc, kd = fn(mu, lv, lg, case["dims"], c_cont, c_disc, g_cont, g_disc)
    wl, wkc, wkd = _ref_kl(case, c_cont, c_disc, g_cont, g_disc)
    sc, sd = kl_cont_scale(case), kl_disc_scale(case)
    f = 1.0 if which == "fused" else 8.0  # the composite accumulates the batch mean in float32
    tol_c, tol_d = f * 2e-6 * sc, f * 2e-6 * sd
    assert_close(kc, wkc, tol_c, "kl_cont")
    assert_close(kd, wkd, tol_d, "kl_disc")
    assert_close(loss, wl, g_cont * tol_c.sum() + g_disc * tol_d.sum() + 1e-6 * abs(wl), "loss")
    # backward of loss + <a, kl_cont> + <b, kl_disc>, against the reference VJPs
    rng = np.random.default_rng(case["seed"] + 2)
    a = rng.standard_normal(case["D"]).astype(np.float32).astype(np.float64)
    b = rng.standard_normal(len(case["dims"])).astype(np.float32).astype(np.float64)
    total = loss + (kc * torch.from_numpy(a).float()).sum() + (kd * torch.from_numpy(b).float()).sum()
    got = torch.autograd.grad(total, (mu, lv, lg), allow_unused=True)
    # near |sum kl - c| = 0 the float32 sign may differ from the float64 one: skip those cases' sign
    wc = g_cont * np.sign(wkc.sum() - c_cont) + a
    wd = g_disc * np.sign(wkd.sum() - c_disc) + b
    if abs(wkc.sum() - c_cont) <= 2 * tol_c.sum() + 1e-6 or abs(wkd.sum() - c_disc) <= 2 * tol_d.sum() + 1e-6:
        return
    B = case["B"]
    wc_mag, wd_mag = g_cont + np.abs(a), g_disc + np.abs(b)  # magnitudes of the float32 weight sums
    if case["D"]:
        wmu, wlv = reference.kl_normal_vjp(case["mu"], case["logvar"], wc)
        mu64, lv64 = case["mu"].astype(np.float64), case["logvar"].astype(np.float64)
        assert_close(got[0], wmu, 1e-6 * wc_mag / B * np.abs(mu64) + 1e-30, "d mu")
        assert_close(got[1], wlv, 1e-6 * wc_mag / B * (1 + np.exp(lv64)), "d logvar")
    if case["dims"]:
        (wlg,) = reference.kl_categorical_vjp(case["logits"], case["dims"], wd)
        # w/B p (a - E_p a): a few ulp of |a| + |E_p a| for the classes with p not negligible
        per_col = np.concatenate([np.full(k, w) * s for k, w, s in zip(case["dims"], wd_mag, sd)])
        assert_close(got[2], wlg, f * 1e-5 * per_col / B + 1e-30, "d logits")


@given(latent_cases(max_b=16, max_d=8, max_k=8))
def test_strided_and_contiguous_inputs_agree(case):
    noise = (torch.from_numpy(case["eps"]), torch.from_numpy(case["u"]))
    a = ops.sample_latent(*as_torch(case, strided=True), case["dims"], case["tau"], noise=noise)
    b = ops.sample_latent(*as_torch(case, strided=False), case["dims"], case["tau"], noise=noise)
    assert torch.equal(a, b)
    # transposed (column stride != 1) inputs are copied, with the same result
    mu, lv, lg = (t.t().contiguous().t() for t in as_torch(case, strided=False))
    c = ops.sample_latent(mu, lv, lg, case["dims"], case["tau"], noise=noise)
    assert torch.equal(a, c)
    ka = ops.kl_capacity_loss(*as_torch(case, strided=True), case["dims"], 1.0, 1.0, 2.0, 3.0)
    kb = ops.kl_capacity_loss(mu, lv, lg, case["dims"], 1.0, 1.0, 2.0, 3.0)
    for x, y in zip(ka, kb):
        assert torch.equal(x, y)


def test_large_batch_parallel_path_matches_reference():
    """B = 65536 splits rows across threads (and the KL into fixed 1024-row chunks)."""
    rng = np.random.default_rng(3)
    B, D, dims = 65536, 10, [10]
    case = dict(B=B, D=D, dims=dims, tau=0.67, seed=3,
                mu=rng.standard_normal((B, D)).astype(np.float32),
                logvar=rng.uniform(-3, 3, (B, D)).astype(np.float32),
                logits=rng.standard_normal((B, 10)).astype(np.float32))
    eps, u = reference.sample_latent_noise(3, 0, B, D, dims)
    case["eps"], case["u"] = eps.astype(np.float32), u
    mu, lv, lg = as_torch(case)
    got = ops.sample_latent(mu, lv, lg, dims, 0.67, noise=(torch.from_numpy(case["eps"]), torch.from_numpy(u)))
    _check_latent(case, got)
    loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, dims, 5.0, 1.0, 30.0, 30.0)
    wl, wkc, wkd = _ref_kl(case, 5.0, 1.0, 30.0, 30.0)
    assert_close(kc, wkc, 2e-6 * kl_cont_scale(case), "kl_cont")
    assert_close(kd, wkd, 2e-6 * kl_disc_scale(case), "kl_disc")


def test_nan_in_nan_out():
    mu = torch.zeros(3, 2)
    lv = torch.zeros(3, 2)
    lg = torch.zeros(3, 4)
    mu[0, 0] = float("nan")
    lg[1, 1] = float("nan")
    for training in (True, False):
        out = ops.sample_latent(mu, lv, lg, [2, 2], 0.5, training=training)
        assert torch.isnan(out[0, 0]) and not torch.isnan(out[0, 1:]).any()
        assert torch.isnan(out[1, 2:4]).all() and not torch.isnan(out[1, 4:]).any()
        assert not torch.isnan(out[2]).any()
    loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, [2, 2], 1.0, 1.0, 1.0, 1.0)
    assert torch.isnan(loss) and torch.isnan(kc[0]) and not torch.isnan(kc[1])
    assert torch.isnan(kd[0]) and not torch.isnan(kd[1])
    mu.requires_grad_()
    loss, _, _ = ops.kl_capacity_loss(mu, lv, lg, [2, 2], 1.0, 1.0, 1.0, 1.0)
    (g,) = torch.autograd.grad(loss, mu)
    assert torch.isnan(g).any()


def test_extremes_stay_finite():
    mu = torch.tensor([[0.0, 1e3]])
    lv = torch.tensor([[30.0, -30.0]])
    lg = torch.tensor([[1e4, -1e4, 0.0]])
    z = ops.sample_latent(mu, lv, lg, [3], 0.1)
    assert torch.isfinite(z).all()
    assert torch.allclose(z[0, 2:], torch.tensor([1.0, 0.0, 0.0]))
    loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, [3], 0.0, 0.0, 1.0, 1.0)
    assert torch.isfinite(kc).all() and torch.isfinite(kd).all()
    assert abs(kd.item() - math.log(3)) < 1e-5
