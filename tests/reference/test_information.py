"""reference/information.py and the objective's information mode: closed forms, the decomposition
KL_i = I_i + A_i, extremes, finite-difference VJPs (the harness of test_reference_gradients.py)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from tests.reference.test_vjp_finite_differences import H_STEP, _check, _gaussian, _logits, _target_away_from, _unit_directions

batch_st = st.integers(1, 64)
dims_st = st.lists(st.integers(2, 32), min_size=0, max_size=4)
seed_st = st.integers(0, 2**32 - 1)


def _entropy(q):
    q = q[q > 0]
    return float(-np.sum(q * np.log(q)))


@given(batch_st, st.lists(st.integers(2, 32), min_size=1, max_size=4), st.floats(0.1, 30), seed_st)
def test_decomposition_and_definitions(b, dims, scale, seed):
    """KL_i = I_i + A_i; A_i = log K - H(qbar); I_i = H(qbar) - mean_b H(q_b), each computed independently."""
    logits = np.random.default_rng(seed).standard_normal((b, sum(dims))) * scale
    kl, info, agg = R.kl_categorical(logits, dims), R.batch_information(logits, dims), R.kl_aggregate(logits, dims)
    np.testing.assert_allclose(info + agg, kl, rtol=0, atol=1e-12)
    q = R.softmax_blocks(logits, dims, np)
    start = 0
    for i, k in enumerate(dims):
        qb = q[:, start:start + k]
        qbar = qb.mean(axis=0)
        np.testing.assert_allclose(R.aggregate_posterior(logits, dims)[start:start + k], qbar, rtol=1e-15)
        mean_h = np.mean([_entropy(row) for row in qb])
        assert agg[i] == pytest.approx(math.log(k) - _entropy(qbar), abs=1e-12)
        assert info[i] == pytest.approx(_entropy(qbar) - mean_h, abs=1e-12)
        assert -1e-12 <= info[i] <= min(math.log(k), math.log(b)) + 1e-12
        assert -1e-12 <= agg[i] <= math.log(k) + 1e-12
        start += k


@given(batch_st, st.integers(2, 32), seed_st)
def test_information_zero_when_all_rows_equal(b, k, seed):
    row = np.random.default_rng(seed).standard_normal(k) * 3
    logits = np.tile(row, (b, 1))
    assert abs(R.batch_information(logits, [k])[0]) < 1e-12
    np.testing.assert_allclose(R.kl_aggregate(logits, [k]), R.kl_categorical(logits, [k]), atol=1e-12)


@pytest.mark.parametrize("k,copies", [(2, 1), (3, 5), (10, 4), (7, 1)])
def test_distinct_one_hots_covering_classes_uniformly(k, copies):
    """Rows that are one-hots (logits +-1e4) covering each class `copies` times: I = log K, A = 0."""
    logits = np.full((k * copies, k), -1e4)
    logits[np.arange(k * copies), np.arange(k * copies) % k] = 1e4
    assert R.batch_information(logits, [k])[0] == pytest.approx(math.log(k), abs=1e-12)
    assert R.kl_aggregate(logits, [k])[0] == pytest.approx(0.0, abs=1e-12)
    (g,) = R.kl_aggregate_vjp(logits, [k], np.ones(1))
    assert np.all(np.isfinite(g))


@given(st.integers(1, 8), st.integers(2, 16), seed_st)
def test_aggregate_zero_for_a_uniform_aggregate(copies, k, seed):
    """Each row's softmax and all its cyclic shifts: qbar is uniform, so A = 0 and I = KL."""
    row = np.random.default_rng(seed).standard_normal(k) * 2
    logits = np.concatenate([np.stack([np.roll(row, s) for s in range(k)])] * copies)
    assert R.kl_aggregate(logits, [k])[0] == pytest.approx(0.0, abs=1e-12)
    assert R.batch_information(logits, [k])[0] == pytest.approx(R.kl_categorical(logits, [k])[0], abs=1e-12)


@pytest.mark.parametrize("b", [1, 3, 64])
def test_extremes_stay_finite(b):
    """Logits of +-1e4 (exact one-hots, some classes never used: qbar = 0 there)."""
    rng = np.random.default_rng(b)
    dims = [4, 3]
    logits = rng.choice([-1e4, 1e4], size=(b, 7))
    logits[:, 0] = 1e4  # class 0 of variable 0 always among the maxima
    for f in (R.batch_information, R.kl_aggregate):
        out = f(logits, dims)
        assert np.all(np.isfinite(out)) and np.all(out >= -1e-12)
    for vjp in (R.batch_information_vjp, R.kl_aggregate_vjp):
        (g,) = vjp(logits, dims, np.array([1.5, -2.0]))
        assert np.all(np.isfinite(g))
    # one row: no information, aggregate = the row's KL
    np.testing.assert_allclose(R.batch_information(logits[:1], dims), 0.0, atol=1e-12)


