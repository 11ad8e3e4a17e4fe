"""Unsupervised classification accuracy of a discrete latent against labels.

Cluster c_n = argmax_k q(y = k | x_n); labels l_n. With the contingency table
N[c, l] = #{n : c_n = c, l_n = l}:
- hungarian_accuracy: the one-to-one map m (clusters -> labels) maximising
  sum_c N[c, m(c)] (scipy.optimize.linear_sum_assignment); accuracy = that sum / n.
  With more clusters than labels, unmatched clusters count as errors.
- majority_accuracy: each cluster maps to its most frequent label (many-to-one);
  accuracy = sum_c max_l N[c, l] / n >= the Hungarian accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    accuracy: float  # fraction in [0, 1]
    mapping: dict[int, int]  # cluster -> label (clusters absent from the map count as errors)


def _as_labels(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer labels, got dtype {a.dtype}")
    return a


def contingency(clusters, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N [n_clusters, n_labels] counts, cluster values, label values); values are the sorted unique entries."""
    c = _as_labels("clusters", clusters)
    l = _as_labels("labels", labels)
    if c.shape != l.shape:
        raise ValueError(f"clusters and labels must have the same length, got {c.shape[0]} and {l.shape[0]}")
    cv, ci = np.unique(c, return_inverse=True)
    lv, li = np.unique(l, return_inverse=True)
    table = np.zeros((cv.size, lv.size), dtype=np.int64)
    np.add.at(table, (ci, li), 1)
    return table, cv, lv


def hungarian_accuracy(clusters, labels) -> Accuracy:
    """Accuracy under the best one-to-one cluster -> label map (Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    table, cv, lv = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    correct = int(table[rows, cols].sum())
    return Accuracy(correct / int(table.sum()), {int(cv[r]): int(lv[c]) for r, c in zip(rows, cols)})


def majority_accuracy(clusters, labels) -> Accuracy:
    """Accuracy when each cluster predicts its most frequent label (first label on ties)."""
    table, cv, lv = contingency(clusters, labels)
    best = table.argmax(axis=1)
    correct = int(table[np.arange(cv.size), best].sum())
    return Accuracy(correct / int(table.sum()), {int(cv[r]): int(lv[b]) for r, b in enumerate(best)})
