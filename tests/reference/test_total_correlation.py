"""reference/total_correlation.py: the estimators' weights, the pairwise log-densities against a plain loop, the
VJPs against finite differences, closed forms, and the batch estimator converging to the exact total correlation
of a toy dataset (fixed seeds)."""
import functools
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from tests.reference.test_vjp_finite_differences import _check, _unit_directions

seed_st = st.integers(0, 2**32 - 1)
dims_st = st.lists(st.integers(2, 6), min_size=0, max_size=3)


def _problem(rng, b, d, dims, mu_scale=3.0, lv_range=(-10.0, 5.0), hard=False):
    """Posterior parameters and a latent sampled from them: (z, mu, logvar, y, logits)."""
    mu = rng.standard_normal((b, d)) * mu_scale
    logvar = rng.uniform(*lv_range, (b, d))
    z = mu + np.exp(logvar / 2) * rng.standard_normal((b, d))
    logits = rng.standard_normal((b, sum(dims))) * 3
    if hard:
        y = R.one_hot_argmax(logits + rng.gumbel(size=logits.shape), dims)
    else:
        y = R.gumbel_softmax(logits, rng.uniform(0.01, 0.99, logits.shape), 0.67, dims)
    return z, mu, logvar, y, logits


# ----------------------------------------------------------------------------------------------- the weights


@pytest.mark.parametrize("b,n", [(2, 2), (2, 9), (3, 3), (5, 7), (7, 60000), (64, 60000)])
def test_mss_weights_structure_and_rows_sum_to_one(b, n):
    w = np.exp(R.log_importance_weights(b, n, "mss"))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.diag(w), 1.0 / n, rtol=1e-14)
    rows = np.arange(b)
    np.testing.assert_allclose(w[rows, (rows + 1) % b], (n - b + 1) / (n * (b - 1)), rtol=1e-14)
    rest = np.ones((b, b), bool)
    rest[rows, rows] = rest[rows, (rows + 1) % b] = False
    np.testing.assert_allclose(w[rest], 1.0 / (b - 1), rtol=1e-14)
    assert rest.sum(axis=1).tolist() == [b - 2] * b


def test_mws_weights_and_batch_of_one():
    np.testing.assert_allclose(R.log_importance_weights(4, 10, "mws"), -math.log(40.0), rtol=1e-15)
    for est in R.TC_ESTIMATORS:
        np.testing.assert_allclose(R.log_importance_weights(1, 10, est), [[-math.log(10.0)]], rtol=1e-15)


@pytest.mark.parametrize("b,n", [(2, 4), (3, 5), (4, 6)])
def test_mss_is_unbiased_for_the_aggregate_density(b, n):
    """Over every ordered batch of distinct points (a uniform draw without replacement), the mean of
    sum_m W[r, m] q_idx[m] given the point at row r is (1/N) sum_j q_j: exact enumeration, any row r."""
    q = np.random.default_rng(b * n).uniform(0.1, 5.0, n)  # q(z | x_j) at a fixed z
    w = np.exp(R.log_importance_weights(b, n, "mss"))
    for r in range(b):
        for anchor in range(n):
            batches = [p for p in itertools.permutations(range(n), b) if p[r] == anchor]
            mean = np.mean([w[r] @ q[list(p)] for p in batches])
            assert mean == pytest.approx(q.mean(), rel=1e-13)


