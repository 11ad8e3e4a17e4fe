"""How much a discrete latent variable says about the image, and about each known factor of the data.

For one discrete variable with K classes and posteriors q(c|x_n) (rows of `probs` [M, K]) on M test images:

- I(x; c) = H(q(c)) - mean_n H(q(c|x_n)),  q(c) = mean_n q(c|x_n) the aggregate posterior
  (the mutual information between image and class when x is uniform over the split);
- KL(q(c) || p(c)) = log K - H(q(c)) for the uniform prior p(c) = 1/K;
  the training objective's KL_c = mean_n KL(q(c|x_n) || p(c)) = I(x; c) + KL(q(c) || p(c));
- class usage u_k = share of images whose argmax class is k; a class is *in use* when u_k >= USAGE_THRESHOLD
  (1%: a class a hundredth of the images fall into);
- I(c; f) for a factor f made discrete (`factor_codes`): the same formula with the images grouped by their
  factor value, q(c|f) = mean of q(c|x) over the images with that value:
  I(c; f) = H(q(c)) - sum_f p(f) H(q(c|f)) <= min(I(x; c), H(f)); normalised: I(c; f) / H(f) in [0, 1];
- both are the mutual information of a joint table t[k, b] (`class_table`: posterior mass of class k in group b;
  for I(x; c) each image is its own group), `table_information`;
- the contingency table n[k, b] (`factor_contingency`): images whose argmax class is k in factor bin b, the same
  table with one-hot weights. Its mutual information is that of the argmax class, not I(c; f) of the posteriors.

All in nats, float64, plug-in (the split is the distribution; no bias correction: on M images an
uninformative grouping into G groups scores about (K-1)(G-1)/(2M) nats).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mig import entropy

USAGE_THRESHOLD = 0.01  # a class is in use when at least this share of the images has it as argmax
AZIMUTH_BINS = 12  # equal bins over the circle (30 degrees each)
QUANTILE_BINS = 10  # continuous factors: quantile bins (equal counts)
# "confident but uninformative": the variable's KL_c is large but little of it is information about x
WARN_KL = 0.5  # nats: KL_c above this ...
WARN_INFO_SHARE = 0.25  # ... with I(x; c) below this share of KL_c


@dataclass(frozen=True)
class CodeInformation:
    information: float  # I(x; c), nats
    aggregate_kl: float  # KL(q(c) || uniform), nats
    usage: np.ndarray  # [K] share of images per argmax class
    classes_in_use: int  # classes with usage >= USAGE_THRESHOLD
    classes: np.ndarray  # [M] argmax class of each image (usage and `factor_contingency` count these)


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of a probability matrix [..., K] (0 log 0 = 0)."""
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(-1)


def class_table(weights, codes, bins: int) -> np.ndarray:
    """t[k, b] = sum of weights[n, k] over the images n with codes[n] = b: [K, bins] from weights [M, K] (one-hot
    argmax classes: counts; posteriors q(c|x): posterior mass) and codes [M] in [0, bins); weights' dtype."""
    w = np.asarray(weights)
    g = np.asarray(codes).reshape(-1)
    if w.ndim != 2 or g.shape[0] != w.shape[0]:
        raise ValueError(f"codes must have one value per row of weights [M, K], got {g.shape[0]} and {w.shape}")
    if g.size and (g.min() < 0 or g.max() >= bins):
        raise ValueError(f"codes must lie in [0, {bins}), got {g.min()}..{g.max()}")
    t = np.zeros((bins, w.shape[1]), dtype=w.dtype)
    np.add.at(t, g, w)
    return np.ascontiguousarray(t.T)


def table_information(table) -> float:
    """Mutual information (nats) of the joint distribution t / sum t of a table [K, B] >= 0 (classes x groups):
    H(sum_b t[:, b]) - sum_b t.b H(t[:, b] / t.b), t.b the column share; empty columns count nothing."""
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.sum() <= 0:  # NaN passes (and gives NaN)
        raise ValueError(f"table must be [K, B] with a positive sum, got shape {t.shape}")
    t = t / t.sum()
    col = t.sum(0)
    used = col > 0
    within = float((col[used] * _entropy_rows((t[:, used] / col[used]).T)).sum())
    return float(max(_entropy_rows(t.sum(1)) - within, 0.0))