def test_empty_batch_and_no_variables():
    assert R.kl_aggregate(np.zeros((0, 5)), [5]).tolist() == [0.0]
    assert R.batch_information(np.zeros((0, 5)), [5]).tolist() == [0.0]
    assert R.kl_aggregate(np.zeros((3, 0)), []).shape == (0,)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="grad"):
        R.kl_aggregate_vjp(np.zeros((2, 3)), [3], np.ones(2))
    with pytest.raises(ValueError, match="disc_capacity_on"):
        R.jointvae_objective(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), None, None, np.zeros((1, 3)), [3], 0,
                             None, (0.0, 1.0, 10, 1.0), disc_capacity_on="entropy")
    with pytest.raises(ValueError, match="disc_aggregate_weight"):
        R.jointvae_objective(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), None, None, np.zeros((1, 3)), [3], 0,
                             None, (0.0, 1.0, 10, 1.0), disc_capacity_on="information", disc_aggregate_weight=-1.0)


@pytest.mark.parametrize("forward, vjp", [(R.kl_aggregate, R.kl_aggregate_vjp),
                                          (R.batch_information, R.batch_information_vjp)])
@given(b=batch_st, dims=dims_st, seed=seed_st)
def test_vjps_against_finite_differences(forward, vjp, b, dims, seed):
    rng = np.random.default_rng(seed)
    logits = _logits(rng, b, dims)
    w = rng.standard_normal(len(dims))
    grads = vjp(logits, dims, w)
    if b == 1 and forward is R.batch_information:  # I = 0 identically: the rounding residue of KL' - A'
        np.testing.assert_allclose(grads[0], 0.0, atol=1e-14 * (1 + float(np.max(np.abs(w), initial=0))))
        return
    f = lambda lg: float(np.sum(w * forward(lg, dims)))  # noqa: E731
    _check(f, [logits], grads, _unit_directions(rng, [logits.shape]))


@given(st.integers(1, 16), st.lists(st.integers(2, 16), min_size=1, max_size=3), st.none() | st.floats(0.0, 50.0),
       seed_st)
def test_objective_information_mode_vjp(b, dims, lam, seed):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(b, 1, 3, 4)) < 0.5).astype(np.float64)
    x_logits, logits = rng.uniform(-8, 8, x.shape), _logits(rng, b, dims)
    info_sum = float(np.sum(R.batch_information(logits, dims)))
    disc = (0.0, _target_away_from(info_sum, sum(np.log(dims))), 100, float(rng.uniform(1, 100)))
    kw = dict(disc_capacity_on="information", disc_aggregate_weight=lam)
    args = (dims, 250, None, disc)
    grads = R.jointvae_objective_vjp(x, x_logits, None, None, logits, *args, 1.3, **kw)
    f = lambda xl, lg: 1.3 * float(R.jointvae_objective(x, xl, None, None, lg, *args, **kw)["total"])  # noqa: E731
    params, directions = [x_logits, logits], _unit_directions(rng, [x.shape, logits.shape])
    for t in (-H_STEP, H_STEP):  # the finite-difference probes never cross the kink
        probe = float(np.sum(R.batch_information(logits + t * directions[1], dims)))
        assert np.sign(probe - disc[1]) == np.sign(info_sum - disc[1])
    _check(f, params, [grads[0], grads[3]], directions)


@given(st.integers(1, 16), st.lists(st.integers(2, 16), min_size=1, max_size=3), st.floats(0.0, 3.0), seed_st)
def test_objective_modes(b, dims, c_max, seed):
    """information: gamma |sum I - C| + lambda sum A (lambda = gamma / 10 by default); equal to the kl mode when
    sum I >= C and lambda = gamma; both modes report info_disc and agg_kl_disc."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(b, 1, 2, 2)) < 0.5).astype(np.float64)
    logits = _logits(rng, b, dims) * 3
    disc = (0.0, c_max, 10, 7.0)
    run = lambda **kw: R.jointvae_objective(x, x, None, None, logits, dims, 20, None, disc, **kw)  # noqa: E731
    kl, info = run(), run(disc_capacity_on="information")
    weighted = run(disc_capacity_on="information", disc_aggregate_weight=2.5)
    at_gamma = run(disc_capacity_on="information", disc_aggregate_weight=7.0)
    c = min(c_max, float(sum(np.log(dims))))
    i_sum, a_sum = float(np.sum(info["info_disc"])), float(np.sum(info["agg_kl_disc"]))
    assert info["cap_loss_disc"] == pytest.approx(7.0 * abs(i_sum - c) + 0.7 * a_sum, rel=1e-13, abs=1e-13)
    assert weighted["cap_loss_disc"] == pytest.approx(7.0 * abs(i_sum - c) + 2.5 * a_sum, rel=1e-13, abs=1e-13)
    assert kl["cap_loss_disc"] == pytest.approx(7.0 * abs(float(np.sum(kl["kl_disc"])) - c), rel=1e-13, abs=1e-13)
    if i_sum >= c:
        assert at_gamma["cap_loss_disc"] == pytest.approx(kl["cap_loss_disc"], rel=1e-12, abs=1e-12)
    for key in ("info_disc", "agg_kl_disc", "kl_disc", "recon"):
        np.testing.assert_array_equal(kl[key], info[key])


# ---- the continuous part: KL_d = I_d + A_d with the moment-matched aggregate posterior ----

cont_st = st.integers(1, 12)


def _normal_kl(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)), the textbook form."""
    return 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)


