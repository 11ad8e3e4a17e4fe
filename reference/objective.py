"""The Joint-VAE objective (Eq. 7 of the paper) as the reference implementation normalises it.

total = (recon_weight * recon + cap_loss_cont + cap_loss_disc) / (H * W)
  recon         = bernoulli_nll(x, x_logits)   (per-image sum over C*H*W, batch mean)
  cap_loss_cont = gamma_z * |sum_d kl_cont[d] - C_cont|,  C_cont = capacity(step, *cont_capacity[:3])
  cap_loss_disc = gamma_c * |sum_i kl_disc[i] - C_disc|,  C_disc = capacity(step, *disc_capacity[:3],
                                                                   cap=sum_i log K_i)
A capacity spec of None removes that term entirely (c = 0, loss 0, no gradient).
"""
from .array_namespace import array_namespace
from .capacity import capacity
from .categorical import kl_categorical, kl_categorical_vjp
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


def _capacities(step, cont, disc, dims):
    c_cont = capacity(step, *cont[:3]) if cont else 0.0
    c_disc = capacity(step, *disc[:3], cap=theoretical_max_disc_capacity(dims)) if disc else 0.0
    return c_cont, c_disc


def jointvae_objective(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity,
                       recon_weight=1.0):
    """Joint-VAE loss terms -> dict (see module docstring for the formulas).

    x, x_logits [B, C, H, W]; mu, logvar [B, D] (or None); logits [B, sum K] (or None);
    capacities (c_min, c_max, num_iters, gamma) or None. Keys: total, recon, kl_cont [D],
    kl_disc [V], c_cont, c_disc, cap_loss_cont, cap_loss_disc, num_pixels.
    """
    (xp, x, x_logits, mu, logvar, logits, dims, step, cont, disc, recon_weight, _, _) = _inputs(
        x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity, recon_weight)
    num_pixels = x.shape[2] * x.shape[3]
    recon = bernoulli_nll(x, x_logits)
    kl_cont = kl_normal(mu, logvar)
    kl_disc = kl_categorical(logits, dims)
    c_cont, c_disc = _capacities(step, cont, disc, dims)
    cap_cont = cont[3] * xp.abs(xp.sum(kl_cont) - c_cont) if cont else xp.asarray(0.0)
    cap_disc = disc[3] * xp.abs(xp.sum(kl_disc) - c_disc) if disc else xp.asarray(0.0)
    total = (recon_weight * recon + cap_cont + cap_disc) / num_pixels
    return {
        "total": total,
        "recon": recon,
        "kl_cont": kl_cont,
        "kl_disc": kl_disc,
        "c_cont": c_cont,
        "c_disc": c_disc,
        "cap_loss_cont": cap_cont,
        "cap_loss_disc": cap_disc,
        "num_pixels": num_pixels,
    }


def jointvae_objective_vjp(x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity,
                           grad=1.0, *, recon_weight=1.0):
    """Gradients of grad * total -> (d_x_logits [B,C,H,W], d_mu [B,D], d_logvar [B,D], d_logits [B,sum K]).

    d_mu/d_logvar (d_logits) are None where mu/logvar (logits) were None, and zero where the
    corresponding capacity is None. sign(0) = 0 at the |.| kink.
    """
    (xp, x, x_logits, mu, logvar, logits, dims, step, cont, disc, recon_weight, had_mu, had_logits) = _inputs(
        x, x_logits, mu, logvar, logits, disc_dims, step, cont_capacity, disc_capacity, recon_weight)
    grad = as_float_array("grad", grad, xp, ndim=0)
    scale = grad / (x.shape[2] * x.shape[3])
    (d_x_logits,) = bernoulli_nll_vjp(x, x_logits, scale * recon_weight)
    c_cont, c_disc = _capacities(step, cont, disc, dims)
    if cont:
        kl_cont = kl_normal(mu, logvar)
        g = scale * cont[3] * xp.sign(xp.sum(kl_cont) - c_cont)
        d_mu, d_logvar = kl_normal_vjp(mu, logvar, xp.full(kl_cont.shape, g, dtype=xp.float64))
    else:
        d_mu, d_logvar = xp.zeros_like(mu), xp.zeros_like(logvar)
    if disc:
        kl_disc = kl_categorical(logits, dims)
        g = scale * disc[3] * xp.sign(xp.sum(kl_disc) - c_disc)
        (d_logits,) = kl_categorical_vjp(logits, dims, xp.full(kl_disc.shape, g, dtype=xp.float64))
    else:
        d_logits = xp.zeros_like(logits)
    return (d_x_logits, d_mu if had_mu else None, d_logvar if had_mu else None,
            d_logits if had_logits else None)
