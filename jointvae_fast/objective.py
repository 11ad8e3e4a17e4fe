"""Eq. 7 of the paper: reconstruction + gamma_z*|KL_z - C_z| + gamma_c*|KL_c - C_c|.

The per-unit KLs and both capacity terms come from the fused op
`ops.kl_capacity_loss`; reconstruction is Bernoulli on decoder logits (BCE with
logits: the paper's sigmoid + BCE without its overflow), summed over pixels per
image and averaged over the batch. As in the paper's published
implementation, the differentiated value is divided by H*W so that its
learning rates and gammas carry over.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Capacity:
    """A linear capacity schedule C(step) = min(c_min + (c_max - c_min)*step/num_iters, c_max), weight gamma."""

    c_min: float
    c_max: float
    num_iters: int
    gamma: float

    def __post_init__(self):
        if not (isinstance(self.num_iters, int) and self.num_iters > 0):
            raise ValueError(f"num_iters must be an int > 0, got {self.num_iters!r}")
        for name in ("c_min", "c_max", "gamma"):
            v = getattr(self, name)
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma!r}")

    def at(self, step: int, cap: float | None = None) -> float:
        """The capacity at `step` (a Python float: no device work), optionally capped at `cap`."""
        c = min(self.c_min + (self.c_max - self.c_min) * step / self.num_iters, self.c_max)
        return c if cap is None else min(c, cap)


def max_discrete_capacity(disc_dims: Sequence[int]) -> float:
    """sum_i log K_i: the most information the discrete variables can carry (C_c is capped there)."""
    return float(sum(math.log(k) for k in disc_dims))


class LossTerms(NamedTuple):
    """Terms of the objective for one batch (tensors; nothing here syncs with the host)."""

    total: torch.Tensor  # scalar, (recon_weight*recon + capacity loss) / (H*W): what is differentiated
    recon: torch.Tensor  # scalar, per-image reconstruction NLL (nats), batch mean
    capacity_loss: torch.Tensor  # scalar, gamma_z*|KL_z - C_z| + gamma_c*|KL_c - C_c|
    kl_cont: torch.Tensor  # [D]
    kl_disc: torch.Tensor  # [V]
    c_cont: float
    c_disc: float


def bernoulli_nll(x: torch.Tensor, x_logits: torch.Tensor) -> torch.Tensor:
    """sum over pixels of BCE-with-logits(x_logits, x), averaged over the batch. x, x_logits [B, C, H, W]."""
    return F.binary_cross_entropy_with_logits(x_logits, x, reduction="sum") / x.shape[0]


def jointvae_loss(
    x: torch.Tensor,
    x_logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    logits: torch.Tensor,
    disc_dims: Sequence[int],
    step: int,
    cont_capacity: Capacity | None,
    disc_capacity: Capacity | None,
    recon_weight: float = 1.0,
) -> LossTerms:
    """Eq. 7 for one batch at optimizer step `step`; a capacity of None drops that term.

    x, x_logits [B, C, H, W]; mu, logvar [B, D]; logits [B, sum K].
    """
    from . import ops

    if x.shape != x_logits.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but x_logits has {tuple(x_logits.shape)}")
    c_cont = cont_capacity.at(step) if cont_capacity is not None else 0.0
    g_cont = cont_capacity.gamma if cont_capacity is not None else 0.0
    c_disc = disc_capacity.at(step, max_discrete_capacity(disc_dims)) if disc_capacity is not None else 0.0
    g_disc = disc_capacity.gamma if disc_capacity is not None else 0.0
    cap_loss, kl_cont, kl_disc = ops.kl_capacity_loss(mu, logvar, logits, disc_dims, c_cont, c_disc, g_cont, g_disc)
    recon = bernoulli_nll(x, x_logits)
    total = (recon * recon_weight + cap_loss) / (x.shape[-1] * x.shape[-2])
    return LossTerms(total, recon, cap_loss, kl_cont, kl_disc, c_cont, c_disc)


@dataclass(frozen=True)
class Objective:
    """Eq. 7 with its settings bound: `Objective(...)(x, out, step)` -> LossTerms.

    out is a model.JointVAEOutput (anything with x_logits, mu, logvar, logits).
    """

    disc_dims: tuple[int, ...]
    cont_capacity: Capacity | None
    disc_capacity: Capacity | None
    recon_weight: float = 1.0

    def __call__(self, x: torch.Tensor, out, step: int) -> LossTerms:
        return jointvae_loss(
            x, out.x_logits, out.mu, out.logvar, out.logits, self.disc_dims, step,
            self.cont_capacity, self.disc_capacity, self.recon_weight,
        )