def test_bad_weights_arguments():
    with pytest.raises(ValueError, match="batch <= dataset_size.*batch 5, dataset_size 4"):
        R.log_importance_weights(5, 4)
    with pytest.raises(ValueError, match="batch <= dataset_size.*batch 0"):
        R.log_importance_weights(0, 4)
    with pytest.raises(ValueError, match="estimator.*'iwae'"):
        R.log_importance_weights(2, 4, "iwae")
    z, mu, lv, y, lg = _problem(np.random.default_rng(0), 3, 2, [3])
    with pytest.raises(ValueError, match=r"log_weights must have shape \(3, 3\)"):
        R.tc_pairwise(z, mu, lv, y, lg, [3], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="z must have the shape of mu"):
        R.tc_pairwise(z[:, :1], mu, lv, y, lg, [3], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="y must have the shape of logits"):
        R.tc_pairwise(z, mu, lv, y[:, :2], lg, [3], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="grad_marginals"):
        R.tc_pairwise_vjp(z, mu, lv, y, lg, [3], np.zeros((3, 3)), np.ones(3), np.ones((3, 2)))


# ------------------------------------------------------------------------------------- values and gradients


def _loop_pairwise(z, mu, logvar, y, logits, dims, w):
    """log_q_joint and log_q_marginals from scalar math, one (n, m) pair at a time (an independent transcription)."""
    b, d = mu.shape
    log_pi = R.log_softmax_blocks(logits, dims, np)
    bounds = np.cumsum([0] + list(dims))
    joint, marg = np.zeros(b), np.zeros((b, d + len(dims)))
    for n in range(b):
        terms_joint, terms_marg = [], [[] for _ in range(d + len(dims))]
        for m in range(b):
            la = [-0.5 * math.log(2 * math.pi * math.exp(logvar[m, k])) - (z[n, k] - mu[m, k]) ** 2
                  / (2 * math.exp(logvar[m, k])) for k in range(d)]
            lb = [float(np.dot(y[n, bounds[i]:bounds[i + 1]], log_pi[m, bounds[i]:bounds[i + 1]]))
                  for i in range(len(dims))]
            terms_joint.append(w[n, m] + sum(la) + sum(lb))
            for j, v in enumerate(la + lb):
                terms_marg[j].append(w[n, m] + v)
        top = max(terms_joint)
        joint[n] = top + math.log(sum(math.exp(t - top) for t in terms_joint))
        for j, ts in enumerate(terms_marg):
            top = max(ts)
            marg[n, j] = top + math.log(sum(math.exp(t - top) for t in ts))
    return joint, marg


