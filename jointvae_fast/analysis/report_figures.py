"""The figures of an evaluation report (PNG files), each with its one-line caption for index.html.

`write_figures(ctx, edits, azimuth)` -> {file name: caption}; which figures apply: analysis/cli.py's docstring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..model import JointVAE
from .class_members import MEMBERS
from .encoding import Encoded
from .figures import plots
from .figures.editing import Edit, edit_strip
from ..grids.images import save_image_grid
from .metrics.information import USAGE_THRESHOLD
from ..grids.traversal import (
    class_conditioned_samples,
    class_unit_grid,
    continuous_traversal,
    discrete_traversal,
    mode_latent,
)
from .split import EvalSplit, take_images

MAX_UNIT_FIGURES = 10  # traversal_z<j>.png for at most this many active units
FIGURE_ROWS = 8  # test images used as fixed latents / edited / reconstructed (x2 for reconstructions)
RANKED_LATENTS = 16  # latents shown in ranked_traversals.png
MEMBER_CLASSES = 64  # classes shown there at most (the first ones)


@dataclass
class FigureContext:
    """What the figures are drawn from: the model (eval mode), the split and its encoding, the KL ranking."""

    model: JointVAE
    data: EvalSplit
    enc: Encoded
    out: Path
    kl_cont: np.ndarray  # [D]
    kl_disc: np.ndarray  # [V]
    unit_order: list[int]  # continuous units, highest KL first
    active: list[int]  # units of unit_order with KL above inactive_kl
    inactive_kl: float
    seed: int  # of the prior samples
    log_path: Path | None  # the run's log.jsonl, when known

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def rows(self) -> int:
        return min(FIGURE_ROWS, self.data.images.shape[0])

    def base(self) -> torch.Tensor:
        """Eval-mode latents of the first `rows` test images [rows, D + sum K] on the model's device."""
        enc = self.enc
        return mode_latent(enc.mu[: self.rows], enc.logits[: self.rows], self.model.disc).to(self.device)


def _save_traversal(t, path) -> None:
    images, nrow = t.grid()
    save_image_grid(images, path, nrow=nrow)


def kl_figures(ctx: FigureContext) -> dict[str, str]:
    """kl_units.png, ranked_traversals.png (Fig. 8) and, with the run's log, kl_training.png (Fig. 7)."""
    figs = {}
    model, kl_cont, kl_disc = ctx.model, ctx.kl_cont, ctx.kl_disc
    plots.kl_bar_figure(kl_cont, kl_disc, ctx.inactive_kl, ctx.out / "kl_units.png")
    figs["kl_units.png"] = (f"KL of each latent on the test split, ranked; grey latents (KL < {ctx.inactive_kl:g} "
                            "nats) carry no information (inactive).")
    base = ctx.base()[:1]
    order = sorted([("z", j, kl_cont[j]) for j in range(model.cont)] +
                   [("c", i, kl_disc[i]) for i in range(len(model.disc))], key=lambda t: -t[2])[:RANKED_LATENTS]
    names, kls, strips = [], [], []
    for kind, idx, kl in order:
        t = (continuous_traversal(model, idx, steps=10, base=base) if kind == "z"
             else discrete_traversal(model, idx, base=base))
        names.append(f"{kind}{idx}")
        kls.append(float(kl))
        strips.append(t.images[0].cpu())
    if names:
        plots.ranked_traversal_figure(names, kls, strips, ctx.inactive_kl, ctx.out / "ranked_traversals.png")
        figs["ranked_traversals.png"] = ("Latents ranked by KL (left), each traversed on the first test image "
                                         "(right): informative latents change the image, inactive ones do not "
                                         "(paper Fig. 8).")
    records = plots.read_training_log(ctx.log_path) if ctx.log_path is not None else []
    if records:
        plots.kl_training_figure(records, ctx.out / "kl_training.png")
        figs["kl_training.png"] = ("KL per continuous unit (left) and per discrete variable (right) over training, "
                                   "with the capacities C_z and C_c they are pushed towards (paper Fig. 7).")
    return figs


