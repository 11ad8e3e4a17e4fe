"""What each class of a discrete variable picked up: the real test images it takes, most confident first.

`class_members(probs, n)`: probs [M, K] posteriors q(c = k | x_m) of one variable on the test split ->
for each class k the positions m (at most n) with argmax_j probs[m, j] == k (first index on ties, as
everywhere in the package), ordered by probs[m, k] descending (ties: lower m first).
"""
from __future__ import annotations

import numpy as np
import torch

MEMBERS = 10  # test images per class in the report (class_members_c<i>.png, metrics["class_members"])


def class_members(probs: np.ndarray, n: int) -> list[np.ndarray]:
    """int64 positions per class (module docstring); an unused class gets an empty array."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be [M, K] with K >= 1, got shape {probs.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    top = probs.argmax(1)
    out = []
    for k in range(probs.shape[1]):
        members = np.nonzero(top == k)[0]
        order = np.lexsort((members, -probs[members, k]))  # by probability descending, then position
        out.append(members[order][:n].astype(np.int64))
    return out


def member_positions(logits: torch.Tensor, disc, n: int = MEMBERS) -> dict[str, list[list[int]]]:
    """Per discrete variable c<i> (logits [M, sum K], disc the K_i): per class, `class_members` of its posteriors."""
    out = {}
    for i, block in enumerate(torch.split(logits, list(disc), dim=1)):
        probs = torch.softmax(block.double(), 1).numpy()
        out[f"c{i}"] = [m.tolist() for m in class_members(probs, n)]
    return out
