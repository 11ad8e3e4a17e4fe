"""Correlation between inferred values and a true angle (e.g. a chair's azimuth, the paper's Fig. 9a).

Two measures, both from the directional-statistics literature:

- circular_linear_correlation(x, theta): Mardia's (1976) circular-linear
  correlation R in [0, 1] between a linear variable x (one latent unit) and an
  angle theta. With r_xc = corr(x, cos theta), r_xs = corr(x, sin theta),
  r_cs = corr(cos theta, sin theta):
      R^2 = (r_xc^2 + r_xs^2 - 2 r_xc r_xs r_cs) / (1 - r_cs^2),
  the R^2 of the least-squares fit x ~ a + b cos theta + c sin theta
  = a + amp * cos(theta - phase). R = 1 iff x is exactly such a sinusoid of
  theta, the only way one real unit can vary continuously around a full circle.
  Computed here as that regression (numerically the same, robust when r_cs = +-1).

- circular_correlation(alpha, beta): Fisher & Lee's (1983) circular-circular
  correlation rho_T in [-1, 1] between two angles,
      rho_T = sum_{i<j} sin(a_i - a_j) sin(b_i - b_j)
              / sqrt(sum_{i<j} sin^2(a_i - a_j) * sum_{i<j} sin^2(b_i - b_j))
            = det(X^T Y) / sqrt(det(X^T X) det(Y^T Y)),  X = [cos a, sin a], Y = [cos b, sin b]
  (the O(n) form). rho_T = +1 when beta = alpha + const, -1 when beta = -alpha + const.
  Used for an angle decoded from two units (`pair_angle`): the least-squares
  linear map [1, u, v] -> (cos theta, sin theta) (6 parameters, fitted on the
  same data), angle = atan2 of the mapped pair. Any ellipse the pair traces
  (shifted, scaled, sheared, rotated, mirrored) is read back as the angle;
  rho_T is then >= 0 up to noise. `best_unit_pair` picks the pair with the
  largest |rho_T|, `azimuth_units` the best unit and pair among given candidates
  (the active units: an inactive unit's tiny fluctuations can correlate with
  anything without reaching the decoder).

Angles are in radians.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass(frozen=True)
class CircularLinearFit:
    r: float  # Mardia's circular-linear correlation in [0, 1] (nan if x is constant)
    offset: float  # a in x ~ a + amplitude * cos(theta - phase)
    amplitude: float
    phase: float  # radians

    def predict(self, theta) -> np.ndarray:
        return self.offset + self.amplitude * np.cos(np.asarray(theta, dtype=np.float64) - self.phase)


def _vector(name: str, v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size < 3:
        raise ValueError(f"{name} must be a 1-D array of at least 3 values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return v


def circular_linear_fit(x, theta) -> CircularLinearFit:
    """Least-squares x ~ a + b cos theta + c sin theta and Mardia's R = sqrt(its R^2)."""
    x, theta = _vector("x", x), _vector("theta", theta)
    if x.shape != theta.shape:
        raise ValueError(f"x and theta must have the same length, got {x.size} and {theta.size}")
    design = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    ss_tot = float(((x - x.mean()) ** 2).sum())
    if ss_tot <= 1e-300:
        r = float("nan")
    else:
        ss_res = float(((x - design @ coef) ** 2).sum())
        r = float(np.sqrt(min(max(1.0 - ss_res / ss_tot, 0.0), 1.0)))
    a, b, c = (float(v) for v in coef)
    return CircularLinearFit(r, a, float(np.hypot(b, c)), float(np.arctan2(c, b)))


def circular_linear_correlation(x, theta) -> float:
    """Mardia's circular-linear correlation R in [0, 1] between values x [n] and angles theta [n] (radians)."""
    return circular_linear_fit(x, theta).r


def circular_correlation(alpha, beta) -> float:
    """Fisher-Lee circular correlation rho_T in [-1, 1] between angles alpha [n] and beta [n] (radians)."""
    alpha, beta = _vector("alpha", alpha), _vector("beta", beta)
    if alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta must have the same length, got {alpha.size} and {beta.size}")
    x = np.stack([np.cos(alpha), np.sin(alpha)], axis=1)
    y = np.stack([np.cos(beta), np.sin(beta)], axis=1)
    den = np.linalg.det(x.T @ x) * np.linalg.det(y.T @ y)
    if den <= 0:
        return float("nan")
    return float(np.linalg.det(x.T @ y) / np.sqrt(den))


def pair_angle(u, v, theta) -> np.ndarray:
    """The angle decoded from units u, v [n]: atan2 of the least-squares fit [1, u, v] -> (cos theta, sin theta)."""
    design = np.stack([np.ones_like(u), u, v], axis=1).astype(np.float64)
    target = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = design @ coef
    return np.arctan2(fitted[:, 1], fitted[:, 0])


def best_unit_pair(latents, theta, units=None) -> tuple[tuple[int, int], float]:
    """((i, j), rho_T): the pair of units whose decoded angle (`pair_angle`) has the largest |Fisher-Lee rho_T|
    with theta.

    latents [n, D]; units: the candidate unit indices (default all). Needs two or more candidates.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"latents must be [n, D], got shape {z.shape}")
    units = list(range(z.shape[1])) if units is None else [int(u) for u in units]
    if len(units) < 2:
        raise ValueError(f"best_unit_pair needs at least two candidate units, got {units}")
    best, best_rho = None, float("nan")
    for i, j in combinations(units, 2):
        rho = circular_correlation(pair_angle(z[:, i], z[:, j], theta), theta)
        if np.isfinite(rho) and (best is None or abs(rho) > abs(best_rho)):
            best, best_rho = (i, j), rho
    if best is None:
        best = (units[0], units[1])
    return best, best_rho


@dataclass(frozen=True)
class AzimuthUnits:
    unit: int | None  # the candidate with the largest circular-linear R (None without candidates)
    fit: CircularLinearFit | None  # its fit
    per_unit_r: dict[int, float]  # candidate -> R
    pair: tuple[int, int] | None  # the candidate pair whose decoded angle correlates best (None below 2)
    pair_rho: float  # its Fisher-Lee rho_T (nan without a pair)


def azimuth_units(latents, theta, candidates) -> AzimuthUnits:
    """The best single unit (Mardia R) and best pair (Fisher-Lee rho_T of `pair_angle`) among `candidates`
    (unit indices, e.g. the active units) of latents [n, D] for angles theta [n]; no other unit is considered."""
    z = np.asarray(latents, dtype=np.float64)
    cands = [int(j) for j in candidates]
    fits = {j: circular_linear_fit(z[:, j], theta) for j in cands}
    scored = [j for j in cands if np.isfinite(fits[j].r)]
    unit = max(scored, key=lambda j: fits[j].r) if scored else None
    pair, rho = best_unit_pair(z, theta, cands) if len(cands) >= 2 else (None, float("nan"))
    return AzimuthUnits(unit, fits.get(unit), {j: f.r for j, f in fits.items()}, pair, rho)
