"""Closed forms, invariants and extremes of the reference."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R

dims_st = st.lists(st.integers(2, 32), min_size=1, max_size=4)
seed_st = st.integers(0, 2**32 - 1)


def _blocks(dims):
    start = 0
    for k in dims:
        yield start, start + k
        start += k


# --- KL divergences ---------------------------------------------------------------------------

def test_kl_normal_zero_at_prior():
    kl = R.kl_normal(np.zeros((5, 4)), np.zeros((5, 4)))
    assert kl.shape == (4,) and np.all(kl == 0)


def test_kl_normal_closed_form():
    mu = np.array([[1.0, -2.0], [3.0, 0.0]])
    logvar = np.array([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # KL(N(m, s2) || N(0, 1)) = 0.5 * (s2 + m^2 - 1 - log s2)
    per = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar)
    np.testing.assert_allclose(R.kl_normal(mu, logvar), per.mean(axis=0), rtol=1e-15)


@given(st.integers(1, 64), st.integers(0, 40), seed_st)
def test_kl_normal_never_negative(b, d, seed):
    rng = np.random.default_rng(seed)
    kl = R.kl_normal(rng.uniform(-5, 5, (b, d)), rng.uniform(-30, 30, (b, d)))
    assert kl.shape == (d,) and np.all(kl >= 0)


@given(st.integers(1, 16), dims_st, st.floats(-50, 50))
def test_kl_categorical_zero_at_uniform(b, dims, const):
    kl = R.kl_categorical(np.full((b, sum(dims)), const), dims)
    assert kl.shape == (len(dims),)
    np.testing.assert_allclose(kl, 0.0, atol=1e-14)


@given(st.integers(1, 64), dims_st, st.floats(0.1, 1e4), seed_st)
def test_kl_categorical_between_zero_and_log_k(b, dims, scale, seed):
    rng = np.random.default_rng(seed)
    kl = R.kl_categorical(rng.standard_normal((b, sum(dims))) * scale, dims)
    assert np.all(kl >= -1e-15) and np.all(kl <= np.log(dims) + 1e-12)


def test_kl_categorical_one_hot_is_log_k():
    dims = [2, 5, 10]
    logits = np.full((3, 17), -1e4)
    for a, _ in _blocks(dims):
        logits[:, a] = 1e4
    np.testing.assert_allclose(R.kl_categorical(logits, dims), np.log(dims), rtol=1e-15)


def test_kl_categorical_closed_form():
    logits = np.log(np.array([[0.5, 0.25, 0.25]]))
    p = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(R.kl_categorical(logits, [3]), [np.log(3) + np.sum(p * np.log(p))], rtol=1e-14)


# --- Gumbel-softmax -------------------------------------------------------------------------

@given(st.integers(1, 64), dims_st, st.floats(0.1, 5), seed_st)
def test_gumbel_rows_sum_to_one_per_block(b, dims, tau, seed):
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-10, 10, (b, sum(dims)))
    u = R.philox_uniform(seed, 0, logits.size).reshape(logits.shape)
    y = R.gumbel_softmax(logits, u, tau, dims)
    assert y.shape == logits.shape and np.all(y >= 0)
    for a, c in _blocks(dims):
        np.testing.assert_allclose(y[:, a:c].sum(axis=1), 1.0, rtol=1e-13)


@given(st.integers(1, 32), dims_st, st.floats(0.1, 5), seed_st)
def test_gumbel_and_kl_invariant_to_block_shift(b, dims, tau, seed):
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-5, 5, (b, sum(dims)))
    shifted = logits.copy()
    for a, c in _blocks(dims):
        shifted[:, a:c] += rng.uniform(-100, 100, (b, 1))  # one constant per row and block
    u = R.philox_uniform(seed, 4, logits.size).reshape(logits.shape)
    np.testing.assert_allclose(R.gumbel_softmax(shifted, u, tau, dims), R.gumbel_softmax(logits, u, tau, dims),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R.kl_categorical(shifted, dims), R.kl_categorical(logits, dims), atol=1e-12)
    np.testing.assert_allclose(R.gumbel_softmax_vjp(shifted, u, tau, dims, np.ones_like(u))[0],
                               R.gumbel_softmax_vjp(logits, u, tau, dims, np.ones_like(u))[0], atol=1e-10)


def test_gumbel_small_tau_approaches_argmax_one_hot():
    dims = [3, 8, 2]
    rng = np.random.default_rng(11)
    logits = rng.uniform(-3, 3, (200, 13))
    u = R.philox_uniform(99, 0, logits.size).reshape(logits.shape)
    perturbed = R.log_softmax_blocks(logits, dims, np) - np.log(-np.log(u.astype(np.float64)))
    target = R.one_hot_argmax(perturbed, dims)
    errors = [np.max(np.abs(R.gumbel_softmax(logits, u, tau, dims) - target)) for tau in (1.0, 0.1, 0.01, 1e-3)]
    assert errors[-1] < 1e-3 or np.all(np.diff(errors) <= 0)
    # rows whose best two perturbed logits are separated by >= 0.05 are one-hot to 1e-6 at tau = 1e-3
    y = R.gumbel_softmax(logits, u, 1e-3, dims)
    for a, c in _blocks(dims):
        top2 = np.sort(perturbed[:, a:c], axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) >= 0.05
        assert clear.sum() > 150
        np.testing.assert_allclose(y[clear, a:c], target[clear, a:c], atol=1e-6)


def test_gumbel_at_tau_one_with_known_noise():
    """With u = exp(-exp(-g)) the sample is softmax(log_softmax(logits) + g)."""
    logits = np.array([[1.0, 2.0, 3.0]])
    g = np.array([[0.5, -1.0, 0.25]])
    u = np.exp(-np.exp(-g))
    s = np.log(np.exp(logits) / np.exp(logits).sum()) + g
    np.testing.assert_allclose(R.gumbel_softmax(logits, u, 1.0, [3]), np.exp(s) / np.exp(s).sum(), rtol=1e-14)


# --- latent layout ------------------------------------------------------------------------

def test_sample_latent_layout_training_and_eval():
    rng = np.random.default_rng(0)
    b, d, dims = 6, 3, [4, 2]
    mu, logvar = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    logits = rng.standard_normal((b, 6))
    logits[0, :4] = [1.0, 5.0, 5.0, 0.0]  # tie: the first index wins
    eps, u = R.sample_latent_noise(3, 0, b, d, dims)
    latent = R.sample_latent(mu, logvar, logits, dims, 0.67, eps, u)
    assert latent.shape == (b, d + 6)
    np.testing.assert_array_equal(latent[:, :d], R.sample_normal(mu, logvar, eps))
    np.testing.assert_array_equal(latent[:, d:], R.gumbel_softmax(logits, u, 0.67, dims))
    ev = R.sample_latent(mu, logvar, logits, dims, 0.67, None, None, training=False)
    np.testing.assert_array_equal(ev[:, :d], mu)
    np.testing.assert_array_equal(ev[0, d:d + 4], [0, 1, 0, 0])
    for a, c in _blocks(dims):
        np.testing.assert_array_equal(ev[:, d + a:d + c].argmax(1), logits[:, a:c].argmax(1))
        np.testing.assert_array_equal(ev[:, d + a:d + c].sum(1), 1.0)


def test_sample_latent_one_part_only():
    rng = np.random.default_rng(1)
    mu, logvar = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    eps, u = R.sample_latent_noise(0, 0, 2, 3, [])
    np.testing.assert_array_equal(R.sample_latent(mu, logvar, None, [], 1.0, eps, None),
                                  R.sample_normal(mu, logvar, eps))
    logits = rng.standard_normal((2, 5))
    _, u = R.sample_latent_noise(0, 0, 2, 0, [5])
    np.testing.assert_array_equal(R.sample_latent(None, None, logits, [5], 1.0, None, u),
                                  R.gumbel_softmax(logits, u, 1.0, [5]))
    grads = R.sample_latent_vjp(None, None, logits, [5], 1.0, None, u, np.ones((2, 5)))
    assert grads[0] is None and grads[1] is None and grads[2].shape == (2, 5)


def test_sample_normal_closed_form():
    z = R.sample_normal(np.array([[1.0]]), np.array([[math.log(4.0)]]), np.array([[0.5]]))
    assert z[0, 0] == 2.0


# --- capacity -----------------------------------------------------------------------------

def test_capacity_schedule_endpoints():
    assert R.capacity(0, 0.5, 25.0, 1000) == 0.5
    assert R.capacity(500, 0.0, 25.0, 1000) == 12.5
    assert R.capacity(1000, 0.0, 25.0, 1000) == 25.0
    assert R.capacity(10**6, 0.0, 25.0, 1000) == 25.0
    assert R.capacity(10**6, 0.0, 25.0, 1000, cap=math.log(10)) == math.log(10)
    assert R.capacity(1, 0.0, 25.0, 1000, cap=math.log(10)) == 0.025


def test_objective_caps_discrete_capacity_at_sum_log_k():
    rng = np.random.default_rng(0)
    dims = [10, 2]
    x = np.zeros((2, 1, 4, 4))
    out = R.jointvae_objective(x, np.zeros_like(x), None, None, rng.standard_normal((2, 12)), dims, 10**5,
                               None, (0.0, 100.0, 1000, 30.0))
    assert out["c_disc"] == pytest.approx(math.log(10) + math.log(2), rel=1e-15)
    assert out["c_cont"] == 0.0 and out["cap_loss_cont"] == 0.0 and out["kl_cont"].shape == (0,)
    assert out["cap_loss_disc"] == pytest.approx(30.0 * abs(out["kl_disc"].sum() - out["c_disc"]), rel=1e-14)


def test_capacity_loss_and_its_subgradient_at_the_kink():
    assert R.capacity_loss(3.0, 1.0, 2.0) == 4.0
    assert R.capacity_loss(1.0, 3.0, 2.0) == 4.0
    assert R.capacity_loss_vjp(3.0, 1.0, 2.0)[0] == 2.0
    assert R.capacity_loss_vjp(1.0, 3.0, 2.0)[0] == -2.0
    assert R.capacity_loss_vjp(2.5, 2.5, 7.0)[0] == 0.0


# --- reconstruction and objective ----------------------------------------------------------

def test_bernoulli_nll_closed_forms():
    x = np.array([[[[0.0, 1.0], [0.25, 1.0]]]])
    assert R.bernoulli_nll(x, np.zeros_like(x)) == pytest.approx(4 * math.log(2), rel=1e-15)
    logits = np.array([[[[-2.0, 3.0], [0.5, -1.0]]]])
    p = 1 / (1 + np.exp(-logits))
    expected = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p))
    assert R.bernoulli_nll(x, logits) == pytest.approx(expected, rel=1e-14)
    # batch mean of per-image sums
    x2 = np.concatenate([x, np.zeros_like(x)])
    l2 = np.concatenate([logits, np.zeros_like(logits)])
    assert R.bernoulli_nll(x2, l2) == pytest.approx((expected + 4 * math.log(2)) / 2, rel=1e-14)


@given(st.integers(1, 8), st.integers(0, 10), st.lists(st.integers(2, 12), max_size=3), st.integers(1, 3),
       st.floats(0.1, 2), seed_st)
def test_objective_is_the_sum_of_its_parts(b, d, dims, c, recon_weight, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(b, c, 4, 6))
    x_logits = rng.standard_normal(x.shape) * 4
    mu, logvar = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    logits = rng.standard_normal((b, sum(dims))) * 3
    cont, disc = (0.0, 5.0, 1000, 30.0), (0.0, 5.0, 1000, 30.0)
    out = R.jointvae_objective(x, x_logits, mu, logvar, logits, dims, 300, cont, disc, recon_weight)
    recon = R.bernoulli_nll(x, x_logits)
    kl_c, kl_d = R.kl_normal(mu, logvar), R.kl_categorical(logits, dims)
    c_c = R.capacity(300, 0.0, 5.0, 1000)
    c_d = R.capacity(300, 0.0, 5.0, 1000, cap=float(np.sum(np.log(dims))) if dims else 0.0)
    loss_c = R.capacity_loss(kl_c.sum(), c_c, 30.0)
    loss_d = R.capacity_loss(kl_d.sum(), c_d, 30.0)
    assert out["recon"] == pytest.approx(recon, rel=1e-15)
    np.testing.assert_array_equal(out["kl_cont"], kl_c)
    np.testing.assert_array_equal(out["kl_disc"], kl_d)
    assert (out["c_cont"], out["c_disc"]) == (c_c, c_d)
    assert out["total"] == pytest.approx((recon_weight * recon + loss_c + loss_d) / 24, rel=1e-14)


def test_objective_without_latent_terms_is_reconstruction_only():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3, 1, 2, 5))
    x_logits = rng.standard_normal(x.shape)
    mu = np.zeros((3, 0))
    out = R.jointvae_objective(x, x_logits, mu, mu, None, [], 10, None, None)
    assert out["total"] == pytest.approx(R.bernoulli_nll(x, x_logits) / 10, rel=1e-15)
    g = R.jointvae_objective_vjp(x, x_logits, mu, mu, None, [], 10, None, None)
    np.testing.assert_allclose(g[0], R.bernoulli_nll_vjp(x, x_logits)[0] / 10, rtol=1e-15)
    assert g[1].shape == (3, 0) and g[3] is None


# --- extremes -----------------------------------------------------------------------------

def _no_float_trouble(fn):
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        return fn()


def _all_finite(values):
    for v in values:
        if v is None:
            continue
        if isinstance(v, dict):
            _all_finite(v.values())
        else:
            assert np.all(np.isfinite(np.asarray(v, dtype=np.float64))), v


@pytest.mark.parametrize("tau", [0.1, 0.67, 5.0])
def test_extremes_are_finite(tau):
    dims = [2, 5, 32]
    b, d = 4, 6
    mu = np.array([[1e4, -1e4, 0.0, 3.0, -3.0, 1e-300]] * b)
    logvar = np.array([[30.0, -30.0, 30.0, -30.0, 0.0, 1e-300]] * b)
    logits = np.zeros((b, 39))
    logits[0] = 1e4
    logits[1] = -1e4
    logits[2, ::2] = 1e4
    logits[2, 1::2] = -1e4
    logits[3, 0], logits[3, 2], logits[3, 7] = 1e4, 800.0, 50.0  # one class with probability 1 per block
    x = np.zeros((b, 1, 3, 3))
    x[:, :, 0] = 1.0
    x_logits = np.full(x.shape, 1e4)
    x_logits[:, :, 1] = -1e4
    eps, u = R.sample_latent_noise(1, 0, b, d, dims)
    u[0, 0], u[1, 1] = 2.0**-24, 1 - 2.0**-24  # the extreme uniforms
    caps = ((0.0, 25.0, 1000, 30.0), (0.0, 5.0, 1000, 30.0))
    _all_finite(_no_float_trouble(lambda: [
        R.sample_latent(mu, logvar, logits, dims, tau, eps, u),
        *R.sample_latent_vjp(mu, logvar, logits, dims, tau, eps, u, np.ones((b, d + 39))),
        R.kl_normal(mu, logvar), *R.kl_normal_vjp(mu, logvar, np.ones(d)),
        R.kl_categorical(logits, dims), *R.kl_categorical_vjp(logits, dims, np.ones(3)),
        R.gumbel_softmax(logits, u, tau, dims), *R.gumbel_softmax_vjp(logits, u, tau, dims, np.ones((b, 39))),
        R.bernoulli_nll(x, x_logits), *R.bernoulli_nll_vjp(x, x_logits),
        R.jointvae_objective(x, x_logits, mu, logvar, logits, dims, 500, *caps),
        *R.jointvae_objective_vjp(x, x_logits, mu, logvar, logits, dims, 500, *caps),
    ]))
    kl = R.kl_categorical(logits, dims)
    assert kl.min() >= 0
    np.testing.assert_allclose(R.kl_categorical(logits[3:], dims), np.log(dims), rtol=1e-15)
    # BCE with logits is exact at saturation: |l| per wrong pixel, 0 per right one;
    # per image: row 0 (x=1, l=+1e4) and row 1 (x=0, l=-1e4) right, row 2 (x=0, l=+1e4) wrong
    assert R.bernoulli_nll(x, x_logits) == 3 * 1e4
    np.testing.assert_array_equal(R.bernoulli_nll_vjp(x, x_logits)[0][:, :, 2], 1.0 / b)
    np.testing.assert_array_equal(R.bernoulli_nll_vjp(x, x_logits)[0][:, :, :2], 0.0)
