"""The decoder's input latent [z, y_1, ..., y_V] and the Philox noise that drives it.

Layout: latent [B, D + sum K] = [z (D) | y_1 (K_1) | ... | y_V (K_V)].
Training: z = mu + exp(logvar/2) * eps, y_i = gumbel_softmax(logits_i, u_i, tau).
Evaluation: z = mu, y_i = one_hot(argmax(logits_i)) (first index on ties); eps and u unused.
mu/logvar may be None (no continuous part, D = 0); logits may be None when disc_dims is empty.
"""
import math

import numpy as np

from .array_namespace import array_namespace
from .categorical import gumbel_softmax, gumbel_softmax_vjp, one_hot_argmax
from .normal import normal_from_uniforms, sample_normal, sample_normal_vjp
from .philox import GUMBEL_OFFSET, MASK64, philox_uniform
from .validation import (
    as_float_array,
    check_batch,
    check_count,
    check_disc_dims,
    check_positive,
    check_uint64,
)


def _parts(mu, logvar, logits, disc_dims, xp):
    """Validated float64 (mu, logvar, logits, dims, batch, D); absent parts become [B, 0] arrays."""
    if (mu is None) != (logvar is None):
        raise ValueError(f"mu and logvar must both be given or both be None, got mu={type(mu).__name__}, "
                         f"logvar={type(logvar).__name__}")
    if mu is not None:
        mu = as_float_array("mu", mu, xp, ndim=2)
        logvar = as_float_array("logvar", logvar, xp, ndim=2)
        if tuple(logvar.shape) != tuple(mu.shape):
            raise ValueError(f"logvar must have the shape of mu {tuple(mu.shape)}, got shape {tuple(logvar.shape)}")
    if logits is not None:
        logits = as_float_array("logits", logits, xp, ndim=2)
        dims = check_disc_dims(disc_dims, logits.shape[1])
    else:
        dims = check_disc_dims(disc_dims, 0)
    if mu is None and logits is None:
        raise ValueError("mu/logvar and logits are all None: at least one latent part is needed")
    batch = mu.shape[0] if mu is not None else logits.shape[0]
    if mu is None:
        mu = xp.zeros((batch, 0), dtype=xp.float64)
        logvar = xp.zeros((batch, 0), dtype=xp.float64)
    if logits is None:
        logits = xp.zeros((batch, 0), dtype=xp.float64)
    check_batch("logits", logits, batch)
    return mu, logvar, logits, dims, batch, mu.shape[1]


def sample_latent(mu, logvar, logits, disc_dims, tau, eps, u, training=True):
    """Decoder input latent -> [B, D + sum K] float64 (see module docstring).

    mu, logvar, eps [B, D]; logits, u [B, sum K]; tau > 0.
    """
    xp = array_namespace(mu, logvar, logits, eps, u)
    mu, logvar, logits, dims, batch, d = _parts(mu, logvar, logits, disc_dims, xp)
    tau = check_positive("tau", tau)
    if not training:
        y = one_hot_argmax(logits, dims) if dims else logits
        return xp.concatenate([mu, y], axis=1)
    z = sample_normal(mu, logvar, eps) if d or eps is not None else mu
    y = gumbel_softmax(logits, u, tau, dims) if dims or u is not None else logits
    return xp.concatenate([z, y], axis=1)


def sample_latent_vjp(mu, logvar, logits, disc_dims, tau, eps, u, grad, *, training=True):
    """Gradients of <grad, sample_latent> -> (d_mu [B, D], d_logvar [B, D], d_logits [B, sum K]).

    An entry is None where the corresponding input was None. In evaluation mode d_mu = grad[:, :D]
    and d_logvar, d_logits are zero (argmax is piecewise constant).
    """
    xp = array_namespace(mu, logvar, logits, eps, u, grad)
    had_mu, had_logits = mu is not None, logits is not None
    mu, logvar, logits, dims, batch, d = _parts(mu, logvar, logits, disc_dims, xp)
    tau = check_positive("tau", tau)
    grad = as_float_array("grad", grad, xp, ndim=2)
    width = d + logits.shape[1]
    if tuple(grad.shape) != (batch, width):
        raise ValueError(f"grad must have shape {(batch, width)}, got shape {tuple(grad.shape)}")
    gz, gy = grad[:, :d], grad[:, d:]
    if not training:
        d_mu, d_logvar, d_logits = gz.copy(), xp.zeros_like(logvar), xp.zeros_like(logits)
    else:
        if d or eps is not None:
            d_mu, d_logvar = sample_normal_vjp(mu, logvar, eps, gz)
        else:
            d_mu, d_logvar = gz.copy(), xp.zeros_like(logvar)
        if dims or u is not None:
            (d_logits,) = gumbel_softmax_vjp(logits, u, tau, dims, gy)
        else:
            d_logits = xp.zeros_like(logits)
    return (d_mu if had_mu else None, d_logvar if had_mu else None, d_logits if had_logits else None)


def sample_latent_noise(seed, offset, batch, cont, disc_dims, xp=np):
    """Noise of one sample_latent call under the project's Philox mapping (see philox.py).

    -> (eps float64 [batch, cont], u float32 [batch, sum(disc_dims)]):
    eps[j] = sqrt(-2 ln U(2j)) cos(2 pi U(2j+1)), j = b*cont + d, U = uniforms of S(seed, offset);
    u[b, k] = U'(b*sumK + k), U' = uniforms of S(seed, offset + GUMBEL_OFFSET) (offset + 4 modulo 2**64).
    """
    seed = check_uint64("seed", seed)
    offset = check_uint64("offset", offset)
    batch = check_count("batch", batch)
    cont = check_count("cont", cont)
    dims = check_disc_dims(disc_dims)
    sum_k = sum(dims)
    pairs = philox_uniform(seed, offset, 2 * batch * cont, xp=xp)
    eps = normal_from_uniforms(pairs[0::2], pairs[1::2]).reshape(batch, cont)
    u = philox_uniform(seed, (offset + GUMBEL_OFFSET) & MASK64, batch * sum_k, xp=xp).reshape(batch, sum_k)
    return eps, u


def theoretical_max_disc_capacity(disc_dims):
    """sum_i log K_i: the largest KL the discrete variables can reach (cap of the discrete capacity)."""
    return float(sum(math.log(k) for k in check_disc_dims(disc_dims)))
