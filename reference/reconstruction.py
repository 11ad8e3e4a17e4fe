"""Bernoulli reconstruction term on decoder logits (BCE with logits)."""
from .array_namespace import array_namespace
from .validation import as_float_array, check_same_shape


def _images(x, x_logits, xp):
    x = as_float_array("x", x, xp)
    if x.ndim < 2:
        raise ValueError(f"x must have shape [B, ...] with rank >= 2, got shape {tuple(x.shape)}")
    x_logits = as_float_array("x_logits", x_logits, xp)
    check_same_shape("x_logits", x_logits, "x", x)
    return x, x_logits


def bce_with_logits(x, x_logits, xp):
    """Elementwise -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))] = max(l, 0) - l*x + log1p(exp(-|l|))."""
    return xp.maximum(x_logits, 0.0) - x_logits * x + xp.log1p(xp.exp(-xp.abs(x_logits)))


def stable_sigmoid(t, xp):
    """1 / (1 + exp(-t)) without overflow for any finite t."""
    e = xp.exp(-xp.abs(t))
    return xp.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def bernoulli_nll(x, x_logits):
    """Per-image sum of BCE-with-logits over all non-batch elements, mean over the batch -> scalar.

    x (targets in [0, 1]) and x_logits have the same shape [B, ...].
    """
    xp = array_namespace(x, x_logits)
    x, x_logits = _images(x, x_logits, xp)
    return xp.sum(bce_with_logits(x, x_logits, xp)) / max(x.shape[0], 1)


def bernoulli_nll_vjp(x, x_logits, grad=1.0):
    """Gradient w.r.t. x_logits -> (grad * (sigmoid(x_logits) - x) / B,)."""
    xp = array_namespace(x, x_logits, grad)
    x, x_logits = _images(x, x_logits, xp)
    grad = as_float_array("grad", grad, xp, ndim=0)
    return (grad * (stable_sigmoid(x_logits, xp) - x) / max(x.shape[0], 1),)
