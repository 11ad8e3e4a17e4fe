"""analysis/metrics/information.py against closed forms and direct computations (scipy.stats.entropy)."""
import math

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from jointvae_fast.analysis.metrics.information import (
    AZIMUTH_BINS, QUANTILE_BINS, USAGE_THRESHOLD, code_information, confident_but_uninformative, factor_codes,
    factor_information, grouped_information,
)


def _direct(logits):
    """I(x; c), KL(q(c) || uniform), mean_n KL(q(c|x_n) || uniform), one image at a time with scipy."""
    p = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    k = p.shape[1]
    agg = p.mean(0)
    info = entropy(agg) - np.mean([entropy(row) for row in p])
    return info, entropy(agg, np.full(k, 1 / k)), np.mean([entropy(row, np.full(k, 1 / k)) for row in p])


def test_identical_rows_carry_no_information():
    row = np.array([3.0, -1.0, 0.5, 2.0])
    r = code_information(np.tile(row, (50, 1)))
    assert r.information == pytest.approx(0.0, abs=1e-12)
    p = softmax(row)
    assert r.aggregate_kl == pytest.approx(math.log(4) - entropy(p), rel=1e-12)
    assert r.classes_in_use == 1 and r.usage.tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("k", [2, 7, 10])
def test_distinct_one_hots_spread_uniformly_give_log_k(k):
    logits = np.tile(np.eye(k) * 60.0, (5, 1))  # q(c|x) one-hot, every class 5 times
    r = code_information(logits)
    assert r.information == pytest.approx(math.log(k), abs=1e-9)
    assert r.aggregate_kl == pytest.approx(0.0, abs=1e-9)
    assert r.classes_in_use == k
    np.testing.assert_allclose(r.usage, np.full(k, 1 / k))


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_scipy_and_the_kl_decomposition(seed):
    rng = np.random.default_rng(seed)
    m, k = rng.integers(20, 200), rng.integers(2, 12)
    logits = rng.normal(0, rng.uniform(0.1, 5), (m, k)) + rng.normal(0, 2, k)
    r = code_information(logits)
    info, agg_kl, mean_kl = _direct(logits)
    assert r.information == pytest.approx(info, rel=1e-9, abs=1e-12)
    assert r.aggregate_kl == pytest.approx(agg_kl, rel=1e-9, abs=1e-12)
    assert r.information + r.aggregate_kl == pytest.approx(mean_kl, rel=1e-9)  # KL_c = I + KL(q(c) || p)
    counts = np.bincount(logits.argmax(1), minlength=k)
    np.testing.assert_allclose(r.usage, counts / m)
    assert r.classes_in_use == int((counts / m >= USAGE_THRESHOLD).sum())


def test_agrees_with_the_reference_batch_formulas():
    """The oracle's batch decomposition (reference/information.py) on several variables at once."""
    import reference

    rng = np.random.default_rng(11)
    dims = [3, 10, 2]
    logits = rng.normal(0, 3, (64, sum(dims)))
    blocks = np.split(logits, np.cumsum(dims)[:-1], axis=1)
    ours = [code_information(b) for b in blocks]
    np.testing.assert_allclose([r.information for r in ours], reference.batch_information(logits, dims), rtol=1e-9)
    np.testing.assert_allclose([r.aggregate_kl for r in ours], reference.kl_aggregate(logits, dims), rtol=1e-9)


def test_classes_in_use_threshold_is_one_percent():
    # 1000 images: class 0 holds 985, class 1 ten (1.0%), class 2 five (0.5%)
    logits = np.zeros((1000, 3))
    logits[:985, 0] = logits[985:995, 1] = logits[995:, 2] = 50.0
    r = code_information(logits)
    assert r.classes_in_use == 2


def test_grouped_information_equals_plug_in_mutual_information_for_one_hots():
    rng = np.random.default_rng(1)
    c = rng.integers(0, 4, 500)
    f = (c + (rng.random(500) < 0.3) * rng.integers(0, 3, 500)) % 3  # f depends on c
    joint = np.zeros((4, 3))
    np.add.at(joint, (c, f), 1 / 500)
    direct = (joint[joint > 0] * np.log(joint[joint > 0] / np.outer(joint.sum(1), joint.sum(0))[joint > 0])).sum()
    assert grouped_information(np.eye(4)[c], f) == pytest.approx(direct, rel=1e-9)
    # grouping by the image itself gives I(x; c); a single group gives 0
    p = softmax(rng.normal(size=(60, 5)), axis=1)
    assert grouped_information(p, np.arange(60)) == pytest.approx(grouped_information(p), rel=1e-12)
    assert grouped_information(p, np.zeros(60)) == pytest.approx(0.0, abs=1e-12)


def test_factor_information_normalised_by_factor_entropy():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 7, 700)
    probs = np.eye(7)[t]
    res = factor_information(probs, {"type": t, "noise": rng.integers(0, 7, 700), "const": np.zeros(700, int)})
    assert res["type"]["normalized"] == pytest.approx(1.0, abs=1e-12)
    assert res["type"]["factor_entropy"] == pytest.approx(entropy(np.bincount(t)), rel=1e-12)
    assert res["noise"]["normalized"] < 0.05
    assert res["const"]["normalized"] is None and res["const"]["information"] == pytest.approx(0.0, abs=1e-12)


def test_factor_codes():
    deg = np.array([0.0, 29.9, 30.0, 359.9, 360.0, -15.0, 180.0])
    assert factor_codes(deg, circular=True).tolist() == [0, 0, 1, 11, 0, 11, 6]
    assert factor_codes(np.deg2rad(deg), circular=True).tolist() == [0, 0, 1, 11, 0, 11, 6]
    assert factor_codes(np.arange(0, 360, 15), circular=True).tolist() == [b for b in range(12) for _ in (0, 1)]
    assert factor_codes(np.array(["a", "b", "a"])).tolist() == [0, 1, 0]
    assert factor_codes(np.arange(100)).tolist() == list(range(100))  # integers: as they are
    assert factor_codes(np.array([5, 3, 5, 9])).tolist() == [1, 0, 1, 2]
    assert factor_codes(np.array([20.0, 30.0, 20.0])).tolist() == [0, 1, 0]  # few values: as is
    v = np.random.default_rng(3).normal(size=1000)
    codes = factor_codes(v)
    np.testing.assert_array_equal(np.bincount(codes), np.full(QUANTILE_BINS, 100))  # quantile bins: equal counts
    assert all(v[codes == b].max() < v[codes == b + 1].min() for b in range(QUANTILE_BINS - 1))
    assert AZIMUTH_BINS == 12


def test_warning_rule():
    assert confident_but_uninformative(2.3, 0.03)
    assert not confident_but_uninformative(2.3, 0.61)  # 0.61 >= 0.25 * 2.3
    assert not confident_but_uninformative(0.4, 0.0)  # small KL: nothing to warn about


def test_bad_inputs():
    with pytest.raises(ValueError, match="logits"):
        code_information(np.zeros((4, 1)))
    with pytest.raises(ValueError, match="groups"):
        grouped_information(np.full((4, 2), 0.5), np.zeros(3))
