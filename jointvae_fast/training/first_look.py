"""The first-look grids of a model: prior samples and a traversal, from a fixed-seed generator of their own.

samples: 64 decoded prior draws, 8 per row. traversal: one row per continuous
unit (highest KL first when the KLs are given, at most 10) over the prior's
5%..95% quantiles, then one row per discrete variable over its classes; S =
max(10, K_i) columns, shorter rows padded with black. Every row starts from one
prior draw with class 0 of every discrete variable.

The draws come from a CPU generator seeded with derive_seed("images", seed, 0),
so the grids are the same latents at every step of a run, and making them
never draws from the training generators. The model is put in eval mode while
decoding and given back in its former mode. samples.png and traversal.png at
the end of a run and the TensorBoard images (tensorboard_log.py) are these grids.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from ..grids.images import save_image_grid
from ..grids.traversal import continuous_traversal, discrete_traversal, prior_latents, set_class
from ..model import JointVAE
from ..store import run_layout
from .batches import derive_seed

SAMPLES, SAMPLES_PER_ROW, MAX_UNITS, MIN_COLUMNS = 64, 8, 10, 10


class Grid(NamedTuple):
    images: torch.Tensor  # [N, C, H, W] pixel probabilities in [0, 1]
    nrow: int  # images per row


def _traversal_base(model: JointVAE, g: torch.Generator) -> torch.Tensor:
    """One prior draw [1, L] with class 0 of every discrete variable."""
    base = prior_latents(model, 1, g)
    for variable in range(len(model.disc)):
        base = set_class(base, model, variable, 0)
    return base


def _traversal(model: JointVAE, base: torch.Tensor, kl_cont: Sequence[float] | None) -> Grid:
    steps = max([MIN_COLUMNS, *model.disc])
    units = list(range(model.cont))
    if kl_cont is not None and len(kl_cont) == model.cont:
        units.sort(key=lambda d: -kl_cont[d])
    rows = [continuous_traversal(model, d, steps=steps, base=base).images[0] for d in units[:MAX_UNITS]]
    for v, k in enumerate(model.disc):
        imgs = discrete_traversal(model, v, base=base).images[0]
        if k < steps:
            imgs = torch.cat([imgs, imgs.new_zeros(steps - k, *imgs.shape[1:])])
        rows.append(imgs)
    return Grid(torch.cat(rows), steps)


@torch.no_grad()
def first_look_grids(model: JointVAE, seed: int, kl_cont: Sequence[float] | None) -> tuple[Grid, Grid]:
    """(samples, traversal) of `model` (module docstring); kl_cont [D] orders the traversal's units."""
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(derive_seed("images", seed, 0))
        samples = Grid(model.probabilities(prior_latents(model, SAMPLES, g)), SAMPLES_PER_ROW)
        traversal = _traversal(model, _traversal_base(model, g), kl_cont)
    finally:
        model.train(was_training)
    return samples, traversal


def write_first_look(model: JointVAE, run_dir: Path, seed: int, kl_cont: Sequence[float] | None) -> list[Path]:
    """samples.png and traversal.png in run_dir (first_look_grids); their paths."""
    samples, traversal = first_look_grids(model, seed, kl_cont)
    return [save_image_grid(samples.images, run_dir / run_layout.SAMPLES, nrow=samples.nrow),
            save_image_grid(traversal.images, run_dir / run_layout.TRAVERSAL, nrow=traversal.nrow)]
