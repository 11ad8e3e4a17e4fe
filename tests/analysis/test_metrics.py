"""Accuracy (Hungarian, majority), MIG and circular correlations on constructed cases with known answers."""
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jointvae_fast.analysis.metrics.accuracy import contingency, hungarian_accuracy, majority_accuracy
from jointvae_fast.analysis.metrics.circular import (
    azimuth_units,
    best_unit_pair,
    pair_angle,
    circular_correlation,
    circular_linear_correlation,
    circular_linear_fit,
)
from jointvae_fast.analysis.metrics.mig import discretize, discretize_factor, entropy, mig, mutual_information

# ---------------------------------------------------------------- accuracy


def test_permuted_labels_score_100_percent():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000)
    perm = rng.permutation(10)
    clusters = perm[labels]
    h = hungarian_accuracy(clusters, labels)
    assert h.accuracy == 1.0
    assert h.mapping == {int(perm[l]): l for l in range(10)}
    assert majority_accuracy(clusters, labels).accuracy == 1.0


def test_random_assignment_near_chance():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 20000)
    clusters = rng.integers(0, 10, 20000)
    assert abs(hungarian_accuracy(clusters, labels).accuracy - 0.1) < 0.015
    assert 0.09 < majority_accuracy(clusters, labels).accuracy < 0.125


def test_known_small_case():
    # cluster 0: labels 5,5,5,7 ; cluster 1: 5,5 ; cluster 2: 7
    clusters = [0, 0, 0, 0, 1, 1, 2]
    labels = [5, 5, 5, 7, 5, 5, 7]
    h = hungarian_accuracy(clusters, labels)
    assert h.accuracy == pytest.approx(4 / 7) and h.mapping == {0: 5, 2: 7}
    m = majority_accuracy(clusters, labels)
    assert m.accuracy == pytest.approx(6 / 7) and m.mapping == {0: 5, 1: 5, 2: 7}


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_hungarian_is_best_one_to_one_map(pairs):
    c, l = (np.array(v) for v in zip(*pairs))
    table, _, _ = contingency(c, l)
    k = max(table.shape)
    padded = np.zeros((k, k), dtype=np.int64)
    padded[: table.shape[0], : table.shape[1]] = table
    brute = max(sum(padded[i, p[i]] for i in range(k)) for p in permutations(range(k))) / len(c)
    h, m = hungarian_accuracy(c, l).accuracy, majority_accuracy(c, l).accuracy
    assert h == pytest.approx(brute)
    assert h <= m + 1e-12 <= 1 + 1e-12


def test_accuracy_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        hungarian_accuracy([0, 1], [0])
    with pytest.raises(TypeError, match="labels"):
        majority_accuracy([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="clusters"):
        hungarian_accuracy(np.zeros((2, 2), dtype=int), [0, 1])


# ---------------------------------------------------------------- MIG


def test_entropy_and_mutual_information_closed_forms():
    a = np.tile(np.arange(4), 25)
    assert entropy(a) == pytest.approx(np.log(4))
    assert mutual_information(a, a) == pytest.approx(np.log(4))
    assert mutual_information(a, 10 * a + 3) == pytest.approx(np.log(4))
    b = np.repeat([0, 1], 50)  # independent of a by construction (each pair occurs equally)
    a2 = np.tile(np.arange(2), 50)
    assert mutual_information(a2, b) == pytest.approx(0.0, abs=1e-12)
    assert discretize(np.array([0.0, 0.5, 1.0, 0.99]), 2).tolist() == [0, 1, 1, 1]
    # a factor with few distinct values is kept as is (40 orientations), one with many is binned
    orient = np.linspace(0, 2 * np.pi, 40)[np.arange(400) % 40]
    assert np.unique(discretize_factor(orient)).size == 40
    assert np.unique(discretize_factor(np.linspace(0, 1, 400), bins=20)).size == 20


def _factor_data(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    f = {"shape": rng.integers(0, 3, n), "scale": rng.integers(0, 6, n), "azimuth": rng.uniform(0, 2 * np.pi, n)}
    cont = np.stack(
        [
            0.3 * f["scale"] + rng.normal(0, 0.01, n),  # z0 <- scale
            rng.normal(size=n),  # z1 noise
            np.cos(0.0) * f["azimuth"] - 2.0,  # z2 <- azimuth (monotone)
            rng.normal(size=n),  # z3 noise
        ],
        axis=1,
    )
    disc = np.stack([np.array([2, 0, 1])[f["shape"]]], axis=1)  # c0 <- shape (relabelled)
    return cont, disc, f, rng


def test_mig_one_latent_per_factor_near_one():
    cont, disc, f, _ = _factor_data()
    r = mig(cont, disc, f)
    assert r.top_latent == {"shape": "c0", "scale": "z0", "azimuth": "z2"}
    assert r.mig > 0.95, r.gaps
    assert r.mutual_information.shape == (5, 3)
    assert r.factor_entropy[0] == pytest.approx(np.log(3), abs=0.01)


def test_mig_shuffled_near_zero():
    cont, disc, f, rng = _factor_data(seed=1)
    cont = np.stack([rng.permutation(c) for c in cont.T], axis=1)
    disc = rng.permutation(disc)
    r = mig(cont, disc, f)
    assert 0.0 <= r.mig < 0.03, r.gaps


def test_mig_bad_inputs():
    cont, disc, f, _ = _factor_data(n=100)
    with pytest.raises(ValueError, match="two latents"):
        mig(cont[:, :1], None, f)
    with pytest.raises(ValueError, match="factor 'x'"):
        mig(cont, disc, {"x": np.zeros(7, dtype=int)})
    with pytest.raises(ValueError, match="bins"):
        mig(cont, disc, f, bins=0)


# ---------------------------------------------------------------- circular


def _mardia_by_correlations(x, t):
    rxc = np.corrcoef(x, np.cos(t))[0, 1]
    rxs = np.corrcoef(x, np.sin(t))[0, 1]
    rcs = np.corrcoef(np.cos(t), np.sin(t))[0, 1]
    return np.sqrt((rxc**2 + rxs**2 - 2 * rxc * rxs * rcs) / (1 - rcs**2))


def _fisher_lee_pairwise(a, b):
    i, j = np.triu_indices(len(a), 1)
    sa, sb = np.sin(a[i] - a[j]), np.sin(b[i] - b[j])
    return (sa * sb).sum() / np.sqrt((sa**2).sum() * (sb**2).sum())


def test_circular_linear_perfect_sinusoid_is_one_and_fit_is_recovered():
    t = np.random.default_rng(2).uniform(0, 2 * np.pi, 2000)
    x = 3.0 - 2.0 * np.cos(t - 1.0)  # = 3 + 2 cos(t - 1 - pi)
    fit = circular_linear_fit(x, t)
    assert fit.r == pytest.approx(1.0, abs=1e-9)
    assert fit.offset == pytest.approx(3.0) and fit.amplitude == pytest.approx(2.0)
    assert np.cos(fit.phase - (1.0 - np.pi)) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.predict(t), x, atol=1e-9)


def test_circular_linear_noise_near_zero_and_matches_mardia_formula():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 2 * np.pi, 4000)
    x = rng.normal(size=4000)
    r = circular_linear_correlation(x, t)
    assert r < 0.06
    y = np.cos(t) + 0.5 * np.sin(t) + rng.normal(0, 1.0, 4000)  # partial dependence
    assert circular_linear_correlation(y, t) == pytest.approx(_mardia_by_correlations(y, t), rel=1e-9)
    assert r == pytest.approx(_mardia_by_correlations(x, t), rel=1e-9)


