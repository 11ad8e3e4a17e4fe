"""The total correlation of a split's aggregate posterior and the decomposition of its KL (Chen et al. 2018).

The split of M images in a seeded random order, cut into near-equal batches of at most EVAL_BATCH images; each
image draws one latent from its posterior (z reparameterised, each discrete variable a one-hot categorical draw:
the exact discrete sample, not the training's relaxation), and each batch is scored by
`total_correlation.batch_tc` with the MSS estimator over a dataset of N = M images (the split is the data:
q(z, c) = (1/M) sum over the split of q(z, c | x)). The batch values are averaged, weighted by batch size.
Reported for all latents ("joint") and for the continuous units alone ("continuous", when there are any):
  tc             TC = KL(q(z, c) || prod_d q(z_d) prod_i q(c_i))
  index_code_mi  I(x; z, c) = E[log q(z, c | x) - log q(z, c)]
  dim_kl         sum_j KL(q(latent_j) || p(latent_j))
  kl             their sum: a one-sample estimate of the mean KL(q(z, c | x) || p(z, c)) (KL_z + KL_c for "joint")
MSS is the less biased of the two estimators (docs/total-correlation.md); what bias is left (the log of an
estimated density) shrinks with the batch.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..total_correlation import TC_ON, batch_tc, posterior_sample
from .encoding import Encoded

EVAL_BATCH = 256  # images per batch: cost O(M B (D + V)); the composite op holds [B, B, D + V] float64 tensors
ESTIMATOR = "mss"


@torch.no_grad()
def split_total_correlation(enc: Encoded, disc: Sequence[int], seed: int = 0,
                            batch: int = EVAL_BATCH) -> dict[str, Any]:
    """metrics["total_correlation"] (module docstring), computed in float64 on the CPU."""
    m, d = enc.mu.shape
    g = torch.Generator().manual_seed(seed)
    parts = [on for on in TC_ON if on == "joint" or (d and on == "continuous")]
    sums = {on: torch.zeros(3, dtype=torch.float64) for on in parts}
    chunks = torch.tensor_split(torch.randperm(m, generator=g), math.ceil(m / batch))
    for idx in chunks:
        mu, logvar, logits = enc.mu[idx].double(), enc.logvar[idx].double(), enc.logits[idx].double()
        z, y = posterior_sample(mu, logvar, logits, disc, g)
        for on in parts:
            sums[on] += torch.stack(batch_tc(z, y, mu, logvar, logits, disc, m, ESTIMATOR, on)) * len(idx)
    out: dict[str, Any] = {"estimator": ESTIMATOR, "batch": max(len(c) for c in chunks), "dataset_size": m,
                           "seed": seed}
    for on in TC_ON:
        values = (sums[on] / m).tolist() if on in sums else None
        out[on] = None if values is None else {"tc": values[0], "index_code_mi": values[1], "dim_kl": values[2],
                                                "kl": sum(values)}
    return out