@given(batch_st, cont_st, st.floats(0.01, 4.0), seed_st)
def test_gaussian_decomposition_and_definitions(b, d, scale, seed):
    """KL_d = I_d + A_d; A_d = KL(N(m, s2) || N(0, 1)) and I_d = mean_b KL(N_b || N(m, s2)), each from the textbook
    Gaussian KL with m, s2 the mixture's mean and variance computed independently; I_d >= 0."""
    mu, logvar = _gaussian(np.random.default_rng(seed), b, d)
    mu = mu * scale
    kl, info = R.kl_normal(mu, logvar), R.gaussian_batch_information(mu, logvar)
    agg = R.kl_gaussian_aggregate(mu, logvar)
    np.testing.assert_allclose(info + agg, kl, rtol=1e-12, atol=1e-12)
    v = np.exp(logvar)
    m = mu.mean(axis=0)
    s2 = np.mean(v + mu ** 2, axis=0) - m ** 2  # E[z^2] - E[z]^2 of the mixture
    np.testing.assert_allclose(R.gaussian_aggregate_moments(mu, logvar)[1], s2, rtol=1e-9)
    np.testing.assert_allclose(agg, _normal_kl(m, s2, 0.0, 1.0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(info, np.mean(_normal_kl(mu, v, m, s2), axis=0), rtol=1e-9, atol=1e-12)
    assert np.all(info >= -1e-12) and np.all(agg >= -1e-12)


@given(batch_st, cont_st, seed_st)
def test_gaussian_information_zero_when_all_rows_equal(b, d, seed):
    """Every image with the same posterior: no information, the whole KL is the aggregate's (the loophole)."""
    mu, logvar = _gaussian(np.random.default_rng(seed), 1, d)
    mu, logvar = np.tile(mu, (b, 1)), np.tile(logvar, (b, 1))
    np.testing.assert_allclose(R.gaussian_batch_information(mu, logvar), 0.0, atol=1e-12)
    np.testing.assert_allclose(R.kl_gaussian_aggregate(mu, logvar), R.kl_normal(mu, logvar), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spread, width", [(1.0, 1e-3), (3.0, 0.1), (0.5, 0.5)])
def test_gaussian_information_of_a_point_code(spread, width):
    """mu = +-spread with equal counts, posterior std `width`: s2 = spread^2 + width^2, A = KL(N(0, s2) || N(0, 1)),
    I = log(s2 / width^2) / 2 (a known answer)."""
    mu = np.array([[spread], [-spread]] * 8)
    logvar = np.full_like(mu, 2 * np.log(width))
    s2 = spread ** 2 + width ** 2
    assert R.gaussian_batch_information(mu, logvar)[0] == pytest.approx(0.5 * np.log(s2 / width ** 2), rel=1e-12)
    assert R.kl_gaussian_aggregate(mu, logvar)[0] == pytest.approx(0.5 * (s2 - 1 - np.log(s2)), rel=1e-12)


def test_gaussian_empty_batch_and_no_units():
    assert R.gaussian_batch_information(np.zeros((0, 3)), np.zeros((0, 3))).tolist() == [0.0] * 3
    assert R.kl_gaussian_aggregate(np.zeros((0, 3)), np.zeros((0, 3))).tolist() == [0.0] * 3
    assert R.kl_gaussian_aggregate(np.zeros((4, 0)), np.zeros((4, 0))).shape == (0,)
    for vjp in (R.gaussian_batch_information_vjp, R.kl_gaussian_aggregate_vjp):
        d_mu, d_logvar = vjp(np.zeros((0, 3)), np.zeros((0, 3)), np.ones(3))
        assert d_mu.shape == d_logvar.shape == (0, 3)
    with pytest.raises(ValueError, match="grad"):
        R.kl_gaussian_aggregate_vjp(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2))


@pytest.mark.parametrize("forward, vjp", [(R.kl_gaussian_aggregate, R.kl_gaussian_aggregate_vjp),
                                          (R.gaussian_batch_information, R.gaussian_batch_information_vjp)])
@given(b=batch_st, d=cont_st, seed=seed_st)
def test_gaussian_vjps_against_finite_differences(forward, vjp, b, d, seed):
    rng = np.random.default_rng(seed)
    mu, logvar = _gaussian(rng, b, d)
    w = rng.standard_normal(d)
    grads = vjp(mu, logvar, w)
    if b == 1 and forward is R.gaussian_batch_information:  # I = 0 identically
        for g in grads:
            np.testing.assert_allclose(g, 0.0, atol=1e-14 * (1 + float(np.max(np.abs(w)))))
        return
    f = lambda m, lv: float(np.sum(w * forward(m, lv)))  # noqa: E731
    _check(f, [mu, logvar], grads, _unit_directions(rng, [mu.shape, logvar.shape]))


@given(st.integers(1, 16), cont_st, st.none() | st.floats(0.0, 50.0), seed_st)
def test_objective_cont_information_mode_vjp(b, d, lam, seed):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(b, 1, 3, 4)) < 0.5).astype(np.float64)
    x_logits = rng.uniform(-8, 8, x.shape)
    mu, logvar = _gaussian(rng, b, d)
    info_sum = float(np.sum(R.gaussian_batch_information(mu, logvar)))
    cont = (0.0, _target_away_from(info_sum), 100, float(rng.uniform(1, 100)))
    kw = dict(cont_capacity_on="information", cont_aggregate_weight=lam)
    args = ([], 250, cont, None)
    none = np.zeros((b, 0))
    grads = R.jointvae_objective_vjp(x, x_logits, mu, logvar, none, *args, 1.3, **kw)
    f = lambda xl, m, lv: 1.3 * float(R.jointvae_objective(x, xl, m, lv, none, *args, **kw)["total"])  # noqa: E731
    params = [x_logits, mu, logvar]
    directions = _unit_directions(rng, [p.shape for p in params])
    for t in (-H_STEP, H_STEP):  # the finite-difference probes never cross the kink
        probe = float(np.sum(R.gaussian_batch_information(mu + t * directions[1], logvar + t * directions[2])))
        assert np.sign(probe - cont[1]) == np.sign(info_sum - cont[1])
    _check(f, params, list(grads[:3]), directions)


