"""The evaluation report: metrics.json, the paper's figures and index.html for one source and test split.

Fields of metrics.json: METRIC_FIELDS. Definitions: the docstring of `jointvae_fast.analysis.cli`.
"""
from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__
from .encoding import classes, encode_split, kl_per_latent, recon_nll
from .figures import plots
from .figures.editing import Edit, check_edit, edit_strip
from .figures.images import save_image_grid
from .figures.traversal import (
    class_conditioned_samples,
    class_unit_grid,
    continuous_traversal,
    discrete_traversal,
    mode_latent,
)
from .metrics.accuracy import hungarian_accuracy, majority_accuracy
from .metrics.circular import best_unit_pair, circular_linear_fit
from .metrics.mig import mig
from .sources import EvaluationError, Source
from .split import EvalSplit

INACTIVE_KL = 0.02  # nats: latents below this carry (almost) no information
MAX_UNIT_FIGURES = 10  # traversal_z<j>.png for at most this many active units
FIGURE_ROWS = 8  # test images used as fixed latents / edited / reconstructed (x2 for reconstructions)
MIG_BINS = 20
MIG_MAX_FACTOR_VALUES = 64  # factors with more distinct values are binned into MIG_BINS

METRIC_FIELDS = {
    "source": "path evaluated",
    "source_kind": "run, checkpoint or paper",
    "dataset": "dataset name",
    "step": "optimizer steps of the checkpoint (null for checkpoints of the paper's code)",
    "image_size": "[C, H, W]",
    "cont": "number of continuous units D",
    "disc": "classes per discrete variable",
    "n_test": "test images evaluated",
    "encode_seconds": "time to encode the test split",
    "images_per_second": "n_test / encode_seconds",
    "eval_seconds": "time for the whole evaluation (figures included)",
    "kl_cont": "KL per continuous unit on the test split [D] (nats)",
    "kl_disc": "KL per discrete variable [V] (nats)",
    "kl_cont_sum": "KL_z",
    "kl_disc_sum": "KL_c",
    "inactive_threshold": "KL (nats) below which a latent counts as inactive",
    "active_units": "continuous units with KL above the threshold, highest KL first",
    "ranked_latents": "all latents (z<j>, c<i>), highest KL first",
    "recon_nll": "reconstruction NLL (nats per image, Bernoulli) with eval-mode latents",
    "recon_nll_images": "images recon_nll was measured on",
    "accuracy": "unsupervised accuracy of the discrete latent vs labels (Hungarian, majority)",
    "mig": "mutual information gap over continuous and discrete latents vs ground-truth factors",
    "factor_accuracy": "per discrete factor: accuracy of the best discrete variable",
    "azimuth": "the unit that best predicts azimuth and its circular correlations",
    "edits": "edits shown in editing.png",
    "figures": "file -> one-line explanation",
    "versions": "jointvae_fast and torch versions",
}


def _accuracy_block(cls: np.ndarray, target: np.ndarray) -> dict[str, Any] | None:
    """Hungarian and majority accuracy of every discrete variable vs target; the best variable first."""
    if cls.shape[1] == 0:
        return None
    per = {}
    for i in range(cls.shape[1]):
        h, m = hungarian_accuracy(cls[:, i], target), majority_accuracy(cls[:, i], target)
        per[f"c{i}"] = {"hungarian": h.accuracy, "majority": m.accuracy,
                        "mapping": {str(k): v for k, v in h.mapping.items()}}
    best = max(per, key=lambda k: per[k]["hungarian"])
    return {"variable": best, "hungarian": per[best]["hungarian"], "majority": per[best]["majority"],
            "mapping": per[best]["mapping"], "per_variable": per}


def _is_discrete_factor(v: np.ndarray) -> bool:
    return np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_


def azimuth_factor(factors: dict[str, np.ndarray]) -> str | None:
    for k in factors:
        if "azimuth" in k.lower():
            return k
    return None


