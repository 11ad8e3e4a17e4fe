"""The total correlation (TC) of the joint posterior on one batch, and Chen et al.'s (2018) decomposition of the KL.

TC = KL(q(z, c) || prod_d q(z_d) prod_i q(c_i)) of the aggregate posterior q(z, c) = (1/N) sum_j q(z, c | x_j) of
a dataset of N images, estimated from a batch of B rows: its posterior parameters mu, logvar [B, D], logits
[B, sum K] and the latent each row sampled, z [B, D] and y [B, sum K] (the decoder's input: y the relaxed one-hot
in training, a one-hot in evaluation). With log_q_joint, log_q_marginals = ops.tc_pairwise(...) under the
estimator's log importance weights W [B, B] (log_importance_weights):
    tc            = mean_n [log_q_joint[n] - sum_j log_q_marginals[n, j]]
    index_code_mi = mean_n [log q(z_n, c_n | x_n) - log_q_joint[n]]
    dim_kl        = mean_n sum_j [log_q_marginals[n, j] - log p_j(n)]
log q(z_n, c_n | x_n) = sum_d log N(z_n,d; mu_n,d, exp(logvar_n,d)) + sum_i <y_n,i, log softmax(logits_n,i)>
(log_posterior); log p the prior per unit, N(0, 1), and per variable, uniform: -log K_i sum_k y_n,i,k (log_prior).
The three add up to a one-sample estimate of the batch-mean KL(q(z, c | x) || p(z, c)), whatever W.

The discrete part enters through the categorical probability evaluated at the sample,
<y_n,i, log pi_m,i> (= log q(c_n,i = k | x_m) for a one-hot y), not through the Concrete density of y: the paper's
KL_c is the categorical one, and the Concrete log-density at tau = 0.67 is unbounded above and depends on tau, so
a TC in its nats would not be comparable with KL_c (docs/total-correlation.md).

Estimators ("mss" default, "mws"): reference/total_correlation.py states and derives the weights.
`tc_on`: "joint" (all latents) or "continuous" (z alone: the discrete part dropped, the same formulas).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from . import ops
from .ops.composite import gaussian_log_density

ESTIMATORS = ("mss", "mws")
TC_ON = ("joint", "continuous")


class TCTerms(NamedTuple):
    """The decomposition on one batch (0-d tensors, nats): tc + index_code_mi + dim_kl = the sampled KL."""

    tc: torch.Tensor
    index_code_mi: torch.Tensor
    dim_kl: torch.Tensor


def log_importance_weights(batch: int, dataset_size: int, estimator: str, dtype=torch.float32,
                           device="cpu") -> torch.Tensor:
    """W [B, B] (1 <= B <= N), built with device ops (no host copy: capturable in a CUDA graph).

    mws: -log(N B) everywhere. mss: log 1/N on the diagonal, log (N - B + 1)/(N (B - 1)) at (n, (n + 1) mod B),
    log 1/(B - 1) elsewhere (rows sum to 1); B = 1: [[-log N]]."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not 1 <= batch <= dataset_size:
        raise ValueError(f"need 1 <= batch <= dataset_size, got batch {batch}, dataset_size {dataset_size}")
    if estimator == "mws" or batch == 1:
        log_w = -math.log(dataset_size * batch) if estimator == "mws" else -math.log(dataset_size)
        return torch.full((batch, batch), log_w, dtype=dtype, device=device)
    eye = torch.eye(batch, dtype=torch.bool, device=device)
    stratum = eye.roll(1, dims=1)
    other = torch.full((batch, batch), -math.log(batch - 1), dtype=dtype, device=device)
    stratum_w = math.log((dataset_size - batch + 1) / (dataset_size * (batch - 1)))
    return torch.where(eye, -math.log(dataset_size), torch.where(stratum, stratum_w, other))


def log_posterior(z, mu, logvar, y, logits, disc_dims: Sequence[int]) -> torch.Tensor:
    """log q(z_n, c_n | x_n) [B]: the row's own posterior at its sample (the diagonal of tc_pairwise's terms)."""
    cont = gaussian_log_density(z, mu, logvar).sum(dim=1)
    disc = [(yb * F.log_softmax(lb, dim=1)).sum(dim=1)
            for yb, lb in zip(torch.split(y, list(disc_dims), dim=1), torch.split(logits, list(disc_dims), dim=1))]
    return cont + sum(disc) if disc else cont


def log_prior(z, y, disc_dims: Sequence[int]) -> torch.Tensor:
    """log p per dimension [B, D + V]: log N(z_n,d; 0, 1), then -log K_i sum_k y_n,i,k."""
    disc = [-math.log(k) * yb.sum(dim=1, keepdim=True) for yb, k in zip(torch.split(y, list(disc_dims), dim=1),
                                                                       disc_dims)]
    return torch.cat([gaussian_log_density(z, 0.0, torch.zeros_like(z)), *disc], dim=1)


def decomposition(log_q_joint, log_q_marginals, log_posterior_, log_prior_) -> TCTerms:
    """(tc, index_code_mi, dim_kl) from [B], [B, J], [B], [B, J] (module docstring)."""
    return TCTerms((log_q_joint - log_q_marginals.sum(dim=1)).mean(), (log_posterior_ - log_q_joint).mean(),
                   (log_q_marginals - log_prior_).sum(dim=1).mean())


def batch_tc(z, y, mu, logvar, logits, disc_dims: Sequence[int], dataset_size: int, estimator: str = "mss",
             tc_on: str = "joint") -> TCTerms:
    """The decomposition of one batch: z [B, D], y [B, sum K] the sampled latent, a dataset of `dataset_size`."""
    if tc_on not in TC_ON:
        raise ValueError(f"tc_on must be one of {TC_ON}, got {tc_on!r}")
    dims = tuple(disc_dims) if tc_on == "joint" else ()
    if not dims:
        y, logits = y[:, :0], logits[:, :0]
    w = log_importance_weights(mu.shape[0], dataset_size, estimator, mu.dtype, mu.device)
    joint, marginals = ops.tc_pairwise(z, mu, logvar, y, logits, dims, w)
    return decomposition(joint, marginals, log_posterior(z, mu, logvar, y, logits, dims), log_prior(z, y, dims))


def posterior_sample(mu, logvar, logits, disc_dims: Sequence[int], generator: torch.Generator | None = None):
    """(z [B, D], y [B, sum K]): one draw of q(z, c | x), z = mu + exp(logvar/2) eps and each y_i the one-hot of a
    categorical draw (Gumbel-max: argmax of log_softmax(logits_i) + g) -- the exact discrete sample, not relaxed."""
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    g = -torch.log(-torch.log(u.clamp(torch.finfo(u.dtype).tiny, 1.0 - torch.finfo(u.dtype).eps)))
    ys = [F.one_hot((F.log_softmax(lb, dim=1) + gb).argmax(dim=1), k).to(logits.dtype)
          for lb, gb, k in zip(torch.split(logits, list(disc_dims), dim=1), torch.split(g, list(disc_dims), dim=1),
                               disc_dims)]
    return z, torch.cat(ys, dim=1) if ys else logits[:, :0]
