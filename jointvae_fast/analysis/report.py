"""The evaluation report: metrics.json, the paper's figures and index.html for one source and test split.

Fields of metrics.json: METRIC_FIELDS. Definitions: the docstring of `jointvae_fast.analysis.cli`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__
from ..errors import storage
from ..model import JointVAE
from .class_members import MEMBERS, member_positions
from .encoding import Encoded, classes, cont_information, encode_split, kl_per_latent, recon_nll
from .figures.editing import Edit, check_edit
from .metrics.accuracy import hungarian_accuracy, majority_accuracy
from .metrics.circular import azimuth_units
from .metrics.information import (USAGE_THRESHOLD, WARN_INFO_SHARE, WARN_KL, code_information,
                                  confident_but_uninformative, factor_bins, factor_contingency, factor_information)
from .metrics.mig import mig
from .report_figures import MAX_UNIT_FIGURES, FigureContext, write_figures
from .report_html import write_html
from .sources import EvaluationError, Source
from .split import EvalSplit
from .total_correlation import split_total_correlation

INACTIVE_KL = 0.02  # nats: latents below this carry (almost) no information
MIG_BINS = 20
MIG_MAX_FACTOR_VALUES = 64  # factors with more distinct values are binned into MIG_BINS

METRIC_FIELDS = {
    "source": "path evaluated",
    "source_kind": "run, checkpoint, paper or pretrained",
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
    "info_cont": "per continuous unit: KL_d - A_d, A_d the KL of the split's aggregate posterior matched in mean and "
                 "variance; an upper bound on I(x; z_d) [D] (nats)",
    "agg_kl_cont": "per continuous unit: A_d = KL(N(m_d, s_d^2) || N(0, 1)) [D] (nats)",
    "info_cont_sum": "sum of info_cont",
    "kl_disc_sum": "KL_c",
    "total_correlation": ("Chen et al.'s decomposition of the split's KL, one posterior draw per image, estimated "
                          "by MSS on batches of the split in a seeded order with N = the split size: for all latents "
                          "(joint) and the continuous units alone (continuous): tc (total correlation), "
                          "index_code_mi, dim_kl (dimension-wise KL), kl (their sum) (nats); estimator, batch, "
                          "dataset_size, seed"),
    "inactive_threshold": "KL (nats) below which a latent counts as inactive",
    "active_units": "continuous units with KL above the threshold, highest KL first",
    "ranked_latents": "all latents (z<j>, c<i>), highest KL first",
    "recon_nll": "reconstruction NLL (nats per image, Bernoulli) with eval-mode latents",
    "recon_nll_images": "images recon_nll was measured on",
    "accuracy": "unsupervised accuracy of the discrete latent vs labels (Hungarian, majority)",
    "mig": "mutual information gap over continuous and discrete latents vs ground-truth factors",
    "factor_accuracy": "per discrete factor: accuracy of the best discrete variable",
    "azimuth": "among the active units: the best unit (circular-linear R) and pair (Fisher-Lee rho) for azimuth",
    "discrete_information": ("per discrete variable: I(x; c), KL(q(c) || uniform), its KL_c, class_usage, "
                             f"classes_in_use (usage >= {USAGE_THRESHOLD:g}), confident_but_uninformative "
                             f"(KL_c > {WARN_KL:g} nats and I < {WARN_INFO_SHARE:g} KL_c)"),
    "factor_information": "per discrete variable and factor: I(c; factor), H(factor), normalized = I / H, bins",
    "class_members": ("per discrete variable: per class, the test images (positions in the test split) whose most "
                      f"probable class it is, most confident first, at most {MEMBERS} (class_members_c<i>.png)"),
    "factor_contingency": ("per discrete variable and factor: bins (labels) and counts [class][bin] of test images by "
                           "argmax class and factor bin (the bins of factor_information)"),
    "warnings": "diagnostic warnings (also printed on stderr)",
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


def mig_block(enc: Encoded, cls: np.ndarray, model: JointVAE, factors: dict[str, np.ndarray]) -> dict[str, Any]:
    """metrics["mig"]: MIG of the posterior means and discrete classes against the factors."""
    try:
        r = mig(enc.mu.numpy() if model.cont else None, cls if model.disc else None, factors, bins=MIG_BINS,
                max_values=MIG_MAX_FACTOR_VALUES)
    except ValueError as e:  # e.g. a single latent: no gap
        return {"mig": None, "error": str(e)}
    return {"mig": r.mig, "gaps": r.gaps, "top_latent": r.top_latent, "bins": MIG_BINS,
            "max_factor_values": MIG_MAX_FACTOR_VALUES, "latent_names": r.latent_names,
            "factor_names": r.factor_names, "mutual_information": r.mutual_information.tolist(),
            "factor_entropy": r.factor_entropy.tolist()}


def azimuth_block(enc: Encoded, factors: dict[str, np.ndarray], active: list[int]):
    """(metrics["azimuth"], (factor, theta, unit, fit) for the figure or None); (None, None) without an azimuth.

    Only active units are candidates (an inactive unit does not reach the decoder, and its tiny fluctuations
    can correlate with anything); the pair is searched among the MAX_UNIT_FIGURES most active ones."""
    name = azimuth_factor(factors)
    if name is None or not enc.mu.shape[1]:
        return None, None
    theta = azimuth_radians(factors[name])
    r = azimuth_units(enc.mu.numpy().astype(np.float64), theta, active[:MAX_UNIT_FIGURES])
    fin = lambda v: v if v is not None and math.isfinite(v) else None  # noqa: E731
    block = {
        "factor": name, "candidates": [f"z{j}" for j in active[:MAX_UNIT_FIGURES]],
        "unit": None if r.unit is None else f"z{r.unit}", "circular_linear_r": fin(r.fit.r) if r.fit else None,
        "fit": {"offset": r.fit.offset, "amplitude": r.fit.amplitude, "phase": r.fit.phase} if r.fit else None,
        "per_unit_r": {f"z{j}": fin(v) for j, v in r.per_unit_r.items()},
        "pair": None if r.pair is None else [f"z{r.pair[0]}", f"z{r.pair[1]}"],
        "pair_circular_correlation": fin(r.pair_rho),
    }
    return block, ((name, theta, r.unit, r.fit) if r.unit is not None else None)


def _factor_blocks(probs: np.ndarray, classes: np.ndarray, binned: dict[str, tuple[np.ndarray, list[str]]]):
    """(factor_information, factor_contingency) of one variable: posteriors probs [M, K], argmax classes [M];
    binned: factor -> (codes [M], bin labels)."""
    info = factor_information(probs, {f: codes for f, (codes, _) in binned.items()})
    tables = {f: {"bins": labels, "counts": factor_contingency(classes, probs.shape[1], codes, len(labels)).tolist()}
              for f, (codes, labels) in binned.items()}
    return {f: {**v, "bins": len(binned[f][1])} for f, v in info.items()}, tables


def discrete_blocks(enc: Encoded, disc: Sequence[int], kl_disc: np.ndarray, factors: dict[str, np.ndarray],
                    value_names: dict[str, Sequence[str]] | None = None):
    """(metrics["discrete_information"], metrics["factor_information"] or None, metrics["factor_contingency"] or
    None, warnings) per variable c<i>; value_names: factor -> names of its values 0, 1, ..."""
    info, per_factor, tables, warnings = {}, {}, {}, []
    binned = {k: factor_bins(v, circular=k == azimuth_factor(factors), names=(value_names or {}).get(k))
              for k, v in factors.items()}
    for i, block in enumerate(torch.split(enc.logits, list(disc), dim=1)):
        ci = code_information(block.double().numpy())
        flag = confident_but_uninformative(float(kl_disc[i]), ci.information)
        info[f"c{i}"] = {"information": ci.information, "aggregate_kl": ci.aggregate_kl, "kl": float(kl_disc[i]),
                         "classes_in_use": ci.classes_in_use, "class_usage": ci.usage.tolist(),
                         "confident_but_uninformative": flag}
        if flag:
            warnings.append(f"c{i} is confident but uninformative: KL_c = {kl_disc[i]:.3f} nats but I(x; c) = "
                            f"{ci.information:.3f} nats (KL(q(c) || p(c)) = {ci.aggregate_kl:.3f})")
        if binned:
            probs = torch.softmax(block.double(), 1).numpy()
            per_factor[f"c{i}"], tables[f"c{i}"] = _factor_blocks(probs, ci.classes, binned)
    return info, per_factor or None, tables or None, warnings


def _check_request(model: JointVAE, data: EvalSplit, edits: Sequence[Edit]) -> None:
    if tuple(data.images.shape[1:]) != tuple(model.img_size):
        raise EvaluationError(
            f"the model takes images of size {tuple(model.img_size)} but dataset {data.name!r} has "
            f"{tuple(data.images.shape[1:])}"
        )
    for e in edits:
        check_edit(model, e)


def _ranking(model: JointVAE, kl_cont: np.ndarray, kl_disc: np.ndarray, inactive_kl: float):
    """(all latent names by KL, continuous units by KL, the active ones), highest KL first."""
    names = [f"z{j}" for j in range(model.cont)] + [f"c{i}" for i in range(len(model.disc))]
    ranked = [names[i] for i in np.argsort(-np.concatenate([kl_cont, kl_disc]), kind="stable")]
    unit_order = [int(j) for j in np.argsort(-kl_cont, kind="stable")]
    return ranked, unit_order, [j for j in unit_order if kl_cont[j] > inactive_kl]


@dataclass
class Measured:
    """The metrics of one model on one split and what the figures are drawn from."""

    metrics: dict[str, Any]
    enc: Encoded
    kl_cont: np.ndarray  # [D]
    kl_disc: np.ndarray  # [V]
    unit_order: list[int]
    active: list[int]
    azimuth: tuple | None  # (factor, theta, unit, fit) for azimuth_scatter.png


def measure(source: Source, data: EvalSplit, device="cpu", progress: bool = True,
            inactive_kl: float = INACTIVE_KL, seed: int = 0) -> Measured:
    """Every metric the data allows, no figures (eval_seconds and figures stay None); `seed` drives the posterior
    draws of the total correlation."""
    device = torch.device(device)
    model = source.model.to(device).eval()
    enc = encode_split(model, data.images, device, progress=progress)
    n = data.images.shape[0]
    kl_cont, kl_disc = kl_per_latent(enc, model.disc)
    info_cont, agg_cont = cont_information(enc, kl_cont)
    cls = classes(enc, model.disc)
    ranked, unit_order, active = _ranking(model, kl_cont, kl_disc, inactive_kl)
    nll, nll_n = recon_nll(model, data.images, enc, device)
    metrics: dict[str, Any] = {k: None for k in METRIC_FIELDS}
    metrics.update(
        source=str(source.path), source_kind=source.kind, dataset=data.name, step=source.step,
        image_size=list(model.img_size), cont=model.cont, disc=list(model.disc), n_test=n,
        encode_seconds=enc.seconds, images_per_second=n / max(enc.seconds, 1e-9),
        kl_cont=kl_cont.tolist(), kl_disc=kl_disc.tolist(), kl_cont_sum=float(kl_cont.sum()),
        kl_disc_sum=float(kl_disc.sum()), info_cont=info_cont.tolist(), agg_kl_cont=agg_cont.tolist(),
        info_cont_sum=float(info_cont.sum()), total_correlation=split_total_correlation(enc, model.disc, seed),
        inactive_threshold=inactive_kl, active_units=active,
        ranked_latents=ranked, recon_nll=nll, recon_nll_images=nll_n, warnings=[],
        versions={"jointvae_fast": __version__, "torch": torch.__version__},
    )
    if model.disc:
        (metrics["discrete_information"], metrics["factor_information"], metrics["factor_contingency"],
         metrics["warnings"]) = discrete_blocks(enc, model.disc, kl_disc, data.factors, data.value_names)
        metrics["class_members"] = member_positions(enc.logits, model.disc)
    if confident_but_uninformative(float(kl_cont.sum()), float(info_cont.sum())):
        metrics["warnings"].append(f"the continuous units are confident but uninformative: KL_z = {kl_cont.sum():.3f} "
                                   f"nats but at most {info_cont.sum():.3f} of it is I(x; z)")
    if data.labels is not None:
        metrics["accuracy"] = _accuracy_block(cls, data.labels)
    azimuth = None
    if data.factors:
        metrics["mig"] = mig_block(enc, cls, model, data.factors)
        fa = {k: _accuracy_block(cls, v) for k, v in data.factors.items() if _is_discrete_factor(v)}
        metrics["factor_accuracy"] = {k: v for k, v in fa.items() if v is not None} or None
        metrics["azimuth"], azimuth = azimuth_block(enc, data.factors, active)
    return Measured(metrics, enc, kl_cont, kl_disc, unit_order, active, azimuth)


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
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out} exists and is not a directory")
    _check_request(source.model, data, edits)
    with storage(out, "create"):
        out.mkdir(parents=True, exist_ok=True)
    r = measure(source, data, device, progress, inactive_kl, seed)
    metrics = r.metrics
    ctx = FigureContext(source.model, data, r.enc, out, r.kl_cont, r.kl_disc, r.unit_order, r.active, inactive_kl,
                        seed, source.log_path)
    figures, shown = write_figures(ctx, edits, r.azimuth, metrics["discrete_information"], metrics["class_members"])
    if shown:
        metrics["edits"] = [str(e) for e in shown]
    metrics["figures"] = figures
    metrics["eval_seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2) + "\n")
    write_html(out, metrics, figures)
    return metrics


def jsonable(v):
    """v with numpy scalars as Python numbers and non-finite floats as None (JSON has no NaN)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v