@given(st.integers(1, 6), st.integers(0, 4), dims_st, st.sampled_from(R.TC_ESTIMATORS), seed_st)
def test_pairwise_matches_a_plain_loop(b, d, dims, estimator, seed):
    if d == 0 and not dims:
        d = 1
    rng = np.random.default_rng(seed)
    z, mu, lv, y, lg = _problem(rng, b, d, dims, lv_range=(-3.0, 3.0))
    w = R.log_importance_weights(b, b + int(rng.integers(0, 100)), estimator)
    joint, marg = R.tc_pairwise(z, mu, lv, y, lg, dims, w)
    want_joint, want_marg = _loop_pairwise(z, mu, lv, y, lg, dims, w)
    np.testing.assert_allclose(joint, want_joint, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(marg, want_marg, rtol=1e-12, atol=1e-12)
    assert marg.shape == (b, d + len(dims))


@given(st.integers(1, 12), st.integers(0, 6), dims_st, st.sampled_from([0.3, 3.0, 100.0]),
       st.sampled_from([(-10.0, 5.0), (-10.0, -8.0), (3.0, 5.0), (-1.0, 1.0)]), st.booleans(), seed_st)
def test_pairwise_vjp_against_finite_differences(b, d, dims, mu_scale, lv_range, hard, seed):
    rng = np.random.default_rng(seed)
    z, mu, lv, y, lg = _problem(rng, b, d, dims, mu_scale, lv_range, hard)
    w = R.log_importance_weights(b, b + 17, "mss" if seed % 2 else "mws")
    gj, gm = rng.standard_normal(b), rng.standard_normal((b, d + len(dims)))
    grads = R.tc_pairwise_vjp(z, mu, lv, y, lg, dims, w, gj, gm)
    assert [g.shape for g in grads] == [z.shape, mu.shape, lv.shape, y.shape, lg.shape]

    def f(z_, mu_, lv_, y_, lg_):
        joint, marg = R.tc_pairwise(z_, mu_, lv_, y_, lg_, dims, w)
        return float(np.sum(gj * joint) + np.sum(gm * marg))

    params = [z, mu, lv, y, lg]
    _check(f, params, grads, _unit_directions(rng, [p.shape for p in params]))


@given(st.integers(1, 10), st.integers(0, 5), dims_st, st.sampled_from(R.TC_ESTIMATORS), seed_st)
def test_total_correlation_vjp_against_finite_differences(b, d, dims, estimator, seed):
    rng = np.random.default_rng(seed)
    z, mu, lv, y, lg = _problem(rng, b, d, dims, lv_range=(-4.0, 3.0))
    n = b + 50
    grads = R.total_correlation_vjp(z, mu, lv, y, lg, dims, n, 1.7, estimator)
    f = lambda *p: 1.7 * R.total_correlation(*p, dims, n, estimator)["tc"]  # noqa: E731
    params = [z, mu, lv, y, lg]
    _check(f, params, grads, _unit_directions(rng, [p.shape for p in params]))


# ------------------------------------------------------------------------------------------------ closed forms


@given(st.integers(0, 5), dims_st, st.integers(1, 10**6), st.sampled_from(R.TC_ESTIMATORS), seed_st)
def test_batch_of_one(d, dims, n, estimator, seed):
    """B = 1: every log-density is the row's own posterior density minus log N."""
    if d == 0 and not dims:
        d = 1
    z, mu, lv, y, lg = _problem(np.random.default_rng(seed), 1, d, dims)
    joint, marg = R.tc_pairwise(z, mu, lv, y, lg, dims, R.log_importance_weights(1, n, estimator))
    own = R.log_posterior(z, mu, lv, y, lg, dims)
    assert joint[0] == pytest.approx(own[0] - math.log(n), rel=1e-12, abs=1e-12)
    assert np.sum(marg) == pytest.approx(own[0] - (d + len(dims)) * math.log(n), rel=1e-12, abs=1e-10)


@given(st.integers(1, 16), st.integers(0, 5), dims_st, st.sampled_from(R.TC_ESTIMATORS), seed_st)
def test_identical_posteriors_factorise(b, d, dims, estimator, seed):
    """Every row has the same posterior, so q(z, c) is that factorised posterior: TC = 0 with MSS (its rows sum
    to 1), and (J - 1) log N with MWS (each log-density lower by log N); I = 0 and the decomposition adds up."""
    if d == 0 and not dims:
        d = 1
    rng = np.random.default_rng(seed)
    z, mu, lv, y, lg = _problem(rng, b, d, dims)
    mu, lv, lg = (np.repeat(a[:1], b, axis=0) for a in (mu, lv, lg))
    n = b + int(rng.integers(0, 1000))
    out = R.total_correlation(z, mu, lv, y, lg, dims, n, estimator)
    j = d + len(dims)
    want_tc = 0.0 if estimator == "mss" and b > 1 else (j - 1) * math.log(n)
    assert out["tc"] == pytest.approx(want_tc, abs=1e-9 * (1 + j * math.log(n)))
    kl = np.mean(R.log_posterior(z, mu, lv, y, lg, dims) - np.sum(R.log_prior(z, y, dims), axis=1))
    assert out["index_code_mi"] + out["tc"] + out["dim_kl"] == pytest.approx(kl, abs=1e-9)
    if estimator == "mss" and b > 1:
        assert out["index_code_mi"] == pytest.approx(0.0, abs=1e-9)


def _tc(z, mu, lv, y, lg, dims, log_weights):
    joint, marg = R.tc_pairwise(z, mu, lv, y, lg, dims, log_weights)
    return R.tc_decomposition(joint, marg, R.log_posterior(z, mu, lv, y, lg, dims), R.log_prior(z, y, dims))["tc"]


@pytest.mark.parametrize("d,k", [(2, None), (3, None), (1, 3), (2, 4)])
def test_perfectly_correlated_units(d, k):
    """N well-separated points; every continuous unit of point j is centred on t_j (the units are copies of one
    another) and, with a discrete variable, its class is j mod K (exactly: logits +-1e4). With the whole dataset
    as the batch and weights 1/N (the exact aggregate posterior), q(z, c) = q(z_n, c_n | x_n) / N at the samples,
    each unit's marginal q(z_n,d | x_n) / N and q(c) = 1/K, so TC = (d - 1) log N + log K. MWS adds (J - 1) log N
    (J = d + V); without a discrete variable MSS is exact too (only the 1/N diagonal weight counts)."""
    n = 4 * (k or 3)
    mu = np.repeat((np.arange(n) * 10.0)[:, None], d, axis=1)
    lv = np.full((n, d), math.log(0.01))
    z = mu + 0.1 * np.random.default_rng(d).standard_normal((n, d)).clip(-3, 3)
    dims = [k] if k else []
    lg = np.full((n, sum(dims)), -1e4)
    if k:
        lg[np.arange(n), np.arange(n) % k] = 1e4
    y = R.one_hot_argmax(lg, dims)
    want = (d - 1) * math.log(n) + (math.log(k) if k else 0.0)
    assert _tc(z, mu, lv, y, lg, dims, np.full((n, n), -math.log(n))) == pytest.approx(want, rel=1e-12)
    mws = R.total_correlation(z, mu, lv, y, lg, dims, n, "mws")["tc"]
    assert mws == pytest.approx(want + (d + len(dims) - 1) * math.log(n), rel=1e-12)
    if not k:
        assert R.total_correlation(z, mu, lv, y, lg, dims, n, "mss")["tc"] == pytest.approx(want, rel=1e-12)


def test_continuous_variant_is_the_joint_without_the_discrete_part():
    """TC over z alone = the same estimator with logits and y of width 0."""
    rng = np.random.default_rng(5)
    z, mu, lv, y, lg = _problem(rng, 9, 3, [4])
    cont = R.total_correlation(z, mu, lv, y[:, :0], lg[:, :0], [], 100)
    joint = R.total_correlation(z, mu, lv, y, lg, [4], 100)
    assert cont["tc"] != pytest.approx(joint["tc"])
    w = R.log_importance_weights(9, 100)
    jz, mz = R.tc_pairwise(z, mu, lv, y[:, :0], lg[:, :0], [], w)
    assert cont["tc"] == pytest.approx(np.mean(jz - mz.sum(axis=1)), rel=1e-14)


def test_extremes_stay_finite():
    """logvar -10 and 5, |mu| up to 1e3, logits +-1e4, one-hot and relaxed y: values and gradients finite."""
    rng = np.random.default_rng(1)
    b, d, dims = 8, 3, [3, 2]
    mu = rng.choice([-1e3, 0.0, 1e3], (b, d))
    lv = rng.choice([-10.0, 5.0], (b, d))
    z = mu + np.exp(lv / 2) * rng.standard_normal((b, d))
    lg = rng.choice([-1e4, 1e4], (b, 5))
    y = R.one_hot_argmax(lg, dims)
    w = R.log_importance_weights(b, 100)
    for arr in (*R.tc_pairwise(z, mu, lv, y, lg, dims, w),
                *R.tc_pairwise_vjp(z, mu, lv, y, lg, dims, w, np.ones(b), -np.ones((b, d + 2)))):
        assert np.all(np.isfinite(arr))


# ------------------------------------------------------------------------------------- the toy aggregate posterior


class Toy:
    """A finite dataset of N points with Gaussian posteriors over D = 2 units and a K = 3 categorical, correlated
    through a latent t; its exact TC by quadrature (601^2 grid over [-6, 6]^2, summing the classes)."""

    N, D, K = 48, 2, 3

    def __init__(self):
        rng = np.random.default_rng(0)
        t = rng.standard_normal(self.N)
        self.mu = np.stack([t + 0.3 * rng.standard_normal(self.N), 0.8 * t + 0.5 * rng.standard_normal(self.N)], 1)
        self.logvar = np.log(rng.uniform(0.05, 0.4, (self.N, self.D)))
        self.logits = np.stack([2 * t, -t, np.full(self.N, 0.5)], 1) + 0.3 * rng.standard_normal((self.N, self.K))
        self.log_pi = R.log_softmax_blocks(self.logits, [self.K], np)

    @functools.cached_property
    def exact_tc(self):
        g = np.linspace(-6, 6, 601)
        a = [-0.5 * (math.log(2 * math.pi) + self.logvar[None, :, d] + (g[:, None] - self.mu[None, :, d]) ** 2
                     / np.exp(self.logvar[None, :, d])) for d in range(2)]  # [G, N] each
        lse = lambda x, axis: np.log(np.sum(np.exp(x - x.max(axis, keepdims=True)), axis)) + x.max(axis)  # noqa: E731
        lq1, lq2, lqc = (lse(x, ax) - math.log(self.N) for x, ax in ((a[0], 1), (a[1], 1), (self.log_pi, 0)))
        total, mass = 0.0, 0.0
        for c in range(self.K):
            lj = lse(a[0][:, None, :] + a[1][None, :, :] + self.log_pi[None, None, :, c], 2) - math.log(self.N)
            q = np.exp(lj) * (g[1] - g[0]) ** 2
            total += float(np.sum(q * (lj - lq1[:, None] - lq2[None, :] - lqc[c])))
            mass += float(q.sum())
        assert mass == pytest.approx(1.0, abs=1e-8)
        return total

    def batches(self, b, count, seed):
        """(z, mu, logvar, y one-hot, logits) of `count` uniformly drawn batches, each latent freshly sampled."""
        rng = np.random.default_rng(seed)
        for _ in range(count):
            idx = rng.permutation(self.N)[:b]
            mu, lv, lg = self.mu[idx], self.logvar[idx], self.logits[idx]
            z = mu + np.exp(lv / 2) * rng.standard_normal(mu.shape)
            yield z, mu, lv, R.one_hot_argmax(lg + rng.gumbel(size=lg.shape), [self.K]), lg


@pytest.fixture(scope="module")
def toy():
    return Toy()


@pytest.mark.parametrize("b,count,bias", [(48, 600, 0.01), (16, 1500, 0.05)])
def test_mss_converges_to_the_exact_tc(toy, b, count, bias):
    """The mean over many batches of the MSS estimate is within 4 standard errors (plus the log's small Jensen bias,
    which shrinks as B grows) of the exact TC (0.517 nats here); the whole dataset as the batch: bias < 0.01."""
    exact = toy.exact_tc
    assert 0.3 < exact < 0.8
    tcs = np.array([R.total_correlation(*p, [toy.K], toy.N, "mss")["tc"] for p in toy.batches(b, count, seed=b)])
    assert abs(tcs.mean() - exact) < 4 * tcs.std() / math.sqrt(count) + bias


def test_mws_is_offset_by_j_minus_one_log_n(toy):
    """MWS with the whole dataset as the batch: its log-densities are the exact ones minus log N, so the mean of its
    TC estimates is the exact TC plus (J - 1) log N (J = 3 factors here) -- not comparable in nats, which is why
    MSS is the default."""
    exact, count = toy.exact_tc, 600
    tcs = np.array([R.total_correlation(*p, [toy.K], toy.N, "mws")["tc"] for p in toy.batches(toy.N, count, seed=7)])
    offset = 2 * math.log(toy.N)
    assert abs(tcs.mean() - offset - exact) < 4 * tcs.std() / math.sqrt(count) + 0.01