def grouped_information(probs, groups=None) -> float:
    """H(mean_n q_n) - sum_g p(g) H(mean_{n in g} q_n) for probs [M, K]; groups [M] (None: each row its own)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be [M, K] with M >= 1, got shape {p.shape}")
    if groups is None:
        return table_information(p.T)
    g = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    if g.shape[0] != p.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} values, probs {p.shape[0]} rows")
    return table_information(class_table(p, g, int(g.max()) + 1))


def code_information(logits) -> CodeInformation:
    """I(x; c), KL(q(c) || uniform), class usage, classes in use and argmax classes of one variable from its
    logits [M, K]."""
    lg = np.asarray(logits, dtype=np.float64)
    if lg.ndim != 2 or lg.shape[1] < 2:
        raise ValueError(f"logits must be [M, K] with K >= 2, got shape {lg.shape}")
    lg = lg - lg.max(1, keepdims=True)
    p = np.exp(lg)
    p /= p.sum(1, keepdims=True)
    k = p.shape[1]
    cls = lg.argmax(1)
    usage = np.bincount(cls, minlength=k) / lg.shape[0]
    return CodeInformation(grouped_information(p), float(np.log(k) - _entropy_rows(p.mean(0))), usage,
                           int((usage >= USAGE_THRESHOLD).sum()), cls)


def confident_but_uninformative(kl: float, information: float) -> bool:
    """True when KL_c > WARN_KL nats but I(x; c) < WARN_INFO_SHARE * KL_c (the KL is mostly KL(q(c) || p(c)),
    or the variable is sure of a class that does not depend on the image)."""
    return kl > WARN_KL and information < WARN_INFO_SHARE * kl


def _interval(lo: float, hi: float, closed: bool = False) -> str:
    return f"[{lo:.3g}, {hi:.3g}{']' if closed else ')'}"


def _value_labels(values: np.ndarray, names) -> list[str]:
    """Labels of distinct factor values: names[v] for integer values v that index `names`, else the value."""
    indexes = np.issubdtype(values.dtype, np.integer) and values.min() >= 0
    if names is not None and indexes and values.max() < len(names):
        return [str(names[v]) for v in values]
    return [f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v) for v in values.tolist()]


def factor_bins(values, circular: bool = False, names=None) -> tuple[np.ndarray, list[str]]:
    """A factor as discrete codes [M] in [0, B) and its B bin labels: a circular one (degrees if any |value| > 2 pi,
    else radians) in AZIMUTH_BINS equal bins over the circle; integer, bool or non-numeric factors, and others with
    at most QUANTILE_BINS distinct values, as they are (labels: `names` of integer values, else the values); other
    (continuous) ones in QUANTILE_BINS quantile bins (labels: the bins' value ranges)."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"a factor must be 1-D, got shape {v.shape}")
    distinct, as_is = np.unique(v, return_inverse=True)
    as_is = as_is.reshape(-1)
    if circular and np.issubdtype(v.dtype, np.number):
        v = v.astype(np.float64)
        turn = 360.0 if np.abs(v).max() > 2 * np.pi + 1e-6 else 2 * np.pi
        codes = np.floor(np.mod(v, turn) / turn * AZIMUTH_BINS).astype(np.int64) % AZIMUTH_BINS
        step = turn / AZIMUTH_BINS
        return codes, [_interval(b * step, (b + 1) * step) for b in range(AZIMUTH_BINS)]
    if not np.issubdtype(v.dtype, np.floating) or as_is.max() < QUANTILE_BINS:
        return as_is, _value_labels(distinct, names)
    v = v.astype(np.float64)
    edges = np.quantile(v, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
    bounds = [v.min(), *edges, v.max()]
    labels = [_interval(bounds[b], bounds[b + 1], closed=b == QUANTILE_BINS - 1) for b in range(QUANTILE_BINS)]
    return np.searchsorted(edges, v, side="right"), labels


def factor_codes(values, circular: bool = False) -> np.ndarray:
    """The codes [M] of `factor_bins` (without labels)."""
    return factor_bins(values, circular)[0]


def factor_contingency(classes, k: int, codes, bins: int) -> np.ndarray:
    """n[c, b]: images whose argmax class (classes [M] in [0, k)) is c and whose factor code (codes [M]) is b,
    int64 [k, bins]; row sums = class usage * M."""
    c = np.asarray(classes).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= k):
        raise ValueError(f"classes must lie in [0, {k}), got {c.min()}..{c.max()}")
    return class_table(np.eye(k, dtype=np.int64)[c], codes, bins)


def factor_information(probs, codes: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per factor (name -> codes [M] from `factor_codes`): I(c; f), H(f) and I(c; f) / H(f) (None when H(f) = 0)."""
    out = {}
    for name, f in codes.items():
        h = entropy(f)
        mi = grouped_information(probs, f)
        out[name] = {"information": mi, "factor_entropy": h, "normalized": mi / h if h > 0 else None}
    return out
