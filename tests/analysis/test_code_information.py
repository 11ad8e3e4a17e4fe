"""analysis/metrics/information.py against closed forms and direct computations (scipy.stats.entropy)."""
import math

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from jointvae_fast.analysis.metrics.information import (
    AZIMUTH_BINS, QUANTILE_BINS, USAGE_THRESHOLD, class_table, code_information, confident_but_uninformative,
    factor_bins, factor_codes, factor_contingency, factor_information, grouped_information, table_information,
)
from jointvae_fast.analysis.metrics.mig import mutual_information


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


def test_factor_bin_labels():
    codes, labels = factor_bins(np.array([0.0, 29.9, 30.0, 359.9, -15.0]), circular=True)
    assert codes.tolist() == [0, 0, 1, 11, 11] and labels[:2] == ["[0, 30)", "[30, 60)"] and len(labels) == 12
    codes, labels = factor_bins(np.array([2, 0, 2]), names=("a", "b", "c"))
    assert codes.tolist() == [1, 0, 1] and labels == ["a", "c"]  # the values present, by name
    assert factor_bins(np.array([0, 5]), names=("a", "b"))[1] == ["0", "5"]  # 5 names nothing: the values
    assert factor_bins(np.array([20.0, 30.0, 20.0]))[1] == ["20", "30"]
    v = np.random.default_rng(3).normal(size=1000)
    codes, labels = factor_bins(v)
    np.testing.assert_array_equal(codes, factor_codes(v))  # one binning
    assert len(labels) == QUANTILE_BINS and labels[0].startswith(f"[{v.min():.3g}, ") and labels[-1].endswith("]")


def _hard_case(seed, m=400, k=5, bins=7):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, k, m)
    f = (c + (rng.random(m) < 0.4) * rng.integers(0, bins, m)) % bins  # f depends on c
    return c, f


@pytest.mark.parametrize("seed", range(3))
def test_contingency_counts_match_a_direct_computation(seed):
    c, f = _hard_case(seed)
    n = factor_contingency(c, 5, f, 7)
    assert n.dtype == np.int64 and n.shape == (5, 7)
    direct, _, _ = np.histogram2d(c, f, bins=[np.arange(6) - 0.5, np.arange(8) - 0.5])
    np.testing.assert_array_equal(n, direct)
    np.testing.assert_array_equal(n.ravel(), np.bincount(c * 7 + f, minlength=35))
    # rows: class usage * M of the argmax of logits with that class on top
    logits = np.random.default_rng(seed).normal(size=(c.size, 5)) + 20.0 * np.eye(5)[c]
    ci = code_information(logits)
    np.testing.assert_array_equal(ci.classes, c)
    np.testing.assert_allclose(n.sum(1), ci.usage * c.size, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(n.sum(0), np.bincount(f, minlength=7))


def test_a_code_equal_to_the_type_gives_a_diagonal_table():
    t = np.random.default_rng(4).integers(0, 7, 300)
    n = factor_contingency(t, 7, t, 7)
    np.testing.assert_array_equal(n, np.diag(np.bincount(t, minlength=7)))
    assert table_information(n) == pytest.approx(entropy(np.bincount(t)), rel=1e-12)  # I = H(type)


@pytest.mark.parametrize("seed", range(3))
def test_information_from_the_tables(seed):
    """The count table's MI is the plug-in MI of the argmax class; factor_information is the MI of the table of
    posterior mass (so of one-hot posteriors it is the count table's MI)."""
    c, f = _hard_case(seed)
    n = factor_contingency(c, 5, f, 7)
    assert table_information(n) == pytest.approx(mutual_information(c, f), rel=1e-9)
    assert table_information(n) == pytest.approx(factor_information(np.eye(5)[c], {"f": f})["f"]["information"],
                                                 rel=1e-9)
    p = softmax(np.random.default_rng(seed).normal(0, 2, (c.size, 5)) + 2.0 * np.eye(5)[c], axis=1)
    soft = class_table(p, f, 7)
    assert soft.shape == (5, 7) and soft.sum() == pytest.approx(c.size)
    fi = factor_information(p, {"f": f})["f"]["information"]
    assert table_information(soft) == pytest.approx(fi, rel=1e-12)
    by_bin = np.stack([p[f == b].mean(0) for b in range(7)])  # independently: H(q(c)) - sum_b p(b) H(q(c|b))
    assert fi == pytest.approx(entropy(p.mean(0)) - np.bincount(f) / c.size @ [entropy(q) for q in by_bin], rel=1e-9)
    assert table_information(n) != pytest.approx(fi, rel=1e-3)  # argmax counts and posteriors differ


def test_warning_rule():
    assert confident_but_uninformative(2.3, 0.03)
    assert not confident_but_uninformative(2.3, 0.61)  # 0.61 >= 0.25 * 2.3
    assert not confident_but_uninformative(0.4, 0.0)  # small KL: nothing to warn about


def test_bad_inputs():
    with pytest.raises(ValueError, match="logits"):
        code_information(np.zeros((4, 1)))
    with pytest.raises(ValueError, match="groups"):
        grouped_information(np.full((4, 2), 0.5), np.zeros(3))
    with pytest.raises(ValueError, match="codes must lie"):
        factor_contingency([0, 1], 2, [0, 3], 3)
    with pytest.raises(ValueError, match="codes must lie"):
        factor_contingency([0, 1], 2, [-1, 0], 3)  # a negative code would wrap silently
    with pytest.raises(ValueError, match="classes must lie"):
        factor_contingency([0, 2], 2, [0, 0], 3)
