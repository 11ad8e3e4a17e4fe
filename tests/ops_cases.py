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