def test_fisher_lee_linear_maps_of_angle():
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 2 * np.pi, 3000)
    assert circular_correlation(a, np.mod(a + 0.7, 2 * np.pi)) == pytest.approx(1.0, abs=1e-9)
    assert circular_correlation(a, 2.0 - a) == pytest.approx(-1.0, abs=1e-9)
    assert abs(circular_correlation(a, rng.uniform(0, 2 * np.pi, 3000))) < 0.06
    small_a, small_b = rng.uniform(0, 6, 60), rng.uniform(0, 6, 60)
    assert circular_correlation(small_a, small_b) == pytest.approx(_fisher_lee_pairwise(small_a, small_b), rel=1e-9)


def test_best_unit_pair_finds_the_cos_sin_pair():
    rng = np.random.default_rng(5)
    t = rng.uniform(0, 2 * np.pi, 1000)
    z = np.stack([2 * np.cos(t) + 1, rng.normal(size=1000), 0.5 * np.sin(t), rng.normal(size=1000)], axis=1)
    pair, rho = best_unit_pair(z, t)
    assert pair == (0, 2) and rho == pytest.approx(1.0, abs=1e-9)


def test_pair_angle_reads_a_sheared_rotated_ellipse_back_as_the_angle():
    rng = np.random.default_rng(6)
    t = rng.uniform(0, 2 * np.pi, 500)
    u, v = 3 * np.cos(t) + 0.2, 1.5 * np.cos(t) - 0.2 * np.sin(t) + 4  # not separable into cos / sin per unit
    np.testing.assert_allclose(np.cos(pair_angle(u, v, t) - t), 1.0, atol=1e-9)
    standardised = np.arctan2((v - v.mean()) / v.std(), (u - u.mean()) / u.std())
    assert abs(circular_correlation(standardised, t)) < 0.8  # the plain atan2 of the two units does not


def _azimuth_case(n=2000, seed=7):
    """Units: z0 inactive, 1e-3 * cos(t) exactly (spuriously perfect); z1, z2 active, (cos t, sin t) with noise;
    z3 active noise; z4 inactive, tiny noise plus 1e-3 * sin(t)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    z = np.stack([1e-3 * np.cos(t), np.cos(t) + rng.normal(0, 0.4, n), np.sin(t) + rng.normal(0, 0.4, n),
                  rng.normal(size=n), 1e-3 * np.sin(t) + 1e-4 * rng.normal(size=n)], axis=1)
    return z, t


def test_azimuth_units_considers_active_units_only():
    z, t = _azimuth_case()
    active = [1, 2, 3]
    everything = azimuth_units(z, t, range(5))
    assert everything.unit == 0 and everything.pair == (0, 4)  # what considering all units would report
    r = azimuth_units(z, t, active)
    assert r.unit in (1, 2) and set(r.per_unit_r) == set(active)
    assert r.fit.r == pytest.approx(max(circular_linear_correlation(z[:, j], t) for j in active), rel=1e-12)
    assert r.pair == (1, 2) and 0.8 < r.pair_rho < 0.99
    one = azimuth_units(z, t, [3])
    assert one.unit == 3 and one.pair is None and np.isnan(one.pair_rho)
    none = azimuth_units(z, t, [])
    assert none.unit is None and none.fit is None and none.pair is None


def test_circular_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        circular_linear_correlation(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="alpha"):
        circular_correlation(np.array([np.nan, 1, 2]), np.zeros(3))
    assert np.isnan(circular_linear_correlation(np.ones(10), np.linspace(0, 6, 10)))
