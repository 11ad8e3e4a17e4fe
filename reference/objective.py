"""The Joint-VAE objective (Eq. 7 of the paper) as the reference implementation normalises it.

total = (recon_weight * recon + cap_loss_cont + cap_loss_disc) / (H * W)
  recon         = bernoulli_nll(x, x_logits)   (per-image sum over C*H*W, batch mean)
  cap_loss_cont = gamma_z * |sum_d kl_cont[d] - C_cont|,  C_cont = capacity(step, *cont_capacity[:3])
  cap_loss_disc = gamma_c * |sum_i kl_disc[i] - C_disc|,  C_disc = capacity(step, *disc_capacity[:3],
                                                                   cap=sum_i log K_i)
A capacity spec of None removes that term entirely (c = 0, loss 0, no gradient).

disc_capacity_on="information" (issue 13's variant) replaces the discrete term by
  cap_loss_disc = gamma_c * |sum_i info_disc[i] - C_disc| + lambda_agg * sum_i agg_kl_disc[i]
with info_disc = batch_information (I_i) and agg_kl_disc = kl_aggregate (A_i = KL(qbar || p)), so that
kl_disc = info_disc + agg_kl_disc (reference/information.py); lambda_agg = disc_aggregate_weight, gamma_c / 10
(AGGREGATE_WEIGHT_FRACTION) when None. With lambda_agg = gamma_c the variant equals Eq. 7 wherever I >= C_c, and
below the capacity it penalises the aggregate KL instead of rewarding it; the default is smaller because that
weight kept the posterior at the uniform point for whole runs on some seeds (jointvae_fast/objective.py).

cont_capacity_on="information" does the same for the continuous term:
  cap_loss_cont = gamma_z * |sum_d info_cont[d] - C_cont| + lambda_z * sum_d agg_kl_cont[d]
with info_cont = gaussian_batch_information (I_d) and agg_kl_cont = kl_gaussian_aggregate (A_d, the KL of the
moment-matched aggregate posterior), kl_cont = info_cont + agg_kl_cont; lambda_z = cont_aggregate_weight, gamma_z / 10
when None.
"""
from .array_namespace import array_namespace
from .capacity import capacity
from .categorical import kl_categorical, kl_categorical_vjp
from .information import (batch_information, batch_information_vjp, gaussian_batch_information,
                          gaussian_batch_information_vjp, kl_aggregate, kl_aggregate_vjp, kl_gaussian_aggregate,
                          kl_gaussian_aggregate_vjp)
from .latent import _parts, theoretical_max_disc_capacity
from .normal import kl_normal, kl_normal_vjp
from .reconstruction import bernoulli_nll, bernoulli_nll_vjp
from .validation import as_float_array, check_capacity_spec, check_finite, check_real, check_same_shape


def _inputs(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity, recon_weight):
    xp = array_namespace(x, x_logits, mu, logvar, logits)
    x = as_float_array("x", x, xp, ndim=4)
    x_logits = as_float_array("x_logits", x_logits, xp, ndim=4)
    check_same_shape("x_logits", x_logits, "x", x)
    had_mu, had_logits = mu is not None, logits is not None
    if mu is None and logits is None:
        mu = logvar = xp.zeros((x.shape[0], 0))
    mu, logvar, logits, dims, batch, _ = _parts(mu, logvar, logits, disc_dims, xp)
    if batch != x.shape[0]:
        raise ValueError(f"mu/logits must have the batch size of x ({x.shape[0]}), got {batch}")
    for name, a in (("x", x), ("x_logits", x_logits), ("mu", mu), ("logvar", logvar), ("logits", logits)):
        check_finite(name, a, xp)
    if x.size and not bool(xp.all((x >= 0) & (x <= 1))):
        bad = x[~((x >= 0) & (x <= 1))].ravel()[0]
        raise ValueError(f"x must hold Bernoulli targets in [0, 1], got a value {float(bad)!r}")
    step = check_real("step", step, minimum=0)
    cont = check_capacity_spec("cont_capacity", cont_capacity)
    disc = check_capacity_spec("disc_capacity", disc_capacity)
    recon_weight = check_real("recon_weight", recon_weight)
    return xp, x, x_logits, mu, logvar, logits, dims, step, cont, disc, recon_weight, had_mu, had_logits


CAPACITY_ON = ("kl", "information")
AGGREGATE_WEIGHT_FRACTION = 0.1


def _mode(part, capacity_on, aggregate_weight, spec):
    """(mode, lambda): the validated mode of `part` ("disc"/"cont") and its aggregate weight (gamma / 10 when None;
    0 without the term)."""
    if capacity_on not in CAPACITY_ON:
        raise ValueError(f"{part}_capacity_on must be one of {CAPACITY_ON}, got {capacity_on!r}")
    if not spec:
        return capacity_on, 0.0
    if aggregate_weight is None:
        return capacity_on, spec[3] * AGGREGATE_WEIGHT_FRACTION
    return capacity_on, check_real(f"{part}_aggregate_weight", aggregate_weight, minimum=0)



def _cont_term_vjp(xp, mu, logvar, c_cont, cont, mode, lam, scale):
    """d(scale * the continuous _capacity_term)/d(mu, logvar), each [B, D] (sign(0) = 0 at the kink)."""
    if not cont:
        return xp.zeros_like(mu), xp.zeros_like(logvar)
    ones = xp.ones(mu.shape[1], dtype=xp.float64)
    if mode == "kl":
        g = scale * cont[3] * xp.sign(xp.sum(kl_normal(mu, logvar)) - c_cont)
        return kl_normal_vjp(mu, logvar, g * ones)
    g = scale * cont[3] * xp.sign(xp.sum(gaussian_batch_information(mu, logvar)) - c_cont)
    d_mu, d_logvar = gaussian_batch_information_vjp(mu, logvar, g * ones)
    a_mu, a_logvar = kl_gaussian_aggregate_vjp(mu, logvar, scale * lam * ones)
    return d_mu + a_mu, d_logvar + a_logvar


