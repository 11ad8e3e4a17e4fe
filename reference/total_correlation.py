"""Total correlation of the joint posterior and Chen et al.'s (2018) decomposition of the KL, on one batch.

The aggregate posterior of a dataset of N points is q(z, c) = (1/N) sum_j q(z, c | x_j). Per batch of B rows
with posterior parameters mu, logvar [B, D], logits [B, sum K] (pi_m,i = softmax of block i), and the latent
each row sampled, z [B, D] and y [B, sum K] (y_n,i one-hot or its Concrete relaxation):
  a[n, m, d] = log N(z_n,d; mu_m,d, exp(logvar_m,d))                      log q(z_n,d | x_m)
  b[n, m, i] = sum_k y_n,i,k log pi_m,i,k                                 log q(c_n,i | x_m) when y is one-hot
  s[n, m]    = sum_d a[n, m, d] + sum_i b[n, m, i]                        log q(z_n, c_n | x_m)
tc_pairwise, with log importance weights W [B, B] (log_importance_weights):
  log_q_joint[n]         = LSE_m (W[n, m] + s[n, m])                      ~ log q(z_n, c_n)
  log_q_marginals[n, d]  = LSE_m (W[n, m] + a[n, m, d])                   ~ log q(z_n,d)          (d < D)
  log_q_marginals[n, D+i] = LSE_m (W[n, m] + b[n, m, i])                  ~ log q(c_n,i)
The decomposition (tc_decomposition), means over the rows n, with log q(z_n, c_n | x_n) = s[n, n]
(log_posterior) and log p the prior per dimension, N(0, 1) and uniform(K_i) (log_prior):
  index_code_mi = mean_n [s[n, n] - log_q_joint[n]]
  tc            = mean_n [log_q_joint[n] - sum_j log_q_marginals[n, j]]
  dim_kl        = mean_n sum_j [log_q_marginals[n, j] - log_prior[n, j]]
Their sum is mean_n [log q(z_n, c_n | x_n) - log p(z_n, c_n)], a one-sample estimate of the batch-mean KL,
whatever the weights. The continuous-only variant is the same with no discrete part (logits, y [B, 0]).

Estimators (W, Chen et al. 2018, Appendix C):
  "mws" minibatch weighted sampling: W = -log(N B) everywhere (the paper's lower bound on q; with the whole
        dataset as the batch every log-density is its exact value minus log N, so tc is offset by (J - 1) log N,
        J = D + V the number of factors).
  "mss" minibatch stratified sampling: W[n, n] = 1/N, W[n, (n + 1) mod B] = (N - B + 1) / (N (B - 1)), the other
        B - 2 entries 1/(B - 1) (log of). The N - 1 points other than n are split into B - 2 strata of N/(B - 1)
        points and one of (N - B + 1)/(B - 1), each represented by one batch member (weight stratum size / N),
        so each row sums to 1 and, for a uniformly drawn batch, sum_m W[n, m] q(z | x_m) is unbiased for q(z).
        B = 1: W = [[-log N]] (no other member).

VJPs follow the package convention: tc_pairwise_vjp(..., grad_joint [B], grad_marginals [B, D + V]) ->
(d_z, d_mu, d_logvar, d_y, d_logits); log_weights is a constant. With G = grad_joint[n] P[n, m] +
grad_marginals[n, d] R[n, m, d] (P, R the softmaxes over m of the two LSEs) and r = (z_n,d - mu_m,d)
exp(-logvar_m,d / 2):
  d_z[n, d] = -sum_m G r exp(-logvar_m,d / 2);   d_mu[m, d] = sum_n G r exp(-logvar_m,d / 2);
  d_logvar[m, d] = sum_n G (r^2 - 1) / 2;        with H the discrete analogue of G:
  d_y[n, i, k] = sum_m H log pi_m,i,k;           d_log_pi[m, i, k] = sum_n H y_n,i,k, then log_softmax's VJP.
"""
import math

import numpy as np

from .array_namespace import array_namespace
from .categorical import _logits, block_bounds, log_softmax_blocks
from .validation import as_float_array, check_same_shape

LOG_2PI = math.log(2.0 * math.pi)
ESTIMATORS = ("mws", "mss")


def log_importance_weights(batch, dataset_size, estimator="mss", xp=None):
    """W [B, B], the log weights of the estimator (module docstring); 1 <= B <= N."""
    xp = np if xp is None else xp
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    b, n = int(batch), int(dataset_size)
    if b < 1 or n < b:
        raise ValueError(f"need 1 <= batch <= dataset_size, got batch {batch!r}, dataset_size {dataset_size!r}")
    if estimator == "mws":
        return xp.full((b, b), -math.log(n * b))
    w = xp.full((b, b), 1.0 / (b - 1) if b > 1 else 1.0)
    rows = xp.arange(b)
    w[rows, (rows + 1) % b] = (n - b + 1) / (n * (b - 1)) if b > 1 else 1.0
    w[rows, rows] = 1.0 / n
    return xp.log(w)


