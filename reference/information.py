"""The batch decompositions of the KLs: information plus aggregate KL (issue 13's objective variants).

Discrete part:

Per discrete variable i with K classes, rows q_b = softmax(logits_b) (b = 1..B), uniform prior p = 1/K:
  kl_categorical  KL_i = (1/B) sum_b KL(q_b || p)        = log K - (1/B) sum_b H(q_b)
  aggregate       qbar = (1/B) sum_b q_b                 [sum K]
  kl_aggregate    A_i  = KL(qbar || p)                   = log K - H(qbar)
  batch_information I_i = H(qbar) - (1/B) sum_b H(q_b)   = KL_i - A_i   (>= 0, <= min(log K, log B))
I_i is the mutual information between the row index and the class under the batch's empirical
distribution: the batch estimate of I(x; c). 0 log 0 = 0. VJPs return a 1-tuple (d_logits,).

Continuous part, per unit d, rows N(mu_b, v_b = exp(logvar_b)), prior N(0, 1):
  gaussian_aggregate_moments m = mean_b mu_b,  s2 = mean_b v_b + mean_b (mu_b - m)^2   [D], [D]
                              (the mean and variance of the aggregate mixture mean_b N(mu_b, v_b))
  kl_gaussian_aggregate      A_d = KL(N(m, s2) || N(0, 1)) = (m^2 + s2 - 1 - log s2) / 2
  gaussian_batch_information I_d = KL_d - A_d = (log s2 - mean_b logvar_b) / 2   (>= 0, Jensen)
The identity is exact: log N(m, s2) - log N(0, 1) is quadratic in z and N(m, s2) has the mixture's first two
moments, so mean_b KL(N_b || N(0,1)) = mean_b KL(N_b || N(m, s2)) + A_d. I_d = mean_b KL(N_b || N(m, s2)) bounds
the batch's I(x; z_d) from above (by KL(mixture || N(m, s2))); it is 0 when every row has the same posterior and
has no log B ceiling. VJPs return (d_mu, d_logvar), each [B, D].
"""
from .array_namespace import array_namespace
from .categorical import _logits, block_bounds, kl_categorical, kl_categorical_vjp, log_softmax_blocks
from .normal import _gaussian_params
from .validation import as_float_array


def _grad_vector(grad, dims, xp):
    grad = as_float_array("grad", grad, xp, ndim=1)
    if grad.shape[0] != len(dims):
        raise ValueError(f"grad must have shape ({len(dims)},), got shape {tuple(grad.shape)}")
    return grad


def aggregate_posterior(logits, disc_dims):
    """qbar = mean_b softmax(logits_b) per block: [B, sum K] -> [sum K] (zeros when B = 0)."""
    xp = array_namespace(logits)
    logits, dims = _logits(logits, disc_dims, xp)
    if not logits.shape[0]:
        return xp.zeros(logits.shape[1], dtype=xp.float64)
    return xp.mean(xp.exp(log_softmax_blocks(logits, dims, xp)), axis=0)


def _log_k_qbar(qbar, dims, xp):
    """m = log(K_i qbar) per class, 0 where qbar = 0 (such a class has q = 0 in every row)."""
    k = xp.concatenate([xp.full(n, float(n)) for n in dims]) if dims else xp.zeros(0)
    safe = xp.where(qbar > 0, qbar, 1.0)
    return xp.where(qbar > 0, xp.log(k * safe), 0.0)


def kl_aggregate(logits, disc_dims):
    """A_i = KL(qbar_i || uniform(K_i)) = sum_k qbar log(K qbar): [B, sum K] -> [V] (0 when B = 0)."""
    xp = array_namespace(logits)
    logits, dims = _logits(logits, disc_dims, xp)
    qbar = aggregate_posterior(logits, dims)
    terms = qbar * _log_k_qbar(qbar, dims, xp)
    out = xp.zeros(len(dims), dtype=xp.float64)
    for i, (a, b) in enumerate(block_bounds(dims)):
        out[i] = xp.sum(terms[a:b])
    return out


def kl_aggregate_vjp(logits, disc_dims, grad):
    """Gradient of <grad, kl_aggregate> (grad [V]) -> (d_logits [B, sum K],).

    d_logits = grad_i / B * q * (m - sum_k q m) per block, m = log(K qbar) (the +1 of d(x log x) cancels).
    """
    xp = array_namespace(logits, grad)
    logits, dims = _logits(logits, disc_dims, xp)
    grad = _grad_vector(grad, dims, xp)
    q = xp.exp(log_softmax_blocks(logits, dims, xp))
    m = _log_k_qbar(aggregate_posterior(logits, dims), dims, xp)
    batch = max(logits.shape[0], 1)
    out = xp.empty_like(logits)
    for i, (a, b) in enumerate(block_bounds(dims)):
        qb, mb = q[:, a:b], m[a:b]
        out[:, a:b] = (grad[i] / batch) * qb * (mb - xp.sum(qb * mb, axis=1, keepdims=True))
    return (out,)


