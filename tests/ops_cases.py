"""Shared input generation and tolerances for the tests of jointvae_fast.ops (not a test module).

Tolerances (float32 op vs float64 reference on the *same* float32 inputs), derived from the
operation counts, each elementary function (exp, log, cos, expm1) being accurate to a few ulp
(eps32 = 2^-24 ~ 6e-8 relative). Measured worst err/bound over 300 hypothesis cases: z 0.16, y 0.016,
d logvar 0.08, d logits 0.003, kl_cont 0.03, kl_disc 0.035 (the bounds are worst-case, not fitted):
- z = mu + exp(logvar/2) eps: |err| <= 1e-6 (|mu| + |exp(logvar/2) eps|): a few roundings of the terms;
  relative to the terms, not to z, because z may cancel.
- y = softmax((l - max l + g) / tau): the exponent (l - max l + g)/tau of every non-negligible class
  carries an absolute error of a few ulp of (|l - max l| + |g|)/tau <= (88 tau + 40)/tau, so
  |err y| <= 2e-6 (1 + 40/tau) (at tau = 0.1: 8e-4; at tau = 1: 8e-5).
- kl_cont[d] (batch mean, accumulated in float64): |err| <= 2e-6 mean_b(1 + |logvar| + mu^2 + exp(logvar)).
- kl_disc[i]: |err| <= 2e-6 (1 + log K + mean_b |E_p[l - max l]|), the terms of log K - log S + E_p[a].
- gradients: the same bounds carried through the (linear) backward formulas, stated where used.
float64 inputs are computed in float64 and must agree to 1e-9 with the same bounds.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

import reference

EPS32 = 2.0**-24


@st.composite
def latent_cases(draw, max_b=512, max_d=64, max_vars=4, max_k=64):
    """A dict with float32 numpy inputs of the fused ops, hypothesis-drawn shapes and extremes."""
    B = draw(st.integers(1, max_b))
    D = draw(st.integers(0, max_d))
    dims = draw(st.lists(st.integers(2, max_k), min_size=0, max_size=max_vars))
    if D == 0 and not dims:
        D = 1
    tau = draw(st.sampled_from([0.1, 0.3, 0.67, 1.0, 2.5, 5.0]))
    logit_scale = draw(st.sampled_from([1.0, 10.0, 1e4]))
    logvar_scale = draw(st.sampled_from([1.0, 5.0, 30.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    ties = draw(st.booleans())
    rng = np.random.default_rng(seed)
    K = sum(dims)
    mu = (rng.standard_normal((B, D)) * 3).astype(np.float32)
    logvar = rng.uniform(-logvar_scale, logvar_scale, (B, D)).astype(np.float32)
    if D:
        logvar.flat[0] = logvar_scale  # the extreme itself
    logits = (rng.standard_normal((B, K)) * logit_scale).astype(np.float32)
    if ties and K:
        logits[:, : dims[0]] = np.round(logits[:, : dims[0]] / max(logit_scale, 1.0)) * logit_scale
    eps, u = reference.sample_latent_noise(seed, 7, B, D, dims)
    return dict(B=B, D=D, dims=dims, tau=tau, mu=mu, logvar=logvar, logits=logits,
                eps=eps.astype(np.float32), u=u.astype(np.float32), seed=seed)


def as_torch(case, dtype=torch.float32, strided=True):
    """(mu, logvar, logits) as column slices of one [B, 2D + K] tensor (the encoder's layout)."""
    mu, logvar, logits = case["mu"], case["logvar"], case["logits"]
    if not strided:
        return (torch.tensor(mu, dtype=dtype), torch.tensor(logvar, dtype=dtype), torch.tensor(logits, dtype=dtype))
    D = mu.shape[1]
    P = torch.tensor(np.concatenate([mu, logvar, logits], axis=1), dtype=dtype)
    return P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]


def z_scale(case):
    """|mu| + |exp(logvar/2) eps| in float64: the magnitude the z error is measured against."""
    mu, lv, eps = (case[k].astype(np.float64) for k in ("mu", "logvar", "eps"))
    return np.abs(mu) + np.abs(np.exp(lv / 2) * eps)


def y_atol(tau, rel=2e-6):
    return rel * (1.0 + 40.0 / tau)


