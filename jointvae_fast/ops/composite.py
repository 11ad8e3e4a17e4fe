"""The composite twins of the fused ops: the same formulas from plain PyTorch ops (autograd backward).

They are the fallback on devices the compiled ops do not cover and the eager baseline of the benchmarks.
Formulas and shapes: `jointvae_fast.ops` (package docstring). The noise comes from torch.randn /
torch.rand (different numbers from the fused op's Philox stream, same distribution) unless given.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validation import check_gaussian, check_inputs, check_logits, check_noise, check_tau, check_tc_inputs

LOG_2PI = math.log(2.0 * math.pi)


def composite_sample_latent(mu, logvar, logits, disc_dims, tau, training=True, generator=None, noise=None):
    """sample_latent from ~10 PyTorch ops per block; noise from torch.randn/torch.rand unless given."""
    mu, logvar, logits, dims, K = check_inputs(mu, logvar, logits, disc_dims)
    tau = check_tau(tau, mu)
    blocks = torch.split(logits, dims, dim=1) if dims else ()
    if not training:
        ys = []
        for lb in blocks:
            y = F.one_hot(lb.argmax(dim=1), lb.shape[1]).to(lb.dtype)
            ys.append(y + lb.sum(dim=1, keepdim=True) * 0)  # NaN in the block -> NaN block
        return torch.cat([mu, *ys], dim=1)
    if noise is not None:
        eps, u = check_noise(noise, mu, K)
    else:
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        u = torch.rand(logits.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        u = u.clamp_(2.0**-24, 1.0 - 2.0**-24)
    z = mu + torch.exp(0.5 * logvar) * eps
    ys = []
    for lb, ub in zip(blocks, torch.split(u, dims, dim=1) if dims else ()):
        g = -torch.log(-torch.log(ub))
        ys.append(F.softmax((F.log_softmax(lb, dim=1) + g) / tau, dim=1))
    return torch.cat([z, *ys], dim=1)


def composite_kl_capacity_loss(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc):
    """kl_capacity_loss from plain PyTorch ops (same formulas, autograd backward)."""
    mu, logvar, logits, dims, K = check_inputs(mu, logvar, logits, disc_dims)
    kl_cont = (0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)).mean(dim=0)
    kls = []
    for lb, k in zip(torch.split(logits, dims, dim=1) if dims else (), dims):
        logp = F.log_softmax(lb, dim=1)
        kls.append(((logp.exp() * logp).sum(dim=1) + math.log(k)).mean(dim=0))
    kl_disc = torch.stack(kls) if kls else logits.new_zeros(0)
    return capacity_loss(kl_cont, kl_disc, c_cont, c_disc, gamma_cont, gamma_disc), kl_cont, kl_disc


def composite_aggregate_kl(logits, disc_dims):
    """aggregate_kl from plain PyTorch ops: qbar = mean_b softmax per block, agg_kl[i] = sum_k qbar log(K qbar)."""
    logits, dims = check_logits(logits, disc_dims)
    qbars, aggs = [], []
    for lb, k in zip(torch.split(logits, dims, dim=1) if dims else (), dims):
        qbar = F.softmax(lb, dim=1).mean(dim=0)
        tiny = torch.finfo(qbar.dtype).tiny  # 0 log 0 = 0 with a finite gradient where qbar = 0
        aggs.append((qbar * torch.log(k * qbar.clamp_min(tiny))).sum())
        qbars.append(qbar)
    if not aggs:
        return logits.new_zeros(0), logits.new_zeros(0)
    return torch.stack(aggs), torch.cat(qbars).detach()


def composite_gaussian_aggregate_kl(mu, logvar):
    """A_d = KL(N(m_d, s_d^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per unit: [B, D], [B, D] -> [D].

    N(m_d, s_d^2) matches the first two moments of the batch's aggregate posterior mean_b N(mu_bd, var_bd):
    m = mean_b mu, s^2 = mean_b exp(logvar) + mean_b (mu - m)^2. As in the fused op, the batch moments are taken
    shifted by the first row's mu (rows sharing a mu have a variance of exactly 0), and s^2 is floored at
    finfo(dtype).tiny, the gradient being the formula's at the floored s^2 (module docstring). Needs B >= 1.
    """
    mu, logvar = check_gaussian(mu, logvar)
    c = mu[:1].detach()  # any constant shift gives the same m and variance
    x = mu - c
    dm = x.mean(dim=0)
    s2 = logvar.exp().mean(dim=0) + (x - dm).pow(2).mean(dim=0)
    s2 = s2 + (torch.finfo(s2.dtype).tiny - s2).clamp_min(0.0).detach()  # the floor, gradient passed through
    m = c[0] + dm
    return 0.5 * (m.pow(2) + s2 - 1.0 - s2.log())


def capacity_loss(kl_cont, kl_disc, c_cont, c_disc, gamma_cont, gamma_disc) -> torch.Tensor:
    """gamma_cont |sum kl_cont - c_cont| + gamma_disc |sum kl_disc - c_disc|; kl_cont [D], kl_disc [V].

    The capacities may be Python floats or 0-d tensors on the KLs' device.
    """
    return gamma_cont * (kl_cont.sum() - c_cont).abs() + gamma_disc * (kl_disc.sum() - c_disc).abs()


def gaussian_log_density(z, mu, logvar) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) elementwise, broadcasting: -(log 2 pi + logvar + r^2) / 2, r = (z - mu) exp(-logvar/2).

    (r is scaled before it is squared: (z - mu)^2 alone underflows float32 where logvar < -87.)"""
    r = (z - mu) * torch.exp(-0.5 * logvar)
    return -0.5 * (LOG_2PI + logvar + r * r)


def composite_tc_pairwise(z, mu, logvar, y, logits, disc_dims, log_weights):
    """(log_q_joint [B], log_q_marginals [B, D + V]): logsumexp over the batch rows m of log_weights[n, m] plus
    log q(z_n, c_n | x_m), and of each unit's and variable's own term (formulas: `jointvae_fast.ops`).

    Materialises a[n, m, d] = log N(z_n,d; mu_m,d, exp(logvar_m,d)) [B, B, D] and b[n, m, i] = <y_n,i, log_softmax
    logits_m,i> [B, B, V]: memory O(B^2 (D + V)) (and autograd keeps them for the backward); a fused op streams
    the logsumexp over m instead."""
    z, mu, logvar, y, logits, dims, w = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights)
    a = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    blocks = zip(torch.split(y, dims, dim=1), torch.split(logits, dims, dim=1)) if dims else ()
    b = [yb @ F.log_softmax(lb, dim=1).T for yb, lb in blocks]
    b = torch.stack(b, dim=2) if b else a.new_zeros(a.shape[0], a.shape[1], 0)
    joint = torch.logsumexp(w + a.sum(dim=2) + b.sum(dim=2), dim=1)
    marginals = torch.logsumexp(w[:, :, None] + torch.cat([a, b], dim=2), dim=1)
    return joint, marginals