def traversal_figures(ctx: FigureContext) -> dict[str, str]:
    """traversal_z<j>.png for the active units and traversal_c<i>.png for every discrete variable (Fig. 3)."""
    figs = {}
    model, base, rows = ctx.model, ctx.base(), ctx.rows
    for j in ctx.active[:MAX_UNIT_FIGURES] or ctx.unit_order[:1]:
        _save_traversal(continuous_traversal(model, j, steps=10, base=base), ctx.out / f"traversal_z{j}.png")
        figs[f"traversal_z{j}.png"] = (f"Continuous unit z{j} (KL {ctx.kl_cont[j]:.2f} nats) swept over the prior's "
                                       f"5%..95% quantiles (columns), other latents fixed to those of {rows} test "
                                       "images (rows) (paper Fig. 3).")
    for i in range(len(model.disc)):
        _save_traversal(discrete_traversal(model, i, base=base), ctx.out / f"traversal_c{i}.png")
        figs[f"traversal_c{i}.png"] = (f"Discrete variable c{i} (KL {ctx.kl_disc[i]:.2f} nats) set to each of its "
                                       f"{model.disc[i]} classes (columns), other latents from {rows} test images "
                                       "(rows) (paper Fig. 3).")
    return figs


def class_figures(ctx: FigureContext) -> dict[str, str]:
    """samples_by_class.png (Fig. 4) and class_unit_grid.png (Fig. 5) for the most informative discrete variable."""
    model = ctx.model
    if not model.disc:
        return {}
    figs = {}
    var = int(np.argmax(ctx.kl_disc))
    t = class_conditioned_samples(model, var, samples=10, generator=torch.Generator().manual_seed(ctx.seed))
    _save_traversal(t, ctx.out / "samples_by_class.png")
    figs["samples_by_class.png"] = (f"Samples with discrete variable c{var} fixed to each class (rows) and the "
                                    "continuous latents drawn from the prior (paper Fig. 4).")
    if model.cont:
        unit = ctx.unit_order[0]
        _save_traversal(class_unit_grid(model, unit, var, steps=10, base=ctx.base()[:1]),
                        ctx.out / "class_unit_grid.png")
        figs["class_unit_grid.png"] = (f"Class of c{var} (rows) x the most informative continuous unit z{unit} over "
                                       "the prior's quantiles (columns), rest from the first test image (paper Fig. 5).")
    return figs


def reconstruction_figure(ctx: FigureContext) -> dict[str, str]:
    """reconstructions.png: 2 * FIGURE_ROWS test images, each block of rows above its reconstructions."""
    enc, model, device = ctx.enc, ctx.model, ctx.device
    n2 = min(2 * FIGURE_ROWS, ctx.data.images.shape[0])
    with torch.no_grad():
        xo = ctx.data.images[:n2].to(device).float() / 255.0
        rec = torch.sigmoid(model.decode(mode_latent(enc.mu[:n2], enc.logits[:n2], model.disc).to(device)))
    pieces = []
    for s in range(0, n2, FIGURE_ROWS):
        pieces += [xo[s : s + FIGURE_ROWS], rec[s : s + FIGURE_ROWS]]
    save_image_grid(torch.cat(pieces), ctx.out / "reconstructions.png", nrow=min(FIGURE_ROWS, n2))
    return {"reconstructions.png": "Test images (rows 1, 3) above their reconstructions from the eval-mode latent "
                                   "(rows 2, 4)."}


