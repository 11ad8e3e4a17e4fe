"""Latent traversals and conditioned samples (the paper's Figs. 3, 4 and 5).

Latent layout (decoder input) [D + sum K] = [z (D), y_1 (K_1), ..., y_V (K_V)].
A *base* latent is a full decoder input: z in R^D and each y_i one-hot.

- continuous_traversal: unit d takes the prior's quantiles Phi^-1(linspace(lo, hi, S))
  (default lo=0.05, hi=0.95, as in the paper's published code); one row per base latent.
- discrete_traversal: variable i takes each of its K_i classes; one row per base latent.
- class_conditioned_samples: row k has y_i = e_k, z ~ N(0, I), other discrete variables uniform.
- class_unit_grid: row k has y_i = e_k, columns traverse unit d; everything else from one base latent.

Every function returns a `Traversal`: latents [R, S, D + sum K] and decoded pixel
probabilities images [R, S, C, H, W] (sigmoid of the decoder's logits). For a
picture: save_image_grid(t.images.flatten(0, 1), path, nrow=S).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from ..model import JointVAE
from .. import ops


class Traversal(NamedTuple):
    latents: torch.Tensor  # [R, S, D + sum K]
    images: torch.Tensor  # [R, S, C, H, W] pixel probabilities in [0, 1]

    def grid(self) -> tuple[torch.Tensor, int]:
        """(images [R*S, C, H, W], nrow=S): the arguments for images.save_image_grid."""
        return self.images.flatten(0, 1), self.images.shape[1]


def _device(model: JointVAE) -> torch.device:
    return next(model.parameters()).device


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value >= hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
        raise ValueError(f"{name} must be an int {rng}, got {value!r}")
    return value


def disc_offset(model: JointVAE, variable: int) -> int:
    """Column where discrete variable `variable` starts in the decoder's latent: D + sum(K[:variable])."""
    _check_int("variable", variable, 0, len(model.disc))
    return model.cont + sum(model.disc[:variable])


def prior_quantiles(steps: int, lo: float = 0.05, hi: float = 0.95) -> torch.Tensor:
    """Phi^-1(linspace(lo, hi, steps)) of the standard normal, float32 [steps]."""
    _check_int("steps", steps, 1)
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"quantile range must satisfy 0 < lo <= hi < 1, got lo={lo!r}, hi={hi!r}")
    p = torch.linspace(lo, hi, steps, dtype=torch.float64)
    return torch.distributions.Normal(0.0, 1.0).icdf(p).float()


def mode_latent(mu: torch.Tensor, logits: torch.Tensor, disc: Sequence[int]) -> torch.Tensor:
    """The eval-mode latent [mu, one_hot(argmax(logits_i))...] (first index on ties), [B, D + sum K]:
    ops.sample_latent with training=False (which reads no logvar and draws no noise)."""
    return ops.sample_latent(mu, torch.zeros_like(mu), logits, disc, 1.0, training=False)


