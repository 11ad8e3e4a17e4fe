"""Eq. 7 of the paper: reconstruction + gamma_z*|KL_z - C_z| + gamma_c*|KL_c - C_c|.

The per-unit KLs and both capacity terms come from the fused op
`ops.kl_capacity_loss`. With `disc_capacity_on="information"` (issue 13's
variant, opt-in) the discrete term is instead
    gamma_c * |sum_i I_i - C_c| + lambda_agg * sum_i A_i,
I_i = KL_i - A_i the batch information and A_i = KL(qbar_i || uniform) the
aggregate posterior's KL (`ops.aggregate_kl`), since the batch-mean KL
decomposes as KL_i = I_i + A_i and Eq. 7 can meet C_c through A_i alone
(confident but uninformative codes). lambda_agg defaults to gamma_c / 10
(AGGREGATE_WEIGHT_FRACTION): with lambda_agg = gamma_c (where the variant equals
Eq. 7 wherever I >= C_c) the posterior stayed exactly uniform for thousands of steps on
some seeds (built-in chairs, bf16, seed 1: I ~ 1e-8 nats for 1,800 steps),
while gamma_c / 10 left the uniform point by step 300 on the same seed
(docs/experiments/chairs-2026-11-29.md): there dI/dlogits = 0, so only symmetry breaking
starts the code, and Adam normalises the update by the large, noisy gradient
of A.

`cont_capacity_on="information"` (opt-in) treats the continuous term the same way:
    gamma_z * |sum_d I_d - C_z| + lambda_z * sum_d A_d,
A_d = KL(N(m_d, s_d^2) || N(0, 1)) the KL of the batch's aggregate posterior matched in mean and variance
(`ops.gaussian_aggregate_kl`) and I_d = KL_d - A_d = (log s_d^2 - mean_b logvar_bd) / 2 (reference/information.py
derives the identity). Eq. 7 can meet C_z by moving every image's posterior to the same place (dSprites on a
compressed schedule: docs/experiments/); I_d is 0 there. lambda_z defaults to gamma_z / 10 as well.
`tc_weight` > 0 (issue 25, opt-in) adds tc_weight * TC, the total correlation of the joint posterior estimated on
the batch (`total_correlation.batch_tc`: MSS or MWS weights over a dataset of `dataset_size` images, all latents
or the continuous ones, docs/total-correlation.md), to the bracket of Eq. 7:
    total = (recon_weight * recon + capacity terms + tc_weight * TC) / (H*W).
With tc_weight = 0 the total is Eq. 7's, bit for bit. Whenever `dataset_size` is given, TC, the index-code
information and the dimension-wise KL are also computed outside the graph for the log (`LossTerms.tc_terms`;
its cost was within the run-to-run noise of the train suite on the 2-core CPU: docs/total-correlation.md).
Reconstruction is Bernoulli on decoder logits (BCE with
logits: the paper's sigmoid + BCE without its overflow), summed over pixels per
image and averaged over the batch. As in the paper's published
implementation, the differentiated value is divided by H*W so that its
learning rates and gammas carry over.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from . import ops
from .total_correlation import ESTIMATORS as TC_ESTIMATORS, TC_ON, TCTerms, batch_tc


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


DISC_CAPACITY_ON = ("kl", "information")
CONT_CAPACITY_ON = ("kl", "information")
AGGREGATE_WEIGHT_FRACTION = 0.1  # lambda_agg = this * gamma_c when disc_aggregate_weight is None (module docstring)


class LossTerms(NamedTuple):
    """Terms of the objective for one batch (tensors; nothing here syncs with the host)."""

    total: torch.Tensor  # scalar, (recon_weight*recon + capacity loss) / (H*W): what is differentiated
    recon: torch.Tensor  # scalar, per-image reconstruction NLL (nats), batch mean
    capacity_loss: torch.Tensor  # scalar, gamma_z*|KL_z - C_z| + gamma_c*|KL_c - C_c|
    kl_cont: torch.Tensor  # [D]
    kl_disc: torch.Tensor  # [V]
    c_cont: float  # C_z (a device scalar only inside a CUDA graph capture)
    c_disc: float  # C_c
    info_disc: torch.Tensor  # [V], I_i = KL_i - A_i, the batch estimate of I(x; c_i) (both modes)
    agg_kl_disc: torch.Tensor  # [V], A_i = KL(qbar_i || uniform(K_i)) (both modes)
    class_counts: torch.Tensor  # [sum K], images of the batch whose argmax of q(c_i|x) is each class
    info_cont: torch.Tensor  # [D], I_d = KL_d - A_d = (log s_d^2 - mean_b logvar_bd) / 2 (both modes)
    agg_kl_cont: torch.Tensor  # [D], A_d = KL(N(m_d, s_d^2) || N(0, 1)), moment-matched aggregate (both modes)
    tc_terms: torch.Tensor  # [3] = (TC, index-code information, dimension-wise KL), detached; [0] without dataset_size


def information_capacity_term(kl: torch.Tensor, agg_kl: torch.Tensor, c, gamma: float,
                              aggregate_weight: float) -> torch.Tensor:
    """The variant's capacity term: gamma |sum_i (KL_i - A_i) - C| + aggregate_weight sum_i A_i. [n], [n] -> [].

    The same form for the discrete variables (A_i exact) and the continuous units (A_d moment-matched)."""
    return gamma * ((kl - agg_kl).sum() - c).abs() + aggregate_weight * agg_kl.sum()


def argmax_class_counts(logits: torch.Tensor, disc_dims: Sequence[int]) -> torch.Tensor:
    """[B, sum K] -> [sum K]: per discrete variable, how many rows have each class as their argmax."""
    with torch.no_grad():  # a comparison, not bincount/one_hot: no host sync, capturable in a CUDA graph
        counts = [(lb.argmax(dim=1, keepdim=True) == torch.arange(k, device=lb.device)).sum(dim=0)
                  for lb, k in zip(torch.split(logits, list(disc_dims), dim=1), disc_dims)]
    return torch.cat(counts).to(logits.dtype) if counts else logits.new_zeros(0)


def bernoulli_nll(x: torch.Tensor, x_logits: torch.Tensor) -> torch.Tensor:
    """sum over pixels of BCE-with-logits(x_logits, x), averaged over the batch. x, x_logits [B, C, H, W].

    Computed in x's dtype: bfloat16 logits (a bf16-autocast decoder's output) are upcast first."""
    return F.binary_cross_entropy_with_logits(x_logits.to(x.dtype), x, reduction="sum") / x.shape[0]


@dataclass(frozen=True)
class Objective:
    """Eq. 7 with its settings bound: `Objective(...)(x, out, step)` -> LossTerms.

    out is a model.JointVAEOutput (anything with x_logits [B, C, H, W], mu, logvar [B, D], logits [B, sum K],
    and, when dataset_size is given, the sampled latent [B, D + sum K]).
    A capacity of None drops that term. disc_capacity_on: "kl" (Eq. 7) or "information" (module docstring);
    disc_aggregate_weight: lambda_agg of the information mode (None: AGGREGATE_WEIGHT_FRACTION * gamma_c).
    tc_weight, tc_estimator ("mss" or "mws"), tc_on ("joint" or "continuous"), dataset_size (N, the training
    images; needed when tc_weight > 0, and turns on the TC diagnostics): the total-correlation term.
    """

    disc_dims: tuple[int, ...]
    cont_capacity: Capacity | None
    disc_capacity: Capacity | None
    recon_weight: float = 1.0
    disc_capacity_on: str = "kl"
    disc_aggregate_weight: float | None = None
    cont_capacity_on: str = "kl"
    cont_aggregate_weight: float | None = None
    tc_weight: float = 0.0
    tc_estimator: str = "mss"
    tc_on: str = "joint"
    dataset_size: int | None = None

    def __post_init__(self):
        for part, modes in (("disc", DISC_CAPACITY_ON), ("cont", CONT_CAPACITY_ON)):
            mode = getattr(self, f"{part}_capacity_on")
            if mode not in modes:
                raise ValueError(f"{part}_capacity_on must be one of {modes}, got {mode!r}")
            w = getattr(self, f"{part}_aggregate_weight")
            if w is not None and not (math.isfinite(w) and w >= 0):
                raise ValueError(f"{part}_aggregate_weight must be a finite number >= 0, got {w!r}")
        if not (math.isfinite(self.tc_weight) and self.tc_weight >= 0):
            raise ValueError(f"tc_weight must be a finite number >= 0, got {self.tc_weight!r}")
        for name, value, choices in (("tc_estimator", self.tc_estimator, TC_ESTIMATORS), ("tc_on", self.tc_on, TC_ON)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        n = self.dataset_size
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"dataset_size must be an int >= 1 or None, got {n!r}")
        if self.tc_weight and n is None:
            raise ValueError("tc_weight > 0 needs dataset_size (the number of training images)")

    @property
    def aggregate_weight(self) -> float:
        """lambda_agg: disc_aggregate_weight, or gamma_c * AGGREGATE_WEIGHT_FRACTION when it is None (0 without a
        discrete capacity)."""
        return _aggregate_weight(self.disc_capacity, self.disc_aggregate_weight)

    @property
    def cont_weight(self) -> float:
        """lambda_z of the continuous information mode: cont_aggregate_weight, or gamma_z *
        AGGREGATE_WEIGHT_FRACTION when it is None (0 without a continuous capacity)."""
        return _aggregate_weight(self.cont_capacity, self.cont_aggregate_weight)

    @property
    def tracks_tc(self) -> bool:
        """Whether each batch's TC, index-code information and dimension-wise KL are computed (dataset_size given)."""
        return self.dataset_size is not None

    def capacities(self, step: int) -> tuple[float, float]:
        """(C_z(step), C_c(step)) as Python floats; C_c is capped at sum_i log K_i; an absent term gives 0."""
        c_cont = self.cont_capacity.at(step) if self.cont_capacity is not None else 0.0
        c_disc = (self.disc_capacity.at(step, max_discrete_capacity(self.disc_dims))
                  if self.disc_capacity is not None else 0.0)
        return c_cont, c_disc

    def at_capacities(self, x: torch.Tensor, out, c_cont: float | torch.Tensor,
                      c_disc: float | torch.Tensor) -> LossTerms:
        """Eq. 7 for one batch at the capacities c_cont, c_disc.

        Capacities given as Python floats go into the fused op, which forms the capacity term. Given as
        device scalars (a captured CUDA graph reads their current values at each replay), the op gives the
        per-unit KLs and the capacity term is formed by the composite twin's formula,
        `ops.composite.capacity_loss`: the same terms, to float rounding.
        """
        if x.shape != out.x_logits.shape:
            raise ValueError(f"x has shape {tuple(x.shape)} but x_logits has {tuple(out.x_logits.shape)}")
        g_cont = self.cont_capacity.gamma if self.cont_capacity is not None else 0.0
        g_disc = self.disc_capacity.gamma if self.disc_capacity is not None else 0.0
        information = self.disc_capacity_on == "information" and self.disc_capacity is not None
        cont_information = self.cont_capacity_on == "information" and self.cont_capacity is not None
        g_fused = 0.0 if information else g_disc  # the information modes form their terms below
        g_fused_cont = 0.0 if cont_information else g_cont
        if isinstance(c_cont, torch.Tensor) or isinstance(c_disc, torch.Tensor):
            _, kl_cont, kl_disc = ops.kl_capacity_loss(out.mu, out.logvar, out.logits, self.disc_dims,
                                                       0.0, 0.0, 0.0, 0.0)
            cap_loss = ops.composite.capacity_loss(kl_cont, kl_disc, c_cont, c_disc, g_fused_cont, g_fused)
        else:
            cap_loss, kl_cont, kl_disc = ops.kl_capacity_loss(
                out.mu, out.logvar, out.logits, self.disc_dims, c_cont, c_disc, g_fused_cont, g_fused
            )
        agg_kl = self._aggregate_kl(out.logits, differentiable=information)
        if information:
            cap_loss = cap_loss + information_capacity_term(kl_disc, agg_kl, c_disc, g_disc, self.aggregate_weight)
        agg_kl_cont = self._gaussian_aggregate_kl(out.mu, out.logvar, differentiable=cont_information)
        if cont_information:
            cap_loss = cap_loss + information_capacity_term(kl_cont, agg_kl_cont, c_cont, g_cont, self.cont_weight)
        tc = self._total_correlation(out)
        recon = bernoulli_nll(x, out.x_logits)
        penalty = cap_loss + self.tc_weight * tc.tc if self.tc_weight else cap_loss
        total = (recon * self.recon_weight + penalty) / (x.shape[-1] * x.shape[-2])
        tc_terms = torch.stack(tc).detach() if tc is not None else recon.new_zeros(0).detach()
        return LossTerms(total, recon, cap_loss, kl_cont, kl_disc, c_cont, c_disc, (kl_disc - agg_kl).detach(),
                         agg_kl.detach(), argmax_class_counts(out.logits.detach(), self.disc_dims),
                         (kl_cont - agg_kl_cont).detach(), agg_kl_cont.detach(), tc_terms)

    def _total_correlation(self, out) -> TCTerms | None:
        """The batch's TCTerms of the sampled latent (None without dataset_size); in the graph when tc_weight > 0."""
        if self.dataset_size is None:
            return None
        d = out.mu.shape[1]
        args = (out.latent[:, :d], out.latent[:, d:], out.mu, out.logvar, out.logits, self.disc_dims,
                self.dataset_size, self.tc_estimator, self.tc_on)
        if self.tc_weight:
            return batch_tc(*args)
        with torch.no_grad():
            return batch_tc(*args)

    def _gaussian_aggregate_kl(self, mu: torch.Tensor, logvar: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """A_d [D] (`ops.gaussian_aggregate_kl`); outside the graph unless the information mode differentiates it."""
        if not mu.shape[1]:
            return mu.new_zeros(0)
        if differentiable:
            return ops.gaussian_aggregate_kl(mu, logvar)
        with torch.no_grad():
            return ops.gaussian_aggregate_kl(mu.detach(), logvar.detach())

    def _aggregate_kl(self, logits: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """A_i [V] (`ops.aggregate_kl`); outside the graph unless the information mode differentiates it."""
        if not self.disc_dims:
            return logits.new_zeros(0)
        if differentiable:
            return ops.aggregate_kl(logits, self.disc_dims)[0]
        with torch.no_grad():
            return ops.aggregate_kl(logits.detach(), self.disc_dims)[0]

    def __call__(self, x: torch.Tensor, out, step: int) -> LossTerms:
        return self.at_capacities(x, out, *self.capacities(step))


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
    disc_capacity_on: str = "kl",
    disc_aggregate_weight: float | None = None,
    cont_capacity_on: str = "kl",
    cont_aggregate_weight: float | None = None,
) -> LossTerms:
    """Eq. 7 (or its information variant) for one batch at optimizer step `step`: `Objective` as a function
    (without the total-correlation term, which needs the sampled latent: use `Objective` with a model output)."""
    out = SimpleNamespace(x_logits=x_logits, mu=mu, logvar=logvar, logits=logits)
    return Objective(tuple(disc_dims), cont_capacity, disc_capacity, recon_weight, disc_capacity_on,
                     disc_aggregate_weight, cont_capacity_on, cont_aggregate_weight)(x, out, step)


def _aggregate_weight(capacity: Capacity | None, weight: float | None) -> float:
    """The aggregate term's weight: `weight`, or capacity.gamma * AGGREGATE_WEIGHT_FRACTION when it is None."""
    if capacity is None:
        return 0.0
    return capacity.gamma * AGGREGATE_WEIGHT_FRACTION if weight is None else float(weight)