def editing_figure(ctx: FigureContext, edits: Sequence[Edit]) -> tuple[dict[str, str], list[Edit]]:
    """editing.png (Fig. 9b) for `edits` (default: the top unit at -2..2); (figure, the edits shown)."""
    if not edits and ctx.model.cont:
        edits = [Edit("z", ctx.unit_order[0], v) for v in (-2.0, -1.0, 0.0, 1.0, 2.0)]
    if not edits:
        return {}, []
    x = ctx.data.images[: ctx.rows].to(ctx.device).float() / 255.0
    strip = edit_strip(ctx.model, x, edits)
    save_image_grid(strip.flatten(0, 1), ctx.out / "editing.png", nrow=strip.shape[1])
    caption = ("Image editing (paper Fig. 9b): per test image (rows) the original, its reconstruction, "
               "then the reconstruction with " + ", ".join(str(e) for e in edits) + ".")
    return {"editing.png": caption}, list(edits)


def azimuth_figure(ctx: FigureContext, azimuth) -> dict[str, str]:
    """azimuth_scatter.png (Fig. 9a) for azimuth = (factor name, theta [M] radians, unit, CircularLinearFit)."""
    if azimuth is None:
        return {}
    name, theta, unit, fit = azimuth
    r = fit.r if math.isfinite(fit.r) else float("nan")
    plots.azimuth_scatter_figure(np.rad2deg(theta), ctx.enc.mu[:, unit].numpy(), f"z{unit}", r,
                                 ctx.out / "azimuth_scatter.png", fit=fit)
    return {"azimuth_scatter.png": (f"Posterior mean of z{unit}, the unit that best predicts {name}, against the true "
                                    f"azimuth, with the fitted sinusoid; Mardia circular-linear R = {r:.3f} "
                                    "(paper Fig. 9a).")}


def class_usage_figure(ctx: FigureContext, info) -> dict[str, str]:
    """class_usage.png: per discrete variable, the share of test images whose argmax is each class."""
    if not info:
        return {}
    plots.class_usage_figure({k: v["class_usage"] for k, v in info.items()},
                             {k: v["information"] for k, v in info.items()}, USAGE_THRESHOLD,
                             ctx.out / "class_usage.png")
    return {"class_usage.png": (f"Share of test images whose most probable class is each class, per discrete "
                                f"variable, with I(x; c) in the title; below the dashed line ({USAGE_THRESHOLD:.0%}) "
                                "a class does not count as in use.")}


def class_member_figures(ctx: FigureContext, members: dict[str, list[list[int]]], info) -> dict[str, str]:
    """class_members_c<i>.png: for each class of each discrete variable, the real test images it takes."""
    figs = {}
    for var, per_class in members.items():
        usage = (info or {}).get(var, {}).get("class_usage") or [0.0] * len(per_class)
        shown = per_class[:MEMBER_CLASSES]
        strips = [take_images(ctx.data.images, pos).float().div_(255.0) if pos else torch.zeros(0)
                  for pos in shown]
        labels = [f"class {k}\n{100 * usage[k]:.1f}%" for k in range(len(shown))]
        plots.class_members_figure(labels, strips, MEMBERS, ctx.out / f"class_members_{var}.png")
        more = f" (the first {MEMBER_CLASSES} of {len(per_class)} classes)" if len(per_class) > MEMBER_CLASSES else ""
        figs[f"class_members_{var}.png"] = (
            f"What each class of {var} picked up: per class (rows, with its share of the test images) the real "
            f"test images whose most probable class it is, the most confident first (at most {MEMBERS}){more}.")
    return figs


def write_figures(ctx: FigureContext, edits: Sequence[Edit], azimuth, info=None,
                  members=None) -> tuple[dict[str, str], list[Edit]]:
    """Every figure that applies, in the report's order; ({file: caption}, the edits shown).

    info: metrics["discrete_information"] (for class_usage.png); members: metrics["class_members"]."""
    figs = {**kl_figures(ctx), **class_usage_figure(ctx, info),
            **class_member_figures(ctx, members or {}, info), **traversal_figures(ctx),
            **class_figures(ctx), **reconstruction_figure(ctx)}
    edit_figs, shown = editing_figure(ctx, edits)
    figs.update(edit_figs)
    figs.update(azimuth_figure(ctx, azimuth))
    return figs, shown