def batch_information(logits, disc_dims):
    """I_i = KL_i - A_i = H(qbar) - mean_b H(q_b): [B, sum K] -> [V]."""
    xp = array_namespace(logits)
    logits, dims = _logits(logits, disc_dims, xp)
    return kl_categorical(logits, dims) - kl_aggregate(logits, dims)


def batch_information_vjp(logits, disc_dims, grad):
    """Gradient of <grad, batch_information> (grad [V]) -> (d_logits [B, sum K],): the KL's minus the aggregate's."""
    xp = array_namespace(logits, grad)
    logits, dims = _logits(logits, disc_dims, xp)
    grad = _grad_vector(grad, dims, xp)
    return (kl_categorical_vjp(logits, dims, grad)[0] - kl_aggregate_vjp(logits, dims, grad)[0],)



def gaussian_aggregate_moments(mu, logvar):
    """(m, s2): mean and variance per unit of the batch's aggregate posterior: [B, D] x2 -> [D], [D].

    B = 0 gives m = 0, s2 = 1 (the prior: A = I = 0)."""
    xp = array_namespace(mu, logvar)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    if not mu.shape[0]:
        return xp.zeros(mu.shape[1], dtype=xp.float64), xp.ones(mu.shape[1], dtype=xp.float64)
    m = xp.mean(mu, axis=0)
    return m, xp.mean(xp.exp(logvar), axis=0) + xp.mean((mu - m) ** 2, axis=0)


def _unit_grad(grad, mu, xp):
    grad = as_float_array("grad", grad, xp, ndim=1)
    if grad.shape[0] != mu.shape[1]:
        raise ValueError(f"grad must have shape ({mu.shape[1]},), got shape {tuple(grad.shape)}")
    return grad[None, :] / max(mu.shape[0], 1)


def kl_gaussian_aggregate(mu, logvar):
    """A_d = KL(N(m_d, s2_d) || N(0, 1)) = (m^2 + s2 - 1 - log s2) / 2: [B, D] x2 -> [D]."""
    m, s2 = gaussian_aggregate_moments(mu, logvar)
    return 0.5 * (m * m + s2 - 1.0 - array_namespace(m).log(s2))


def kl_gaussian_aggregate_vjp(mu, logvar, grad):
    """Gradient of <grad, kl_gaussian_aggregate> (grad [D]) -> (d_mu, d_logvar), each [B, D].

    d_mu = grad/B * (m + (1 - 1/s2)(mu - m)),  d_logvar = grad/B * (1 - 1/s2) exp(logvar) / 2.
    """
    xp = array_namespace(mu, logvar, grad)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    scale = _unit_grad(grad, mu, xp)
    m, s2 = gaussian_aggregate_moments(mu, logvar)
    shrink = 1.0 - 1.0 / s2
    return scale * (m + shrink * (mu - m)), scale * 0.5 * shrink * xp.exp(logvar)


def gaussian_batch_information(mu, logvar):
    """I_d = KL_d - A_d = (log s2_d - mean_b logvar_bd) / 2: [B, D] x2 -> [D] (0 when B = 0)."""
    xp = array_namespace(mu, logvar)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    if not mu.shape[0]:
        return xp.zeros(mu.shape[1], dtype=xp.float64)
    _, s2 = gaussian_aggregate_moments(mu, logvar)
    return 0.5 * (xp.log(s2) - xp.mean(logvar, axis=0))


def gaussian_batch_information_vjp(mu, logvar, grad):
    """Gradient of <grad, gaussian_batch_information> (grad [D]) -> (d_mu, d_logvar), each [B, D].

    d_mu = grad/B * (mu - m) / s2,  d_logvar = grad/B * (exp(logvar) / s2 - 1) / 2.
    """
    xp = array_namespace(mu, logvar, grad)
    mu, logvar = _gaussian_params(mu, logvar, xp)
    scale = _unit_grad(grad, mu, xp)
    m, s2 = gaussian_aggregate_moments(mu, logvar)
    return scale * (mu - m) / s2, scale * 0.5 * (xp.exp(logvar) / s2 - 1.0)
