"""Mutual information gap (MIG, Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    MIG = mean over factors k with H(v_k) > 0 of  (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k)

where z_(1), z_(2) are the latents with the largest and second largest mutual
information with factor v_k. It lies in [0, 1] (up to estimator bias); 1 means
each factor is captured by one latent alone.

Estimator (the discretised one of Locatello et al. 2019, not Chen et al.'s
sampling estimator): every variable is made discrete and I, H are the plug-in
(histogram) values in nats.
- continuous latents (the posterior means mu_j): `bins` (default 20) equal-width
  bins between the unit's minimum and maximum over the data set;
- discrete latents: the class argmax_k q(y_i = k | x), as is;
- factors: a factor with at most `max_values` (default 64) distinct values is
  taken as is (dSprites' 40 orientations and 32 positions, integer classes); one
  with more (e.g. a continuous azimuth) is binned like a continuous latent.
The plug-in estimate is biased upwards by about (a-1)(b-1)/(2n) nats for a and
b occupied values, so an uninformative latent scores slightly above 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MIGResult:
    mig: float  # mean normalised gap over factors with nonzero entropy (nan if there are none)
    gaps: dict[str, float]  # factor -> normalised gap
    top_latent: dict[str, str]  # factor -> latent with the most information about it
    mutual_information: np.ndarray  # [n_latents, n_factors] nats
    factor_entropy: np.ndarray  # [n_factors] nats
    latent_names: list[str]
    factor_names: list[str]


def discretize(values, bins: int = 20) -> np.ndarray:
    """Equal-width binning of a 1-D array into `bins` bins over [min, max] -> int64 codes in [0, bins)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a finite 1-D array, got shape {v.shape}")
    lo, hi = v.min(), v.max()
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.int64)
    codes = np.floor((v - lo) / (hi - lo) * bins).astype(np.int64)
    return np.minimum(codes, bins - 1)


def _codes(v: np.ndarray) -> np.ndarray:
    return np.unique(v, return_inverse=True)[1].reshape(-1)


def entropy(a) -> float:
    """Plug-in entropy (nats) of a discrete 1-D array."""
    p = np.bincount(_codes(np.asarray(a))) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(a, b) -> float:
    """Plug-in mutual information (nats) between two discrete 1-D arrays of equal length."""
    a, b = _codes(np.asarray(a)), _codes(np.asarray(b))
    if a.shape != b.shape:
        raise ValueError(f"arrays must have the same length, got {a.shape[0]} and {b.shape[0]}")
    n = a.size
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= n
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum(), 0.0))


def discretize_factor(values, bins: int = 20, max_values: int = 64) -> np.ndarray:
    """A factor as discrete codes: as is with <= max_values distinct values, else `bins` equal-width bins."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"a factor must be 1-D, got shape {v.shape}")
    if np.unique(v).size > max_values:
        if not np.issubdtype(v.dtype, np.number):
            raise ValueError(f"a factor with more than {max_values} distinct values must be numeric, got dtype {v.dtype}")
        return discretize(v.astype(np.float64), bins)
    return _codes(v)


def mig(
    cont_latents=None,
    disc_latents=None,
    factors: dict[str, np.ndarray] | None = None,
    bins: int = 20,
    max_values: int = 64,
) -> MIGResult:
    """MIG of continuous latents [n, D] (binned) and discrete latents [n, V] (class indices) w.r.t. factors.

    factors: name -> [n] values (see the module docstring for how they are discretised).
    Needs at least two latents in all (the gap needs a runner-up).
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    if cont_latents is not None:
        c = np.asarray(cont_latents, dtype=np.float64)
        if c.ndim != 2:
            raise ValueError(f"cont_latents must be [n, D], got shape {c.shape}")
        cols += [discretize(c[:, j], bins) for j in range(c.shape[1])]
        names += [f"z{j}" for j in range(c.shape[1])]
    if disc_latents is not None:
        d = np.asarray(disc_latents)
        if d.ndim != 2:
            raise ValueError(f"disc_latents must be [n, V] class indices, got shape {d.shape}")
        cols += [d[:, i] for i in range(d.shape[1])]
        names += [f"c{i}" for i in range(d.shape[1])]
    if len(cols) < 2:
        raise ValueError(f"MIG needs at least two latents, got {len(cols)}")
    if not factors:
        raise ValueError("factors must name at least one factor")
    n = cols[0].shape[0]
    fnames = list(factors)
    fcodes = []
    for name in fnames:
        f = discretize_factor(factors[name], bins, max_values)
        if f.shape[0] != n:
            raise ValueError(f"factor {name!r} has {f.shape[0]} values, the latents {n}")
        fcodes.append(f)
    mi = np.array([[mutual_information(z, f) for f in fcodes] for z in cols])
    h = np.array([entropy(f) for f in fcodes])
    gaps, top = {}, {}
    for k, name in enumerate(fnames):
        order = np.argsort(-mi[:, k], kind="stable")
        top[name] = names[order[0]]
        if h[k] > 0:
            gaps[name] = float((mi[order[0], k] - mi[order[1], k]) / h[k])
    value = float(np.mean(list(gaps.values()))) if gaps else float("nan")
    return MIGResult(value, gaps, top, mi, h, names, fnames)
