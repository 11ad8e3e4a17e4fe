"""Every reference VJP against central finite differences in float64.

Check: for a random upstream gradient w and a random unit direction v over all differentiable
inputs, the analytic sum_p <vjp(w)_p, v_p> must match the Richardson-extrapolated central
difference of f(t) = <w, forward(inputs + t v)> at t = 0. The error is measured relative to
sum |vjp(w)| * |v| (the scale of the inner product, immune to cancellation) and must be < 1e-6,
beyond the resolution of the difference quotient itself (a few ulps of |f| divided by the step).
Inputs are drawn by hypothesis (B 1..64, D 0..40, 0..4 discrete variables of 2..32 classes,
tau 0.1..5); the capacity targets are placed away from the |.| kink by construction.
"""
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import reference as R

H_STEP = 1e-4
REL_TOL = 1e-6

batch_st = st.integers(1, 64)
cont_st = st.integers(0, 40)
dims_st = st.lists(st.integers(2, 32), min_size=0, max_size=4)
tau_st = st.floats(0.1, 5.0)
seed_st = st.integers(0, 2**32 - 1)


def _unit_directions(rng, shapes):
    vs = [rng.standard_normal(s) for s in shapes]
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in vs)) or 1.0
    return [v / norm for v in vs]


def _directional(f, params, directions):
    """Richardson-extrapolated central difference of t -> f(params + t v) at t = 0, and its rounding bound."""
    values = []

    def central(h):
        plus = f(*[p + h * v for p, v in zip(params, directions)])
        minus = f(*[p - h * v for p, v in zip(params, directions)])
        values.extend([abs(plus), abs(minus)])
        return (plus - minus) / (2 * h)

    estimate = (4 * central(H_STEP / 2) - central(H_STEP)) / 3
    rounding = 64 * np.finfo(np.float64).eps * max(values) / H_STEP + 1e6 * np.finfo(np.float64).tiny
    return estimate, rounding


def _check(f, params, grads, directions):
    analytic = sum(float(np.sum(g * v)) for g, v in zip(grads, directions))
    scale = sum(float(np.sum(np.abs(g) * np.abs(v))) for g, v in zip(grads, directions))
    numeric, rounding = _directional(f, params, directions)
    err = abs(analytic - numeric)
    assert err <= REL_TOL * scale + rounding, (analytic, numeric, scale, rounding)


def _gaussian(rng, b, d):
    return rng.uniform(-3, 3, (b, d)), rng.uniform(-4, 4, (b, d))


def _logits(rng, b, dims):
    return rng.uniform(-5, 5, (b, sum(dims)))


@given(batch_st, cont_st, seed_st)
def test_sample_normal_vjp(b, d, seed):
    rng = np.random.default_rng(seed)
    mu, logvar = _gaussian(rng, b, d)
    eps, w = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    grads = R.sample_normal_vjp(mu, logvar, eps, w)
    assert len(grads) == 2
    f = lambda m, lv: float(np.sum(w * R.sample_normal(m, lv, eps)))  # noqa: E731
    _check(f, [mu, logvar], grads, _unit_directions(rng, [mu.shape, logvar.shape]))


@given(batch_st, cont_st, seed_st)
def test_kl_normal_vjp(b, d, seed):
    rng = np.random.default_rng(seed)
    mu, logvar = _gaussian(rng, b, d)
    w = rng.standard_normal(d)
    grads = R.kl_normal_vjp(mu, logvar, w)
    f = lambda m, lv: float(np.sum(w * R.kl_normal(m, lv)))  # noqa: E731
    _check(f, [mu, logvar], grads, _unit_directions(rng, [mu.shape, logvar.shape]))


@given(batch_st, dims_st, tau_st, seed_st)
def test_gumbel_softmax_vjp(b, dims, tau, seed):
    rng = np.random.default_rng(seed)
    logits = _logits(rng, b, dims)
    u = R.philox_uniform(seed, 0, b * sum(dims)).reshape(b, sum(dims))
    w = rng.standard_normal(logits.shape)
    grads = R.gumbel_softmax_vjp(logits, u, tau, dims, w)
    assert len(grads) == 1
    f = lambda lg: float(np.sum(w * R.gumbel_softmax(lg, u, tau, dims)))  # noqa: E731
    _check(f, [logits], grads, _unit_directions(rng, [logits.shape]))


@given(batch_st, dims_st, seed_st)
def test_kl_categorical_vjp(b, dims, seed):
    rng = np.random.default_rng(seed)
    logits = _logits(rng, b, dims)
    w = rng.standard_normal(len(dims))
    grads = R.kl_categorical_vjp(logits, dims, w)
    f = lambda lg: float(np.sum(w * R.kl_categorical(lg, dims)))  # noqa: E731
    _check(f, [logits], grads, _unit_directions(rng, [logits.shape]))


