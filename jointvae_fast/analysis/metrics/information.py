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
  I(c; f) = H(q(c)) - sum_f p(f) H(q(c|f)) <= min(I(x; c), H(f)); normalised: I(c; f) / H(f) in [0, 1].

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


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of a probability matrix [..., K] (0 log 0 = 0)."""
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(-1)


def grouped_information(probs, groups=None) -> float:
    """H(mean_n q_n) - sum_g p(g) H(mean_{n in g} q_n) for probs [M, K]; groups [M] (None: each row its own)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be [M, K] with M >= 1, got shape {p.shape}")
    if groups is None:
        within = _entropy_rows(p).mean()
    else:
        g = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        if g.shape[0] != p.shape[0]:
            raise ValueError(f"groups has {g.shape[0]} values, probs {p.shape[0]} rows")
        counts = np.bincount(g).astype(np.float64)
        sums = np.zeros((counts.size, p.shape[1]))
        np.add.at(sums, g, p)
        within = float((counts / counts.sum() * _entropy_rows(sums / counts[:, None])).sum())
    return float(max(_entropy_rows(p.mean(0)) - within, 0.0))


def code_information(logits) -> CodeInformation:
    """I(x; c), KL(q(c) || uniform), class usage and classes in use of one variable from its logits [M, K]."""
    lg = np.asarray(logits, dtype=np.float64)
    if lg.ndim != 2 or lg.shape[1] < 2:
        raise ValueError(f"logits must be [M, K] with K >= 2, got shape {lg.shape}")
    lg = lg - lg.max(1, keepdims=True)
    p = np.exp(lg)
    p /= p.sum(1, keepdims=True)
    k = p.shape[1]
    usage = np.bincount(lg.argmax(1), minlength=k) / lg.shape[0]
    return CodeInformation(grouped_information(p), float(np.log(k) - _entropy_rows(p.mean(0))), usage,
                           int((usage >= USAGE_THRESHOLD).sum()))


def confident_but_uninformative(kl: float, information: float) -> bool:
    """True when KL_c > WARN_KL nats but I(x; c) < WARN_INFO_SHARE * KL_c (the KL is mostly KL(q(c) || p(c)),
    or the variable is sure of a class that does not depend on the image)."""
    return kl > WARN_KL and information < WARN_INFO_SHARE * kl


def factor_codes(values, circular: bool = False) -> np.ndarray:
    """A factor as discrete codes [M]: a circular one (degrees if any |value| > 2 pi, else radians) in
    AZIMUTH_BINS equal bins over the circle; integer, bool or non-numeric factors, and others with at most
    QUANTILE_BINS distinct values, as they are; other (continuous) ones in QUANTILE_BINS quantile bins."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"a factor must be 1-D, got shape {v.shape}")
    as_is = np.unique(v, return_inverse=True)[1].reshape(-1)
    if circular and np.issubdtype(v.dtype, np.number):
        v = v.astype(np.float64)
        turn = 360.0 if np.abs(v).max() > 2 * np.pi + 1e-6 else 2 * np.pi
        return np.floor(np.mod(v, turn) / turn * AZIMUTH_BINS).astype(np.int64) % AZIMUTH_BINS
    if not np.issubdtype(v.dtype, np.floating) or as_is.max() < QUANTILE_BINS:
        return as_is
    edges = np.quantile(v.astype(np.float64), np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
    return np.searchsorted(edges, v, side="right")


def factor_information(probs, codes: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per factor (name -> codes [M] from `factor_codes`): I(c; f), H(f) and I(c; f) / H(f) (None when H(f) = 0)."""
    out = {}
    for name, f in codes.items():
        h = entropy(f)
        mi = grouped_information(probs, f)
        out[name] = {"information": mi, "factor_entropy": h, "normalized": mi / h if h > 0 else None}
    return out