def kl_cont_scale(case):
    mu, lv = case["mu"].astype(np.float64), case["logvar"].astype(np.float64)
    if mu.shape[1] == 0:
        return np.zeros(0)
    return np.mean(1 + np.abs(lv) + mu * mu + np.exp(lv), axis=0)


def kl_disc_scale(case):
    out, start = [], 0
    logits = case["logits"].astype(np.float64)
    for k in case["dims"]:
        a = logits[:, start : start + k] - logits[:, start : start + k].max(axis=1, keepdims=True)
        p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
        out.append(1 + math.log(k) + np.mean(np.abs((p * a).sum(axis=1))))
        start += k
    return np.array(out)


def assert_close(got, want, atol, what):
    got = got.detach().double().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want)
    bad = ~(err <= atol)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        at = np.broadcast_to(atol, err.shape).ravel()[i]
        raise AssertionError(f"{what}: {bad.sum()} entries off, first at flat index {i}: got {got.ravel()[i]!r}, "
                             f"want {want.ravel()[i]!r}, |err| {err.ravel()[i]:.3g} > atol {at:.3g}")


def aggregate_bounds(logits, dims, w):
    """Bounds of the float32 aggregate_kl (qbar [sum K], agg_kl [V], d logits [B, sum K] for upstream w [V]).

    Each float32 p = softmax carries a relative error of a few ulp of (1 + |a|), a = l - max l; qbar sums them in
    float64, so |err qbar_k| <= 2e-6 mean_b p (1 + |a|). A = sum_k qbar log(K qbar) moves by (1 + |m_k|) per unit
    of qbar_k, m = log(K qbar). The backward w/B p (m - E_p m) carries the error of p (relative to |m| + E_p|m|)
    and that of m (relative error of qbar_k, R_k = the bound above / qbar_k), with a factor 4 of headroom.
    Measured worst err/bound over 300 random float32 cases (B <= 512, K <= 64, logit scale 1 to 1e4), CPU twin
    and emulated CUDA alike: qbar 0.14, agg_kl 0.05, d logits 0.011.
    """
    logits = np.asarray(logits, np.float64)
    tol_q, tol_a, tol_d, start = [], [], [], 0
    for k, wv in zip(dims, w):
        a = logits[:, start : start + k] - logits[:, start : start + k].max(axis=1, keepdims=True)
        p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
        qbar = p.mean(axis=0)
        tq = 2e-6 * np.mean(p * (1 + np.abs(a)), axis=0)
        m = np.where(qbar > 0, np.log(k * np.where(qbar > 0, qbar, 1.0)), 0.0)
        rel_q = np.where(qbar > 0, tq / np.where(qbar > 0, qbar, 1.0), 0.0)
        e_abs_a = (p * np.abs(a)).sum(axis=1, keepdims=True)
        e_abs_m = (p * np.abs(m)).sum(axis=1, keepdims=True)
        d = p * (2e-6 * (1 + np.abs(a) + e_abs_a) * (1 + np.abs(m) + e_abs_m)
                 + rel_q + (p * rel_q).sum(axis=1, keepdims=True))
        tol_q.append(tq)
        tol_a.append(float(np.sum((1 + np.abs(m)) * tq)) + EPS32 * float(np.sum(qbar * np.abs(m))))
        tol_d.append(4 * abs(float(wv)) / logits.shape[0] * d)
        start += k
    cat = lambda xs, shape: np.concatenate(xs, axis=-1) if xs else np.zeros(shape)  # noqa: E731
    return cat(tol_q, 0), np.array(tol_a), cat(tol_d, (logits.shape[0], 0))


