"""The diagonal Gaussian part of the latent: reparameterised sample, KL to N(0, I), Box-Muller.

VJP convention (whole package): `<name>_vjp(<forward inputs>, grad)` returns a tuple of
gradients for the differentiable inputs in the order they appear in the forward's signature;
noise (eps, u), data (x) and hyperparameters are constants and get no gradient.
"""
from .array_namespace import array_namespace
from .validation import as_float_array, check_same_shape


def _gaussian_params(mu, logvar, xp):
    mu = as_float_array("mu", mu, xp, ndim=2)
    logvar = as_float_array("logvar", logvar, xp, ndim=2)
    check_same_shape("logvar", logvar, "mu", mu)
    return mu, logvar


def sample_normal(mu, logvar, eps):
    """z = mu + exp(logvar / 2) * eps; mu, logvar, eps [B, D] -> z [B, D] (float64)."""
    xp = array_namespace(mu, logvar, eps)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    eps = as_float_array("eps", eps, xp, ndim=2)
    check_same_shape("eps", eps, "mu", mu)
    return mu + xp.exp(0.5 * logvar) * eps


def sample_normal_vjp(mu, logvar, eps, grad):
    """Gradients of <grad, z> -> (d_mu = grad, d_logvar = grad * exp(logvar/2) * eps / 2), each [B, D]."""
    xp = array_namespace(mu, logvar, eps, grad)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    eps = as_float_array("eps", eps, xp, ndim=2)
    check_same_shape("eps", eps, "mu", mu)
    grad = as_float_array("grad", grad, xp, ndim=2)
    check_same_shape("grad", grad, "mu", mu)
    return grad.copy(), grad * 0.5 * xp.exp(0.5 * logvar) * eps


def kl_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) per unit, batch mean: [B, D] -> [D].

    kl[d] = mean_b -0.5 * (1 + logvar - mu^2 - exp(logvar)).
    """
    xp = array_namespace(mu, logvar)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    per_sample = -0.5 * (1.0 + logvar - mu * mu - xp.exp(logvar))
    return xp.mean(per_sample, axis=0) if mu.shape[0] else xp.zeros(mu.shape[1], dtype=xp.float64)


def kl_normal_vjp(mu, logvar, grad):
    """Gradients of <grad, kl_normal> (grad [D]) -> (d_mu = grad*mu/B, d_logvar = grad*(exp(logvar)-1)/(2B))."""
    xp = array_namespace(mu, logvar, grad)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    grad = as_float_array("grad", grad, xp, ndim=1)
    if grad.shape[0] != mu.shape[1]:
        raise ValueError(f"grad must have shape ({mu.shape[1]},), got shape {tuple(grad.shape)}")
    scale = grad[None, :] / max(mu.shape[0], 1)
    return scale * mu, scale * 0.5 * xp.expm1(logvar)


def normal_from_uniforms(u1, u2):
    """Box-Muller (cosine branch): sqrt(-2 ln u1) * cos(2 pi u2), evaluated in float64; u in (0, 1)."""
    xp = array_namespace(u1, u2)
    u1 = xp.asarray(u1).astype(xp.float64)
    u2 = xp.asarray(u2).astype(xp.float64)
    return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * xp.pi * u2)