def azimuth_radians(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return np.deg2rad(v) if np.abs(v).max() > 2 * math.pi + 1e-6 else v


def _write_html(out: Path, metrics: dict[str, Any], figures: dict[str, str]) -> Path:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    rows = [("dataset", metrics["dataset"]), ("test images", metrics["n_test"]),
            ("step", metrics["step"]), ("KL_z (sum over units)", metrics["kl_cont_sum"]),
            ("KL_c (sum over variables)", metrics["kl_disc_sum"]),
            ("active continuous units", ", ".join(f"z{j}" for j in metrics["active_units"]) or "none"),
            ("reconstruction NLL (nats/image)", metrics["recon_nll"])]
    if metrics["accuracy"]:
        a = metrics["accuracy"]
        rows += [(f"accuracy of {a['variable']} (Hungarian)", a["hungarian"]), (f"accuracy of {a['variable']} (majority)", a["majority"])]
    if metrics["mig"]:
        rows.append(("MIG", metrics["mig"]["mig"]))
    for f, a in (metrics["factor_accuracy"] or {}).items():
        rows.append((f"{f}: accuracy of {a['variable']} (Hungarian)", a["hungarian"]))
    if metrics["azimuth"]:
        az = metrics["azimuth"]
        rows.append((f"azimuth: circular-linear R of {az['unit']}", az["circular_linear_r"]))
        if az.get("pair"):
            rows.append((f"azimuth: Fisher-Lee rho of angle({az['pair'][0]}, {az['pair'][1]})", az["pair_circular_correlation"]))
    rows.append(("encoding time (s)", metrics["encode_seconds"]))
    table = "\n".join(f"<tr><td>{html.escape(str(k))}</td><td>{fmt(v)}</td></tr>" for k, v in rows)
    from PIL import Image

    def img_tag(name):
        with Image.open(out / name) as im:
            w = im.width
        scale = max(1, min(4, 720 // max(w, 1)))  # small image grids shown enlarged, pixels kept sharp
        style = f' style="width:{w * scale}px;image-rendering:pixelated"' if scale > 1 else ""
        return f'<img src="{html.escape(name)}" alt="{html.escape(name)}"{style}>'

    figs = "\n".join(
        f"<figure>{img_tag(name)}<figcaption><b>{html.escape(name)}</b>: "
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in figures.items()
    )
    text = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Joint-VAE evaluation: {html.escape(str(metrics['source']))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} img{{max-width:100%}}
figure{{margin:1.5em 0}} td{{padding:2px 10px}}</style></head><body>
<h1>Joint-VAE evaluation</h1>
<p>{html.escape(str(metrics['source']))} ({html.escape(metrics['source_kind'])}); all numbers in metrics.json.</p>
<table>{table}</table>
{figs}
</body></html>
"""
    path = out / "index.html"
    path.write_text(text)
    return path


def evaluate(
    source: Source,
    data: EvalSplit,
    out,
    edits: Sequence[Edit] = (),
    device="cpu",
    progress: bool = True,
    seed: int = 0,
    inactive_kl: float = INACTIVE_KL,
) -> dict[str, Any]:
    """Run every analysis the data allows; write metrics.json, figures and index.html into `out`; return the metrics."""
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model = source.model.to(device).eval()
    if tuple(data.images.shape[1:]) != tuple(model.img_size):
        raise EvaluationError(
            f"the model takes images of size {tuple(model.img_size)} but dataset {data.name!r} has "
            f"{tuple(data.images.shape[1:])}"
        )
    for e in edits:
        try:
            check_edit(model, e)
        except ValueError as err:
            raise EvaluationError(str(err)) from None

    enc = encode_split(model, data.images, device, progress=progress)
    n = data.images.shape[0]
    kl_cont, kl_disc = kl_per_latent(enc, model.disc)
    cls = classes(enc, model.disc)
    names = [f"z{j}" for j in range(model.cont)] + [f"c{i}" for i in range(len(model.disc))]
    all_kl = np.concatenate([kl_cont, kl_disc])
    ranked = [names[i] for i in np.argsort(-all_kl, kind="stable")]
    unit_order = [int(j) for j in np.argsort(-kl_cont, kind="stable")]
    active = [j for j in unit_order if kl_cont[j] > inactive_kl]
    nll, nll_n = recon_nll(model, data.images, enc, device)

    metrics: dict[str, Any] = {k: None for k in METRIC_FIELDS}
    metrics.update(
        source=str(source.path), source_kind=source.kind, dataset=data.name, step=source.step,
        image_size=list(model.img_size), cont=model.cont, disc=list(model.disc), n_test=n,
        encode_seconds=enc.seconds, images_per_second=n / max(enc.seconds, 1e-9),
        kl_cont=kl_cont.tolist(), kl_disc=kl_disc.tolist(), kl_cont_sum=float(kl_cont.sum()),
        kl_disc_sum=float(kl_disc.sum()), inactive_threshold=inactive_kl, active_units=active,
        ranked_latents=ranked, recon_nll=nll, recon_nll_images=nll_n,
        versions={"jointvae_fast": __version__, "torch": torch.__version__},
    )
    if data.labels is not None:
        metrics["accuracy"] = _accuracy_block(cls, data.labels)
    azimuth = None
    if data.factors:
        try:
            r = mig(enc.mu.numpy() if model.cont else None, cls if model.disc else None, data.factors, bins=MIG_BINS,
                    max_values=MIG_MAX_FACTOR_VALUES)
            metrics["mig"] = {"mig": r.mig, "gaps": r.gaps, "top_latent": r.top_latent, "bins": MIG_BINS,
                              "max_factor_values": MIG_MAX_FACTOR_VALUES, "latent_names": r.latent_names, "factor_names": r.factor_names,
                              "mutual_information": r.mutual_information.tolist(),
                              "factor_entropy": r.factor_entropy.tolist()}
        except ValueError as e:  # e.g. a single latent: no gap
            metrics["mig"] = {"mig": None, "error": str(e)}
        fa = {k: _accuracy_block(cls, v) for k, v in data.factors.items() if _is_discrete_factor(v)}
        fa = {k: v for k, v in fa.items() if v is not None}
        metrics["factor_accuracy"] = fa or None
        az_name = azimuth_factor(data.factors)
        if az_name is not None and model.cont:
            theta = azimuth_radians(data.factors[az_name])
            mu = enc.mu.numpy().astype(np.float64)
            fits = {j: circular_linear_fit(mu[:, j], theta) for j in range(model.cont)}
            per_unit = {f"z{j}": (f.r if math.isfinite(f.r) else None) for j, f in fits.items()}
            pool = active or list(range(model.cont))  # an inactive unit does not reach the decoder
            best = max(pool, key=lambda j: fits[j].r if math.isfinite(fits[j].r) else -1.0)
            fit = fits[best]
            azimuth = (az_name, theta, best, fit)
            metrics["azimuth"] = {
                "factor": az_name, "unit": f"z{best}", "circular_linear_r": fit.r if math.isfinite(fit.r) else None,
                "fit": {"offset": fit.offset, "amplitude": fit.amplitude, "phase": fit.phase},
                "per_unit_r": per_unit, "pair": None, "pair_circular_correlation": None,
            }
            cands = active[:MAX_UNIT_FIGURES] if len(active) >= 2 else unit_order[:MAX_UNIT_FIGURES]
            if len(cands) >= 2:
                (i, j), rho = best_unit_pair(mu, theta, cands)
                metrics["azimuth"]["pair"] = [f"z{i}", f"z{j}"]
                metrics["azimuth"]["pair_circular_correlation"] = rho if math.isfinite(rho) else None

    figures = _figures(model, data, enc, out, kl_cont, kl_disc, unit_order, active, edits, source, azimuth, metrics,
                       seed, inactive_kl)
    metrics["figures"] = figures
    metrics["eval_seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2) + "\n")
    _write_html(out, metrics, figures)
    return metrics


def jsonable(v):
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _save_traversal(t, path) -> None:
    images, nrow = t.grid()
    save_image_grid(images, path, nrow=nrow)


def _figures(model, data, enc, out, kl_cont, kl_disc, unit_order, active, edits, source, azimuth, metrics, seed,
             inactive_kl):
    figs: dict[str, str] = {}
    device = next(model.parameters()).device
    rows = min(FIGURE_ROWS, data.images.shape[0])
    x = data.images[:rows].to(device).float() / 255.0
    base = mode_latent(enc.mu[:rows], enc.logits[:rows], model.disc).to(device)
    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731

    plots.kl_bar_figure(kl_cont, kl_disc, inactive_kl, out / "kl_units.png")
    figs["kl_units.png"] = (f"KL of each latent on the test split, ranked; grey latents (KL < {inactive_kl:g} nats) "
                            "carry no information (inactive).")

    # Fig. 8: ranked latents, each next to a traversal of the first test image
    names, kls, strips = [], [], []
    order = sorted([("z", j, kl_cont[j]) for j in range(model.cont)] + [("c", i, kl_disc[i]) for i in range(len(model.disc))],
                   key=lambda t: -t[2])[:16]
    for kind, idx, kl in order:
        t = continuous_traversal(model, idx, steps=10, base=base[:1]) if kind == "z" else discrete_traversal(model, idx, base=base[:1])
        names.append(f"{kind}{idx}")
        kls.append(float(kl))
        strips.append(t.images[0].cpu())
    if names:
        plots.ranked_traversal_figure(names, kls, strips, inactive_kl, out / "ranked_traversals.png")
        figs["ranked_traversals.png"] = ("Latents ranked by KL (left), each traversed on the first test image (right): "
                                         "informative latents change the image, inactive ones do not (paper Fig. 8).")

    if source.log_path is not None:
        records = plots.read_training_log(source.log_path)
        if records:
            plots.kl_training_figure(records, out / "kl_training.png")
            figs["kl_training.png"] = ("KL per continuous unit (left) and per discrete variable (right) over training, "
                                       "with the capacities C_z and C_c they are pushed towards (paper Fig. 7).")

    shown = active[:MAX_UNIT_FIGURES] or unit_order[:1]
    for j in shown:
        t = continuous_traversal(model, j, steps=10, base=base)
        _save_traversal(t, out / f"traversal_z{j}.png")
        figs[f"traversal_z{j}.png"] = (f"Continuous unit z{j} (KL {kl_cont[j]:.2f} nats) swept over the prior's 5%..95% "
                                       f"quantiles (columns), other latents fixed to those of {rows} test images (rows) "
                                       "(paper Fig. 3).")
    for i in range(len(model.disc)):
        t = discrete_traversal(model, i, base=base)
        _save_traversal(t, out / f"traversal_c{i}.png")
        figs[f"traversal_c{i}.png"] = (f"Discrete variable c{i} (KL {kl_disc[i]:.2f} nats) set to each of its "
                                       f"{model.disc[i]} classes (columns), other latents from {rows} test images (rows) "
                                       "(paper Fig. 3).")
    if model.disc:
        var = int(np.argmax(kl_disc))
        t = class_conditioned_samples(model, var, samples=10, generator=gen())
        _save_traversal(t, out / "samples_by_class.png")
        figs["samples_by_class.png"] = (f"Samples with discrete variable c{var} fixed to each class (rows) and the "
                                        "continuous latents drawn from the prior (paper Fig. 4).")
        if model.cont:
            unit = unit_order[0]
            t = class_unit_grid(model, unit, var, steps=10, base=base[:1])
            _save_traversal(t, out / "class_unit_grid.png")
            figs["class_unit_grid.png"] = (f"Class of c{var} (rows) x the most informative continuous unit z{unit} over "
                                           "the prior's quantiles (columns), rest from the first test image (paper Fig. 5).")

    with torch.no_grad():
        n2 = min(2 * FIGURE_ROWS, data.images.shape[0])
        xo = data.images[:n2].to(device).float() / 255.0
        rec = torch.sigmoid(model.decode(mode_latent(enc.mu[:n2], enc.logits[:n2], model.disc).to(device)))
    half = FIGURE_ROWS
    pieces = []
    for s in range(0, n2, half):
        pieces += [xo[s : s + half], rec[s : s + half]]
    save_image_grid(torch.cat(pieces), out / "reconstructions.png", nrow=min(half, n2))
    figs["reconstructions.png"] = "Test images (rows 1, 3) above their reconstructions from the eval-mode latent (rows 2, 4)."

    if not edits and model.cont:
        edits = [Edit("z", unit_order[0], v) for v in (-2.0, -1.0, 0.0, 1.0, 2.0)]
    if edits:
        strip = edit_strip(model, x, edits)
        save_image_grid(strip.flatten(0, 1), out / "editing.png", nrow=strip.shape[1])
        metrics["edits"] = [str(e) for e in edits]
        figs["editing.png"] = ("Image editing (paper Fig. 9b): per test image (rows) the original, its reconstruction, "
                               "then the reconstruction with " + ", ".join(str(e) for e in edits) + ".")

    if azimuth is not None:
        name, theta, unit, fit = azimuth
        r = fit.r if math.isfinite(fit.r) else float("nan")
        plots.azimuth_scatter_figure(np.rad2deg(theta), enc.mu[:, unit].numpy(), f"z{unit}", r, out / "azimuth_scatter.png", fit=fit)
        figs["azimuth_scatter.png"] = (f"Posterior mean of z{unit}, the unit that best predicts {name}, against the true "
                                       f"azimuth, with the fitted sinusoid; Mardia circular-linear R = {r:.3f} (paper Fig. 9a).")
    return figs