@st.composite
def gaussian_cases(draw, max_b=96, max_d=40):
    """float32 mu, logvar [B, D] for gaussian_aggregate_kl, with its extremes: logvar up to +-20 (the extreme
    itself in element 0), mu up to +-1e3 around a mean that may be large (cancellation in mu - m), and units
    whose rows are identical (s2 = exp(logvar), variance exactly 0) or differ by a few ulps of a large mu with
    logvar at its minimum (1 - 1/s2 large: the gradient's precision). Also `logits` [B, 0] (for as_torch)."""
    B = draw(st.integers(1, max_b))
    D = draw(st.integers(0, max_d))
    mu_scale = draw(st.sampled_from([0.1, 3.0, 1e3]))
    mu_shift = draw(st.sampled_from([0.0, 1e3, -1e3]))
    logvar_scale = draw(st.sampled_from([1.0, 5.0, 20.0]))
    special = draw(st.sampled_from(["none", "identical", "all_identical", "ulps"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mu = np.clip(mu_shift + rng.standard_normal((B, D)) * mu_scale, -1e3, 1e3).astype(np.float32)
    logvar = rng.uniform(-logvar_scale, logvar_scale, (B, D)).astype(np.float32)
    if D:
        logvar.flat[0] = logvar_scale * rng.choice([-1.0, 1.0])
    cols = np.arange(D) if special == "all_identical" else np.flatnonzero(rng.random(D) < 0.5)
    if special in ("identical", "all_identical"):
        mu[:, cols], logvar[:, cols] = mu[:1, cols], logvar[:1, cols]
    elif special == "ulps":
        ulp = np.spacing(np.abs(mu[:1, cols]))
        mu[:, cols] = mu[:1, cols] + rng.integers(-3, 4, (B, len(cols))) * ulp
        logvar[:, cols] = -logvar_scale + rng.uniform(0, 0.1, (B, len(cols))).astype(np.float32)
    return dict(B=B, D=D, mu=mu, logvar=logvar, logits=np.zeros((B, 0), np.float32), dims=[], seed=seed)


def gaussian_aggregate_bounds(mu, logvar, w, rel=2e-6, float_moments=False):
    """Bounds of gaussian_aggregate_kl: (tol_m [D], tol_s2 [D], tol_a [D], tol_dmu [B, D], tol_dlogvar [B, D]) for
    upstream w [D], `rel` the relative error of a few roundings of the inputs' dtype (2e-6 float32; 1e-8 of that
    for float64).

    The fused op sums mu - c, (mu - c)^2 (c = row 0's mu) and exp(logvar) (a few ulp) in float64: the variance's
    cancellation costs at most a factor B + 1 of double rounding (acc). float_moments: the composite, which takes
    the moments in the inputs' dtype (each sum a few roundings of its terms). A = (m^2 + s2 - 1 - log s2) / 2 moves
    by |m| per unit of m and |1 - 1/s2| / 2 per unit of s2, plus its own rounding. The backward w/B (m + k (mu - m)),
    w/B k exp(logvar) / 2 with k = 1 - 1/s2 carries a few roundings of its terms and the errors of m and s2
    (k moves by err_s2 / s2^2), with a factor 4 of headroom.
    Measured worst err/bound over 300 gaussian_cases, float32: fused A 0.029, d mu 0.025, d logvar 0.027;
    composite A 0.066, d mu 0.008, d logvar 0.028; float64 (rel 2e-14): A 0.036, d mu 0.004, d logvar 0.007.
    """
    mu, lv = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    B = max(mu.shape[0], 1)
    w = np.asarray(w, np.float64)
    acc = 4e-16 * (B + 1)
    e = np.exp(lv)
    m, s2 = reference.gaussian_aggregate_moments(mu, lv)
    dev, x = mu - m, mu - mu[:1]
    var, mean_e, mean_x = np.mean(dev * dev, axis=0), np.mean(e, axis=0), np.mean(np.abs(x), axis=0)
    err_m = acc * (np.abs(m) + mean_x)
    err_s2 = rel * mean_e + acc * (np.mean(x * x, axis=0) + mean_e)
    if float_moments:
        err_dm = 4 * rel * mean_x
        err_m = err_m + err_dm + rel * np.abs(m)
        err_s2 = err_s2 + rel * var + 2 * np.mean(np.abs(dev) * (rel * np.abs(x) + err_dm), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 1.0 - 1.0 / s2
        err_k = err_s2 / (s2 * s2)
    tol_a = np.abs(m) * err_m + 0.5 * np.abs(k) * err_s2 + rel * 0.5 * (m * m + s2 + 1 + np.abs(np.log(s2)))
    scale = np.abs(w) / B
    tol_dmu = 4 * scale * (rel * (np.abs(m) + np.abs(k) * np.abs(dev)) + (1 + np.abs(k)) * err_m + np.abs(dev) * err_k)
    tol_dlv = 4 * scale * 0.5 * e * (rel * np.abs(k) + err_k)
    return err_m, err_s2, tol_a, tol_dmu, tol_dlv
