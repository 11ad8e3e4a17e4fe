"""The discrete part of the latent: Gumbel-softmax samples, KL to the uniform, eval one-hots.

Discrete variables are packed side by side: logits [B, sum(disc_dims)], variable i owns
columns [sum(disc_dims[:i]), sum(disc_dims[:i+1])). Softmaxes subtract the block maximum,
so logits of +-1e4 stay finite. VJPs return a 1-tuple (d_logits,) (see normal.py).
"""
import math

from .array_namespace import array_namespace
from .validation import as_float_array, check_disc_dims, check_positive, check_same_shape


def block_bounds(disc_dims):
    """[(start, stop)] column ranges of each discrete variable."""
    bounds, start = [], 0
    for k in disc_dims:
        bounds.append((start, start + k))
        start += k
    return bounds


def log_softmax_blocks(logits, disc_dims, xp):
    """Per-block log_softmax of float64 logits [B, sum K] -> [B, sum K]."""
    out = xp.empty_like(logits)
    for a, b in block_bounds(disc_dims):
        s = logits[:, a:b] - xp.max(logits[:, a:b], axis=1, keepdims=True)
        out[:, a:b] = s - xp.log(xp.sum(xp.exp(s), axis=1, keepdims=True))
    return out


def softmax_blocks(logits, disc_dims, xp):
    """Per-block softmax of float64 logits [B, sum K] -> [B, sum K] (each block's rows sum to 1)."""
    return xp.exp(log_softmax_blocks(logits, disc_dims, xp))


def _logits(logits, disc_dims, xp):
    logits = as_float_array("logits", logits, xp, ndim=2)
    dims = check_disc_dims(disc_dims, logits.shape[1])
    return logits, dims


def _uniforms(u, logits, xp):
    u = as_float_array("u", u, xp, ndim=2)
    check_same_shape("u", u, "logits", logits)
    if u.size and not bool(xp.all((u > 0) & (u < 1))):
        bad = u[~((u > 0) & (u < 1))].ravel()[0]
        raise ValueError(f"u must lie strictly inside (0, 1), got a value {float(bad)!r}")
    return u


def gumbel_softmax(logits, u, tau, disc_dims):
    """Gumbel-softmax (Concrete) sample per block -> [B, sum K].

    y_i = softmax((log_softmax(logits_i) + g_i) / tau), g = -log(-log(u)); logits, u [B, sum K].
    """
    xp = array_namespace(logits, u)
    logits, dims = _logits(logits, disc_dims, xp)
    u = _uniforms(u, logits, xp)
    tau = check_positive("tau", tau)
    g = -xp.log(-xp.log(u))
    return softmax_blocks((log_softmax_blocks(logits, dims, xp) + g) / tau, dims, xp)


def gumbel_softmax_vjp(logits, u, tau, disc_dims, grad):
    """Gradient of <grad, gumbel_softmax> w.r.t. logits -> (d_logits [B, sum K],).

    With y the sample and p = softmax(logits) per block:
    d_s = y * (grad - sum(grad * y)) / tau; d_logits = d_s - p * sum(d_s).
    (sum(d_s) is 0 in exact arithmetic, so d_logits = d_s: the sample is invariant to the
    per-block shift that log_softmax applies; the second term is kept as the literal chain rule.)
    """
    xp = array_namespace(logits, u, grad)
    logits, dims = _logits(logits, disc_dims, xp)
    u = _uniforms(u, logits, xp)
    tau = check_positive("tau", tau)
    grad = as_float_array("grad", grad, xp, ndim=2)
    check_same_shape("grad", grad, "logits", logits)
    lsm = log_softmax_blocks(logits, dims, xp)
    y = softmax_blocks((lsm + (-xp.log(-xp.log(u)))) / tau, dims, xp)
    p = xp.exp(lsm)
    out = xp.empty_like(logits)
    for a, b in block_bounds(dims):
        yb = y[:, a:b]
        ds = yb * (grad[:, a:b] - xp.sum(grad[:, a:b] * yb, axis=1, keepdims=True)) / tau
        out[:, a:b] = ds - p[:, a:b] * xp.sum(ds, axis=1, keepdims=True)
    return (out,)


def kl_categorical(logits, disc_dims):
    """KL(softmax(logits_i) || uniform(K_i)) per variable, batch mean: [B, sum K] -> [V].

    kl[i] = mean_b (log K_i + sum_k p log p), with p log p computed as p * log_softmax (0 where p = 0).
    """
    xp = array_namespace(logits)
    logits, dims = _logits(logits, disc_dims, xp)
    lsm = log_softmax_blocks(logits, dims, xp)
    plogp = xp.exp(lsm) * lsm
    kl = xp.zeros(len(dims), dtype=xp.float64)
    if logits.shape[0]:  # no samples: no KL
        for i, ((a, b), k) in enumerate(zip(block_bounds(dims), dims)):
            kl[i] = math.log(k) + xp.sum(plogp[:, a:b]) / logits.shape[0]
    return kl


def kl_categorical_vjp(logits, disc_dims, grad):
    """Gradient of <grad, kl_categorical> (grad [V]) -> (d_logits [B, sum K],).

    d_logits = grad_i / B * p * (log p - sum_k p log p) per block.
    """
    xp = array_namespace(logits, grad)
    logits, dims = _logits(logits, disc_dims, xp)
    grad = as_float_array("grad", grad, xp, ndim=1)
    if grad.shape[0] != len(dims):
        raise ValueError(f"grad must have shape ({len(dims)},), got shape {tuple(grad.shape)}")
    lsm = log_softmax_blocks(logits, dims, xp)
    p = xp.exp(lsm)
    batch = max(logits.shape[0], 1)
    out = xp.empty_like(logits)
    for i, (a, b) in enumerate(block_bounds(dims)):
        pb, lb = p[:, a:b], lsm[:, a:b]
        out[:, a:b] = (grad[i] / batch) * pb * (lb - xp.sum(pb * lb, axis=1, keepdims=True))
    return (out,)


def one_hot_argmax(logits, disc_dims):
    """Evaluation-mode sample: per block the one-hot of argmax(logits) (first index on ties) -> [B, sum K]."""
    xp = array_namespace(logits)
    logits, dims = _logits(logits, disc_dims, xp)
    out = xp.zeros_like(logits)
    rows = xp.arange(logits.shape[0])
    for a, b in block_bounds(dims):
        out[rows, a + xp.argmax(logits[:, a:b], axis=1)] = 1.0
    return out