def _tc_inputs(z, mu, logvar, y, logits, disc_dims, xp):
    mu = as_float_array("mu", mu, xp, ndim=2)
    logvar = as_float_array("logvar", logvar, xp, ndim=2)
    z = as_float_array("z", z, xp, ndim=2)
    check_same_shape("logvar", logvar, "mu", mu)
    check_same_shape("z", z, "mu", mu)
    logits, dims = _logits(logits, disc_dims, xp)
    y = as_float_array("y", y, xp, ndim=2)
    check_same_shape("y", y, "logits", logits)
    if logits.shape[0] != mu.shape[0]:
        raise ValueError(f"logits must have batch size {mu.shape[0]}, got shape {tuple(logits.shape)}")
    return z, mu, logvar, y, logits, dims


def _pairwise(z, mu, logvar, y, logits, dims, xp):
    """(a [B, B, D], b [B, B, V], r [B, B, D], log_pi [B, sum K]) of the module docstring."""
    inv_sd = xp.exp(-0.5 * logvar)
    r = (z[:, None, :] - mu[None, :, :]) * inv_sd[None, :, :]
    a = -0.5 * (LOG_2PI + logvar[None, :, :] + r * r)
    log_pi = log_softmax_blocks(logits, dims, xp)
    b = xp.stack([y[:, lo:hi] @ log_pi[:, lo:hi].T for lo, hi in block_bounds(dims)], axis=2) if dims \
        else xp.zeros((z.shape[0], z.shape[0], 0))
    return a, b, r, log_pi


def _log_weights(log_weights, batch, xp):
    w = as_float_array("log_weights", log_weights, xp, ndim=2)
    if tuple(w.shape) != (batch, batch):
        raise ValueError(f"log_weights must have shape {(batch, batch)}, got shape {tuple(w.shape)}")
    return w


def _lse(x, xp, axis):
    """log sum exp over `axis` and the softmax along it (rows of -inf give -inf and zeros)."""
    top = xp.max(x, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)
    e = xp.exp(x - top)
    s = xp.sum(e, axis=axis, keepdims=True)
    with_zero = xp.where(s > 0, s, 1.0)
    lse = xp.where(s > 0, xp.log(with_zero) + top, -xp.inf)
    return xp.squeeze(lse, axis=axis), e / with_zero


def _estimates(z, mu, logvar, y, logits, dims, log_weights, xp):
    a, b, r, log_pi = _pairwise(z, mu, logvar, y, logits, dims, xp)
    w = _log_weights(log_weights, z.shape[0], xp)
    joint, p = _lse(w + xp.sum(a, axis=2) + xp.sum(b, axis=2), xp, axis=1)
    marg, resp = _lse(w[:, :, None] + xp.concatenate([a, b], axis=2), xp, axis=1)
    return joint, marg, p, resp, r, log_pi


def tc_pairwise(z, mu, logvar, y, logits, disc_dims, log_weights):
    """(log_q_joint [B], log_q_marginals [B, D + V]) (module docstring). z, mu, logvar [B, D]; y, logits
    [B, sum K]; log_weights [B, B]."""
    xp = array_namespace(z, mu, logvar, y, logits, log_weights)
    z, mu, logvar, y, logits, dims = _tc_inputs(z, mu, logvar, y, logits, disc_dims, xp)
    joint, marg, _, _, _, _ = _estimates(z, mu, logvar, y, logits, dims, log_weights, xp)
    return joint, marg