@given(st.integers(1, 16), cont_st, st.floats(0.0, 5.0), seed_st)
def test_objective_cont_modes(b, d, c_max, seed):
    """cont information: gamma |sum I - C| + lambda sum A (lambda = gamma / 10 by default); the kl mode is Eq. 7;
    both report info_cont and agg_kl_cont; the discrete term is untouched."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(b, 1, 2, 2)) < 0.5).astype(np.float64)
    mu, logvar = _gaussian(rng, b, d)
    logits = _logits(rng, b, [3])
    cont, disc = (0.0, c_max, 10, 7.0), (0.0, 0.5, 10, 3.0)
    run = lambda **kw: R.jointvae_objective(x, x, mu, logvar, logits, [3], 20, cont, disc, **kw)  # noqa: E731
    kl, info = run(), run(cont_capacity_on="information")
    weighted = run(cont_capacity_on="information", cont_aggregate_weight=2.5)
    i_sum, a_sum = float(np.sum(info["info_cont"])), float(np.sum(info["agg_kl_cont"]))
    assert info["cap_loss_cont"] == pytest.approx(7.0 * abs(i_sum - c_max) + 0.7 * a_sum, rel=1e-13, abs=1e-13)
    assert weighted["cap_loss_cont"] == pytest.approx(7.0 * abs(i_sum - c_max) + 2.5 * a_sum, rel=1e-13, abs=1e-13)
    assert kl["cap_loss_cont"] == pytest.approx(7.0 * abs(float(np.sum(kl["kl_cont"])) - c_max), rel=1e-13,
                                                abs=1e-13)
    for key in ("info_cont", "agg_kl_cont", "kl_cont", "cap_loss_disc", "recon"):
        np.testing.assert_array_equal(kl[key], info[key])


def test_cont_mode_errors_name_the_argument():
    args = (np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), np.zeros((1, 2)), np.zeros((1, 2)), None, [], 0,
            (0.0, 1.0, 10, 1.0), None)
    with pytest.raises(ValueError, match="cont_capacity_on"):
        R.jointvae_objective(*args, cont_capacity_on="tc")
    with pytest.raises(ValueError, match="cont_aggregate_weight"):
        R.jointvae_objective(*args, cont_capacity_on="information", cont_aggregate_weight=-1.0)