def _capacity_term(xp, kl, info, agg, c, spec, mode, lam):
    """One capacity term, continuous or discrete: gamma |sum KL - C| (kl) or gamma |sum I - C| + lambda sum A
    (information); 0 without a capacity spec."""
    if not spec:
        return xp.asarray(0.0)
    if mode == "kl":
        return spec[3] * xp.abs(xp.sum(kl) - c)
    return spec[3] * xp.abs(xp.sum(info) - c) + lam * xp.sum(agg)


def _disc_term_vjp(xp, logits, dims, c_disc, disc, mode, lam, scale):
    """d(scale * the discrete _capacity_term)/d logits [B, sum K] (sign(0) = 0 at the kink)."""
    ones = xp.ones(len(dims), dtype=xp.float64)
    if mode == "kl":
        g = scale * disc[3] * xp.sign(xp.sum(kl_categorical(logits, dims)) - c_disc)
        return kl_categorical_vjp(logits, dims, g * ones)[0]
    g = scale * disc[3] * xp.sign(xp.sum(batch_information(logits, dims)) - c_disc)
    return batch_information_vjp(logits, dims, g * ones)[0] + kl_aggregate_vjp(logits, dims, scale * lam * ones)[0]


def _capacities(step, cont, disc, dims):
    c_cont = capacity(step, *cont[:3]) if cont else 0.0
    c_disc = capacity(step, *disc[:3], cap=theoretical_max_disc_capacity(dims)) if disc else 0.0
    return c_cont, c_disc


def jointvae_objective(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity,
                       recon_weight=1.0, disc_capacity_on="kl", disc_aggregate_weight=None, cont_capacity_on="kl",
                       cont_aggregate_weight=None):
    """Joint-VAE loss terms -> dict (see module docstring for the formulas).

    x, x_logits [B, C, H, W]; mu, logvar [B, D] (or None); logits [B, sum K] (or None);
    capacities (c_min, c_max, num_iters, gamma) or None. Keys: total, recon, kl_cont [D],
    kl_disc [V], info_disc [V], agg_kl_disc [V], info_cont [D], agg_kl_cont [D], c_cont, c_disc, cap_loss_cont,
    cap_loss_disc, num_pixels.
    """
    (xp, x, x_logits, mu, logvar, logits, dims, step, cont, disc, recon_weight, _, _) = _inputs(
        x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity, recon_weight)
    mode, lam = _mode("disc", disc_capacity_on, disc_aggregate_weight, disc)
    cont_mode, lam_z = _mode("cont", cont_capacity_on, cont_aggregate_weight, cont)
    num_pixels = x.shape[2] * x.shape[3]
    recon = bernoulli_nll(x, x_logits)
    kl_cont = kl_normal(mu, logvar)
    kl_disc = kl_categorical(logits, dims)
    info, agg = batch_information(logits, dims), kl_aggregate(logits, dims)
    info_cont, agg_cont = gaussian_batch_information(mu, logvar), kl_gaussian_aggregate(mu, logvar)
    c_cont, c_disc = _capacities(step, cont, disc, dims)
    cap_cont = _capacity_term(xp, kl_cont, info_cont, agg_cont, c_cont, cont, cont_mode, lam_z)
    cap_disc = _capacity_term(xp, kl_disc, info, agg, c_disc, disc, mode, lam)
    total = (recon_weight * recon + cap_cont + cap_disc) / num_pixels
    return {
        "total": total,
        "recon": recon,
        "kl_cont": kl_cont,
        "kl_disc": kl_disc,
        "info_disc": info,
        "agg_kl_disc": agg,
        "info_cont": info_cont,
        "agg_kl_cont": agg_cont,
        "c_cont": c_cont,
        "c_disc": c_disc,
        "cap_loss_cont": cap_cont,
        "cap_loss_disc": cap_disc,
        "num_pixels": num_pixels,
    }


def jointvae_objective_vjp(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity,
                           grad=1.0, *, recon_weight=1.0, disc_capacity_on="kl", disc_aggregate_weight=None,
                           cont_capacity_on="kl", cont_aggregate_weight=None):
    """Gradients of grad * total -> (d_x_logits [B,C,H,W], d_mu [B,D], d_logvar [B,D], d_logits [B,sum K]).

    d_mu/d_logvar (d_logits) are None where mu/logvar (logits) were None, and zero where the
    corresponding capacity is None. sign(0) = 0 at the |.| kink.
    """
    (xp, x, x_logits, mu, logvar, logits, dims, step, cont, disc, recon_weight, had_mu, had_logits) = _inputs(
        x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity, recon_weight)
    mode, lam = _mode("disc", disc_capacity_on, disc_aggregate_weight, disc)
    cont_mode, lam_z = _mode("cont", cont_capacity_on, cont_aggregate_weight, cont)
    grad = as_float_array("grad", grad, xp, ndim=0)
    scale = grad / (x.shape[2] * x.shape[3])
    (d_x_logits,) = bernoulli_nll_vjp(x, x_logits, scale * recon_weight)
    c_cont, c_disc = _capacities(step, cont, disc, dims)
    d_mu, d_logvar = _cont_term_vjp(xp, mu, logvar, c_cont, cont, cont_mode, lam_z, scale)
    if disc:
        d_logits = _disc_term_vjp(xp, logits, dims, c_disc, disc, mode, lam, scale)
    else:
        d_logits = xp.zeros_like(logits)
    return (d_x_logits, d_mu if had_mu else None, d_logvar if had_mu else None,
            d_logits if had_logits else None)