def tc_pairwise_vjp(z, mu, logvar, y, logits, disc_dims, log_weights, grad_joint, grad_marginals):
    """Gradient of <grad_joint, log_q_joint> + <grad_marginals, log_q_marginals> ->
    (d_z [B, D], d_mu [B, D], d_logvar [B, D], d_y [B, sum K], d_logits [B, sum K]) (module docstring)."""
    xp = array_namespace(z, mu, logvar, y, logits, log_weights, grad_joint, grad_marginals)
    z, mu, logvar, y, logits, dims = _tc_inputs(z, mu, logvar, y, logits, disc_dims, xp)
    batch, d = mu.shape
    gj = as_float_array("grad_joint", grad_joint, xp, ndim=1)
    gm = as_float_array("grad_marginals", grad_marginals, xp, ndim=2)
    if gj.shape[0] != batch or tuple(gm.shape) != (batch, d + len(dims)):
        raise ValueError(f"grad_joint must have shape ({batch},) and grad_marginals {(batch, d + len(dims))}, "
                         f"got {tuple(gj.shape)} and {tuple(gm.shape)}")
    _, _, p, resp, r, log_pi = _estimates(z, mu, logvar, y, logits, dims, log_weights, xp)
    g = gj[:, None, None] * p[:, :, None] + gm[:, None, :] * resp  # [B, B, D + V]: d/da and d/db
    ga, gb = g[:, :, :d], g[:, :, d:]
    inv_sd = xp.exp(-0.5 * logvar)
    d_z = -xp.sum(ga * r * inv_sd[None, :, :], axis=1)
    d_mu = xp.sum(ga * r, axis=0) * inv_sd
    d_logvar = 0.5 * xp.sum(ga * (r * r - 1.0), axis=0)
    d_y, d_logits = xp.zeros_like(y), xp.zeros_like(logits)
    for i, (lo, hi) in enumerate(block_bounds(dims)):
        d_y[:, lo:hi] = gb[:, :, i] @ log_pi[:, lo:hi]
        d_lp = gb[:, :, i].T @ y[:, lo:hi]
        d_logits[:, lo:hi] = d_lp - xp.exp(log_pi[:, lo:hi]) * xp.sum(d_lp, axis=1, keepdims=True)
    return d_z, d_mu, d_logvar, d_y, d_logits


def log_posterior(z, mu, logvar, y, logits, disc_dims):
    """log q(z_n, c_n | x_n) = sum_d a[n, n, d] + sum_i b[n, n, i]: [B]."""
    xp = array_namespace(z, mu, logvar, y, logits)
    z, mu, logvar, y, logits, dims = _tc_inputs(z, mu, logvar, y, logits, disc_dims, xp)
    r = (z - mu) * xp.exp(-0.5 * logvar)
    return xp.sum(-0.5 * (LOG_2PI + logvar + r * r), axis=1) + xp.sum(y * log_softmax_blocks(logits, dims, xp), axis=1)


def log_prior(z, y, disc_dims):
    """log p per dimension: [B, D + V] = [-(log 2 pi + z^2)/2 per unit, -log K_i sum_k y_n,i,k per variable]."""
    xp = array_namespace(z, y)
    z = as_float_array("z", z, xp, ndim=2)
    y, dims = _logits(y, disc_dims, xp)
    disc = [-math.log(hi - lo) * xp.sum(y[:, lo:hi], axis=1) for lo, hi in block_bounds(dims)]
    return xp.concatenate([-0.5 * (LOG_2PI + z * z)] + [c[:, None] for c in disc], axis=1)


def tc_decomposition(log_q_joint, log_q_marginals, log_posterior_, log_prior_):
    """dict(index_code_mi, tc, dim_kl) (module docstring): [B], [B, J], [B], [B, J] -> floats."""
    xp = array_namespace(log_q_joint, log_q_marginals, log_posterior_, log_prior_)
    joint = as_float_array("log_q_joint", log_q_joint, xp, ndim=1)
    marg = as_float_array("log_q_marginals", log_q_marginals, xp, ndim=2)
    post = as_float_array("log_posterior", log_posterior_, xp, ndim=1)
    prior = as_float_array("log_prior", log_prior_, xp, ndim=2)
    check_same_shape("log_prior", prior, "log_q_marginals", marg)
    return {"index_code_mi": float(xp.mean(post - joint)), "tc": float(xp.mean(joint - xp.sum(marg, axis=1))),
            "dim_kl": float(xp.mean(xp.sum(marg - prior, axis=1)))}


def total_correlation(z, mu, logvar, y, logits, disc_dims, dataset_size, estimator="mss"):
    """tc_decomposition of one batch with the estimator's weights for a dataset of `dataset_size` points."""
    xp = array_namespace(z, mu, logvar, y, logits)
    w = log_importance_weights(xp.asarray(z).shape[0], dataset_size, estimator, xp)
    joint, marg = tc_pairwise(z, mu, logvar, y, logits, disc_dims, w)
    return tc_decomposition(joint, marg, log_posterior(z, mu, logvar, y, logits, disc_dims),
                            log_prior(z, y, disc_dims))


def total_correlation_vjp(z, mu, logvar, y, logits, disc_dims, dataset_size, grad=1.0, estimator="mss"):
    """Gradient of grad * total_correlation(...)["tc"] -> (d_z, d_mu, d_logvar, d_y, d_logits)."""
    xp = array_namespace(z, mu, logvar, y, logits)
    batch, d = xp.asarray(mu).shape
    v = len(disc_dims or ())
    w = log_importance_weights(batch, dataset_size, estimator, xp)
    g = float(grad) / batch
    return tc_pairwise_vjp(z, mu, logvar, y, logits, disc_dims, w, xp.full(batch, g), xp.full((batch, d + v), -g))
