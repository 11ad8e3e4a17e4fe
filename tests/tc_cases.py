"""Inputs and error bounds for ops.tc_pairwise (fused op and composite twin) -- not a test module.

Bounds (an implementation in precision eps on inputs exactly representable in it, against the float64 reference
on the same inputs), first-order in eps except where the LSE's responsibilities are bounded in log space:
- each term of the logsumexps carries an absolute error of at most
      E_a[n,m,d] = 16 eps (2 + |logvar_m,d| + r^2)           a = -(log 2 pi + logvar + r^2)/2, r = (z - mu) e^{-lv/2}
      E_b[n,m,i] = sum_k y_k (4 + K_i) eps (1 + |log pi_k| + log K_i)       b = <y, log_softmax(logits)>
  and a sum of J terms J eps times their magnitudes; a value below the precision's smallest normal may flush to 0;
- an LSE over m of x_m + e_m (|e_m| <= E_m) moves by at most max(L+, -L-), L+- = log sum_m P_m exp(+-E_m),
  P the softmax over m (float64 reference), plus rounding 4 eps (|LSE| + B);
- a responsibility P' = exp(x' - LSE') lies in [P exp(-E - t), min(1, P exp(E + t))], t the LSE's bound;
- the gradients: G = g_joint P + g_marginal R (d/da and d/db) carries g |dP| + g |dR|, and each backward
  formula of reference/total_correlation.py adds the error of its coefficient ((8 + B) eps relative).
Measured worst err/bound: tests/ops/test_tc_pairwise.py's docstring.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import reference

EPS32 = 2.0**-24
EPS64 = 2.0**-53


@st.composite
def tc_cases(draw, max_b=48, max_d=12, max_vars=3, max_k=10, min_b=1):
    """float32 numpy inputs of tc_pairwise with their extremes: logvar in [-10, 5] (the extremes themselves in
    element 0 and 1), |mu| up to 1e3, logits up to +-1e4, relaxed or one-hot y, both estimators' weights."""
    B = draw(st.integers(min_b, max_b))
    D = draw(st.integers(0, max_d))
    dims = draw(st.lists(st.integers(2, max_k), min_size=0, max_size=max_vars))
    mu_scale = draw(st.sampled_from([0.3, 3.0, 1e3]))
    logit_scale = draw(st.sampled_from([1.0, 5.0, 1e4]))
    hard = draw(st.booleans())
    estimator = draw(st.sampled_from(reference.TC_ESTIMATORS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    mu = f32(rng.standard_normal((B, D)) * mu_scale)
    logvar = f32(rng.uniform(-10.0, 5.0, (B, D)))
    logvar.flat[:2] = [-10.0, 5.0][: logvar.size]
    z = f32(mu + np.exp(logvar / 2) * rng.standard_normal((B, D)))
    logits = f32(rng.standard_normal((B, sum(dims))) * logit_scale)
    if hard:
        y = reference.one_hot_argmax(logits + rng.gumbel(size=logits.shape), dims)
    else:
        y = reference.gumbel_softmax(logits, rng.uniform(0.01, 0.99, logits.shape), 0.67, dims)
    w = f32(reference.log_importance_weights(B, B + int(rng.integers(0, 10**5)), estimator))
    return dict(B=B, D=D, dims=dims, z=z, mu=mu, logvar=logvar, y=f32(y), logits=logits, log_weights=w,
                grad_joint=f32(rng.standard_normal(B)), grad_marginals=f32(rng.standard_normal((B, D + len(dims)))),
                seed=seed)


def _lse_bound(x, err, axis):
    """(t, log P): the bound of an LSE over `axis` whose terms x carry errors <= err, and the log-softmax."""
    top = np.max(x, axis=axis, keepdims=True)
    lse = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    log_p = x - lse
    hi = np.log(np.sum(np.exp(log_p + err), axis=axis, keepdims=True))
    lo = np.log(np.sum(np.exp(log_p - err), axis=axis, keepdims=True))
    return np.maximum(hi, -lo), log_p, lse


def _resp_err(log_p, err, t, tiny):
    """|P' - P| for P' in [P exp(-err - t), min(1, P exp(err + t))], or flushed to 0 below `tiny`."""
    p = np.exp(log_p)
    return np.maximum(np.exp(np.minimum(log_p + err + t, 0.0)) - p, p - np.exp(log_p - err - t)) + tiny


def tc_pairwise_bounds(case, eps):
    """Bounds of (log_q_joint [B], log_q_marginals [B, J], d_z, d_mu, d_logvar, d_y, d_logits) for `case`.

    Values below the precision's smallest normal number (a responsibility or a softmax probability) may be
    flushed to 0: `tiny` of that precision is added to their error."""
    tiny = float(np.finfo(np.float32 if eps >= EPS32 else np.float64).tiny)
    c = {k: np.asarray(case[k], np.float64) for k in ("z", "mu", "logvar", "y", "logits", "log_weights",
                                                       "grad_joint", "grad_marginals")}
    dims, B, D = case["dims"], case["B"], case["D"]
    z, mu, lv, y, w = c["z"], c["mu"], c["logvar"], c["y"], c["log_weights"]
    inv_sd = np.exp(-0.5 * lv)
    r = (z[:, None, :] - mu[None, :, :]) * inv_sd[None, :, :]
    a = -0.5 * (math.log(2 * math.pi) + lv[None, :, :] + r * r)
    err_a = 16 * eps * (2 + np.abs(lv)[None, :, :] + r * r)
    log_pi = reference.log_softmax_blocks(c["logits"], dims, np)
    bounds = np.cumsum([0] + list(dims))
    blocks = [(bounds[i], bounds[i + 1], k) for i, k in enumerate(dims)]
    err_lp = np.concatenate([4 * eps * (1 + np.abs(log_pi[:, lo:hi]) + math.log(k)) for lo, hi, k in blocks], 1) \
        if dims else np.zeros((B, 0))
    b = np.stack([y[:, lo:hi] @ log_pi[:, lo:hi].T for lo, hi, _ in blocks], 2) if dims else np.zeros((B, B, 0))
    err_b = np.stack([(4 + k) * eps * (y[:, lo:hi] @ (1 + np.abs(log_pi[:, lo:hi]) + math.log(k)).T)
                      for lo, hi, k in blocks], 2) if dims else np.zeros((B, B, 0))
    terms, errs = np.concatenate([a, b], 2), np.concatenate([err_a, err_b], 2)
    j = D + len(dims)
    x_joint = w + terms.sum(2)
    e_joint = errs.sum(2) + (j + 1) * eps * (np.abs(w) + np.abs(terms).sum(2))
    t_joint, log_p, lse_j = _lse_bound(x_joint, e_joint, axis=1)
    x_marg = w[:, :, None] + terms
    e_marg = errs + 2 * eps * (np.abs(w)[:, :, None] + np.abs(terms))
    t_marg, log_r, lse_m = _lse_bound(x_marg, e_marg, axis=1)
    tol_joint = t_joint[:, 0] + 4 * eps * (np.abs(lse_j[:, 0]) + B)
    tol_marg = t_marg[:, 0, :] + 4 * eps * (np.abs(lse_m[:, 0, :]) + B)
    gj, gm = c["grad_joint"], c["grad_marginals"]
    p, resp = np.exp(log_p), np.exp(log_r)
    g = np.abs(gj[:, None, None] * p[:, :, None] + gm[:, None, :] * resp)
    dg = (np.abs(gj)[:, None, None] * _resp_err(log_p, e_joint, t_joint, tiny)[:, :, None]
          + np.abs(gm)[:, None, :] * _resp_err(log_r, e_marg, t_marg, tiny) + 2 * eps * g)
    rel = (8 + B) * eps
    ga, dga, gb, dgb = g[:, :, :D], dg[:, :, :D], g[:, :, D:], dg[:, :, D:]
    coef = np.abs(r) * inv_sd[None, :, :]
    tol_z = np.sum(coef * (dga + rel * ga), axis=1)
    tol_mu = np.sum(coef * (dga + rel * ga), axis=0)
    tol_lv = np.sum(0.5 * np.abs(r * r - 1) * dga + 0.5 * (r * r + 1) * rel * ga, axis=0)
    tol_y, tol_l = np.zeros_like(y), np.zeros_like(y)
    for i, (lo, hi, k) in enumerate(blocks):
        lp, elp, yb = log_pi[:, lo:hi], err_lp[:, lo:hi], y[:, lo:hi]
        tol_y[:, lo:hi] = dgb[:, :, i] @ np.abs(lp) + gb[:, :, i] @ (elp + rel * np.abs(lp))
        d_lp = np.abs(gb[:, :, i].T @ yb)
        e_dlp = (dgb[:, :, i] + rel * gb[:, :, i]).T @ yb
        pb = np.exp(lp)
        tol_l[:, lo:hi] = (e_dlp + pb * e_dlp.sum(1, keepdims=True) + (k + 4) * eps * (d_lp + pb * d_lp.sum(1, keepdims=True))
                           + (pb * (elp + eps) + tiny) * d_lp.sum(1, keepdims=True))
    return tol_joint, tol_marg, tol_z, tol_mu, tol_lv, tol_y, tol_l