@given(*(st.floats(lo, hi, allow_subnormal=False) for lo, hi in ((-10, 10), (-10, 10), (0, 100), (-3, 3))))
def test_capacity_loss_vjp(kl, c, gamma, w):
    assume(abs(kl - c) > 1e-3)
    (g,) = R.capacity_loss_vjp(kl, c, gamma, w)
    f = lambda k: float(w * R.capacity_loss(k, c, gamma))  # noqa: E731
    _check(f, [np.float64(kl)], [g], [np.float64(1.0)])


@given(batch_st, st.integers(1, 3), st.integers(1, 8), st.integers(1, 8), seed_st)
def test_bernoulli_nll_vjp(b, c, h, w_, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (b, c, h, w_))
    x[rng.uniform(size=x.shape) < 0.3] = 0.0
    x_logits = rng.uniform(-8, 8, x.shape)
    w = rng.standard_normal()
    grads = R.bernoulli_nll_vjp(x, x_logits, w)
    f = lambda xl: float(w * R.bernoulli_nll(x, xl))  # noqa: E731
    _check(f, [x_logits], grads, _unit_directions(rng, [x.shape]))


@given(batch_st, cont_st, dims_st, tau_st, st.booleans(), seed_st)
def test_sample_latent_vjp(b, d, dims, tau, training, seed):
    assume(d + sum(dims) > 0)
    rng = np.random.default_rng(seed)
    mu, logvar = _gaussian(rng, b, d)
    logits = _logits(rng, b, dims)
    eps, u = R.sample_latent_noise(seed, 4 * seed, b, d, dims)
    w = rng.standard_normal((b, d + sum(dims)))
    grads = R.sample_latent_vjp(mu, logvar, logits, dims, tau, eps, u, w, training=training)
    assert len(grads) == 3
    f = lambda m, lv, lg: float(np.sum(w * R.sample_latent(m, lv, lg, dims, tau, eps, u, training)))  # noqa: E731
    _check(f, [mu, logvar, logits], grads, _unit_directions(rng, [mu.shape, logvar.shape, logits.shape]))


def _target_away_from(kl_sum, cap=None):
    """A capacity target at a safe distance from kl_sum (the |.| kink), below cap when given."""
    c = 0.5 * kl_sum if kl_sum > 1e-2 else kl_sum + 0.05
    assert cap is None or c < cap
    return c


@given(st.integers(1, 16), cont_st, dims_st, st.integers(1, 3), st.integers(1, 6), st.booleans(),
       st.booleans(), st.floats(0.1, 3.0), seed_st)
def test_jointvae_objective_vjp(b, d, dims, c, hw, with_cont, with_disc, recon_weight, seed):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(b, c, hw, hw + 1)) < 0.5).astype(np.float64)
    x_logits = rng.uniform(-8, 8, x.shape)
    mu, logvar = _gaussian(rng, b, d)
    logits = _logits(rng, b, dims)
    cont = disc = None
    if with_cont:
        c_target = _target_away_from(float(np.sum(R.kl_normal(mu, logvar))))
        cont = (0.0, c_target, 100, float(rng.uniform(1, 100)))  # step >= num_iters: C = c_target
    if with_disc:
        cap = sum(np.log(dims)) if dims else 0.0
        kl_sum = float(np.sum(R.kl_categorical(logits, dims)))
        c_target = _target_away_from(kl_sum, cap) if dims else 1.0
        disc = (0.0, c_target, 100, float(rng.uniform(1, 100)))
    args = (dims, 250, cont, disc)
    grads = R.jointvae_objective_vjp(x, x_logits, mu, logvar, logits, *args, 1.7, recon_weight=recon_weight)
    assert len(grads) == 4

    def f(xl, m, lv, lg):
        return 1.7 * float(R.jointvae_objective(x, xl, m, lv, lg, *args, recon_weight=recon_weight)["total"])

    params = [x_logits, mu, logvar, logits]
    directions = _unit_directions(rng, [p.shape for p in params])
    # the kink is never crossed by the finite-difference probes
    for t in (-H_STEP, H_STEP):
        probe = [p + t * v for p, v in zip(params, directions)]
        for key, spec, kl in (("c", cont, R.kl_normal(probe[1], probe[2])), ("d", disc, R.kl_categorical(probe[3], dims))):
            if spec is not None:
                ref = R.kl_normal(mu, logvar) if key == "c" else R.kl_categorical(logits, dims)
                assert np.sign(np.sum(kl) - spec[1]) == np.sign(np.sum(ref) - spec[1])
    if not with_cont:
        assert not np.any(grads[1]) and not np.any(grads[2])
    if not with_disc:
        assert not np.any(grads[3])
    _check(f, params, grads, directions)
