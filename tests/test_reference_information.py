"""reference/information.py and the objective's information mode: closed forms, the decomposition
KL_i = I_i + A_i, extremes, finite-difference VJPs (the harness of test_reference_gradients.py)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from test_reference_gradients import H_STEP, _check, _logits, _target_away_from, _unit_directions

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