def prior_latents(model: JointVAE, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws from the prior: z ~ N(0, I), each y_i a uniformly random one-hot; [n, D + sum K] on the model's device."""
    _check_int("n", n, 1)
    z = torch.randn(n, model.cont, generator=generator)
    parts = [z]
    for k in model.disc:
        idx = torch.randint(0, k, (n,), generator=generator)
        parts.append(F.one_hot(idx, k).float())
    return torch.cat(parts, dim=1).to(_device(model))


def set_unit(latents: torch.Tensor, unit: int, value) -> torch.Tensor:
    """A copy of latents [..., L] with continuous unit `unit` set to `value` (a number or broadcastable tensor)."""
    out = latents.clone()
    out[..., unit] = value
    return out


def set_class(latents: torch.Tensor, model: JointVAE, variable: int, cls: int) -> torch.Tensor:
    """A copy of latents [..., L] with discrete variable `variable` set to the one-hot of class `cls`."""
    start = disc_offset(model, variable)
    k = model.disc[variable]
    _check_int("cls", cls, 0, k)
    out = latents.clone()
    out[..., start : start + k] = 0.0
    out[..., start + cls] = 1.0
    return out


@torch.no_grad()
def decode_grid(model: JointVAE, latents: torch.Tensor) -> Traversal:
    """Decode latents [R, S, L] into a Traversal (pixel probabilities)."""
    if latents.dim() != 3 or latents.shape[2] != model.latent_dim:
        raise ValueError(f"latents must have shape [R, S, {model.latent_dim}], got {tuple(latents.shape)}")
    r, s, l = latents.shape
    latents = latents.to(_device(model))
    images = torch.sigmoid(model.decode(latents.reshape(r * s, l)))
    return Traversal(latents, images.reshape(r, s, *images.shape[1:]))


def _base(model: JointVAE, base, rows: int, generator) -> torch.Tensor:
    if base is None:
        return prior_latents(model, rows, generator)
    if not isinstance(base, torch.Tensor) or base.dim() != 2 or base.shape[1] != model.latent_dim:
        shape = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
        raise ValueError(f"base must be a tensor [R, {model.latent_dim}], got {shape}")
    return base.to(_device(model), torch.float32)


def continuous_traversal(
    model: JointVAE,
    unit: int,
    steps: int = 10,
    base: torch.Tensor | None = None,
    rows: int = 8,
    lo: float = 0.05,
    hi: float = 0.95,
    generator: torch.Generator | None = None,
) -> Traversal:
    """Unit `unit` over the prior's quantiles (columns), one row per base latent [R, L] (default: `rows` prior draws)."""
    _check_int("unit", unit, 0, model.cont)
    b = _base(model, base, rows, generator)
    values = prior_quantiles(steps, lo, hi).to(b.device)
    lat = b[:, None, :].repeat(1, steps, 1)
    lat = set_unit(lat, unit, values)
    return decode_grid(model, lat)


def discrete_traversal(
    model: JointVAE,
    variable: int,
    base: torch.Tensor | None = None,
    rows: int = 8,
    generator: torch.Generator | None = None,
) -> Traversal:
    """Discrete variable `variable` over its K classes (columns), one row per base latent."""
    _check_int("variable", variable, 0, len(model.disc))
    b = _base(model, base, rows, generator)
    k = model.disc[variable]
    lat = torch.stack([set_class(b, model, variable, c) for c in range(k)], dim=1)
    return decode_grid(model, lat)


def class_conditioned_samples(
    model: JointVAE, variable: int = 0, samples: int = 8, generator: torch.Generator | None = None
) -> Traversal:
    """Row k: `samples` prior draws with discrete variable `variable` fixed to class k (Fig. 4)."""
    _check_int("variable", variable, 0, len(model.disc))
    _check_int("samples", samples, 1)
    k = model.disc[variable]
    b = prior_latents(model, k * samples, generator).view(k, samples, -1)
    lat = torch.stack([set_class(b[c], model, variable, c) for c in range(k)], dim=0)
    return decode_grid(model, lat)


def class_unit_grid(
    model: JointVAE,
    unit: int,
    variable: int = 0,
    steps: int = 10,
    base: torch.Tensor | None = None,
    lo: float = 0.05,
    hi: float = 0.95,
    generator: torch.Generator | None = None,
) -> Traversal:
    """Row k: class k of `variable`; columns: unit `unit` over prior quantiles; rest from one base latent [1, L] (Fig. 5)."""
    _check_int("unit", unit, 0, model.cont)
    _check_int("variable", variable, 0, len(model.disc))
    b = _base(model, base, 1, generator)
    if b.shape[0] != 1:
        raise ValueError(f"base must hold exactly one latent [1, {model.latent_dim}], got {tuple(b.shape)}")
    k = model.disc[variable]
    values = prior_quantiles(steps, lo, hi).to(b.device)
    row = set_unit(b.repeat(steps, 1), unit, values)  # [S, L]
    lat = torch.stack([set_class(row, model, variable, c) for c in range(k)], dim=0)
    return decode_grid(model, lat)
