"""python -m jointvae_fast.evaluate SOURCE [--dataset NAME] [--data-dir DIR] [--out DIR]
                                 [--edit UNIT=VALUE ...] [--device DEV] [--limit N]

Turns a trained model into the paper's analyses. SOURCE is one of
  - a run directory of jointvae_fast.train (its newest readable checkpoint, its log.jsonl, config.json),
  - a jointvae_fast checkpoint file (the log is taken from its run directory when it sits in one),
  - a folder (or model.pt) of the paper's reference implementation (model.pt + specs.json),
  - pretrained:NAME, a model shipped in jointvae_fast.pretrained (report: ./pretrained-NAME_eval).
The test split of the dataset (default: the one the model was trained on) is
encoded once (batches of 1000, inference mode, with a progress bar); the
report folder (--out; default RUN_DIR/eval for a run directory, else
<source name>_eval beside the source) receives
metrics.json, PNG figures and index.html showing each figure with one line of
explanation.

Figures (those that apply):
  kl_units.png            per-latent KL on the test split, ranked; inactive latents grey
  ranked_traversals.png   Fig. 8: latents ranked by KL, each next to its traversal
  kl_training.png         Fig. 7: KL per unit / discrete variable over training with C_z, C_c (needs the run's log)
  traversal_z<j>.png      Fig. 3: active continuous unit j over the prior's 5%..95% quantiles, one row per test image
  traversal_c<i>.png      Fig. 3: discrete variable i over its classes, one row per test image
  samples_by_class.png    Fig. 4: prior samples with the discrete variable fixed to each class (rows)
  class_unit_grid.png     Fig. 5: class (rows) x the most informative continuous unit (columns)
  reconstructions.png     test images (odd rows) above their reconstructions (even rows)
  editing.png             Fig. 9b: original, reconstruction, then each --edit (default: top unit at -2..2)
  azimuth_scatter.png     Fig. 9a: the unit that best predicts azimuth against the true azimuth (factor datasets)

metrics.json fields (null where the data does not allow them): see `METRIC_FIELDS`.
Definitions: KL per unit/variable as in the training objective (batch mean over
the test split); a latent is inactive when its KL < --inactive-kl nats
(default INACTIVE_KL = 0.02).
Accuracy: jointvae_fast.accuracy (Hungarian one-to-one and majority vote).
MIG: jointvae_fast.mig (posterior means binned into 20 equal-width bins,
discrete latents as argmax classes, factors as is up to 64 distinct values,
else binned). Azimuth: a factor whose name contains "azimuth", in degrees if
any value exceeds 2*pi, else radians;
jointvae_fast.circular (Mardia's circular-linear R per unit; the best active
unit is reported, any unit when none is active; Fisher-Lee rho_T for the best
pair of active units read as an angle). Integer-valued factors
count as discrete and get the accuracy of the best discrete variable.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from . import checkpoint as ckpt
from .accuracy import hungarian_accuracy, majority_accuracy
from .circular import best_unit_pair, circular_linear_fit
from .editing import Edit, check_edit, edit_strip, parse_edit
from .images import save_image_grid
from .mig import mig
from .model import JointVAE
from .traversal import (
    class_conditioned_samples,
    class_unit_grid,
    continuous_traversal,
    discrete_traversal,
    mode_latent,
)
from . import viz

INACTIVE_KL = 0.02  # nats: latents below this carry (almost) no information
BATCH = 1000
MAX_UNIT_FIGURES = 10  # traversal_z<j>.png for at most this many active units
FIGURE_ROWS = 8  # test images used as fixed latents / edited / reconstructed (x2 for reconstructions)
RECON_IMAGES = 1000  # recon_nll is measured on the first this-many test images
MIG_BINS = 20
MIG_MAX_FACTOR_VALUES = 64  # factors with more distinct values are binned into MIG_BINS

METRIC_FIELDS = {
    "source": "path evaluated",
    "source_kind": "run, checkpoint, reference or pretrained",
    "dataset": "dataset name",
    "step": "optimizer steps of the checkpoint (null for reference checkpoints)",
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


class EvaluationError(ValueError):
    """A source, dataset or option that cannot be evaluated."""


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    model: JointVAE
    kind: str  # "run", "checkpoint" or "reference"
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    dataset: str | None = None
    data_dir: str | None = None
    step: int | None = None


def _from_checkpoint(path: Path, kind: str, run_dir: Path | None) -> Source:
    c = ckpt.load_checkpoint(path)
    meta = c.meta
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    log = run_dir / "log.jsonl" if run_dir is not None and (run_dir / "log.jsonl").is_file() else None
    step = meta.get("step")
    return Source(c.model, kind, path, meta, log, meta.get("dataset") or config.get("dataset"),
                  config.get("data_dir"), int(step) if isinstance(step, int) else None)


def load_source(path) -> Source:
    """The model (eval mode, CPU) and what is known about it, from a run dir, checkpoint file, reference folder
    or `pretrained:NAME` (jointvae_fast.pretrained). Every CLI that takes a model resolves it here."""
    from . import pretrained

    name = pretrained.source_name(str(path))
    if name is not None:
        return _from_pretrained(name)
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path} does not exist (give a run directory, a checkpoint file or a reference folder)")
    if path.is_dir():
        ckpt_dir = path / "checkpoints"
        if ckpt_dir.is_dir() or (path / "config.json").is_file():
            found = sorted(ckpt_dir.glob("step-*.pt")) if ckpt_dir.is_dir() else []
            problems = []
            for p in reversed(found):  # newest readable
                try:
                    src = _from_checkpoint(p, "run", path)
                except (ckpt.CheckpointError, OSError) as e:
                    problems.append(str(e))
                    continue
                if src.dataset is None and (path / "config.json").is_file():
                    cfg = json.loads((path / "config.json").read_text())
                    src.dataset, src.data_dir = cfg.get("dataset"), cfg.get("data_dir")
                src.path = path
                src.meta["checkpoint"] = str(p)
                return src
            raise EvaluationError(f"run directory {path} has no readable checkpoint in {ckpt_dir}: {problems or 'none found'}")
        if (path / "model.pt").is_file():
            return _from_reference(path)
        raise EvaluationError(f"{path} is neither a run directory (checkpoints/, config.json) nor a reference folder (model.pt)")
    try:
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        return _from_checkpoint(path, "checkpoint", run_dir)
    except ckpt.CheckpointError as e:
        if "not a jointvae_fast checkpoint" not in str(e):
            raise EvaluationError(str(e)) from e
    return _from_reference(path)


def _from_pretrained(name: str) -> Source:
    from .pretrained import PretrainedError, load

    try:
        model, meta = load(name)
    except PretrainedError as e:
        raise EvaluationError(str(e)) from None
    c = meta["checkpoint"]
    step = c.get("step")
    return Source(model, "pretrained", Path(meta["folder"]), c, None, c.get("dataset"), None,
                  int(step) if isinstance(step, int) else None)


def _from_reference(path: Path) -> Source:
    from .official import ReferenceCheckpointError, read_reference

    try:
        model, specs = read_reference(path)
    except ReferenceCheckpointError as e:
        raise EvaluationError(str(e)) from e
    return Source(model, "reference", path, {"specs": specs}, None, specs.get("dataset"), None, None)


# ---------------------------------------------------------------- data


class GatheredImages:
    """A lazily materialised split (an object with __len__ and gather(indices) -> uint8 [B, C, H, W]) seen as
    a uint8 tensor: len, .shape and slicing [i:j] (contiguous ranges only), limited to the first `n` images."""

    def __init__(self, source, n: int | None = None):
        self.source = source
        self.n = len(source) if n is None else min(n, len(source))
        first = self._gather(0, 1)
        self.shape = (self.n, *first.shape[1:])
        self.dtype = first.dtype

    def _gather(self, i: int, j: int) -> torch.Tensor:
        return torch.as_tensor(self.source.gather(torch.arange(i, j))).cpu()

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx) -> torch.Tensor:
        if not isinstance(idx, slice) or idx.step not in (None, 1):
            raise TypeError("GatheredImages supports contiguous slices only")
        i, j, _ = idx.indices(self.n)
        return self._gather(i, max(i, j))


@dataclass
class EvalSplit:
    images: torch.Tensor | GatheredImages  # uint8 [M, C, H, W]
    labels: np.ndarray | None
    factors: dict[str, np.ndarray]
    name: str | None


def _as_array(name: str, v, n: int) -> np.ndarray:
    a = v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    if a.ndim != 1 or a.shape[0] != n:
        raise EvaluationError(f"{name} must be a 1-D array with one value per test image ({n}), got shape {a.shape}")
    return a


def eval_split(dataset, name: str | None = None, limit: int | None = None) -> EvalSplit:
    """The test split of a dataset object: attributes test (uint8 [M, C, H, W], or an object with __len__ and
    gather(indices)), optional test_labels [M], test_factors {name: [M]}, factor_names; the first `limit` images."""
    images = getattr(dataset, "test", None)
    if images is None:
        raise EvaluationError(f"dataset {name or type(dataset).__name__} has no test split (attribute `test`)")
    if hasattr(images, "gather") and hasattr(images, "__len__") and not isinstance(images, (torch.Tensor, np.ndarray)):
        images = GatheredImages(images, limit)
    else:
        images = torch.as_tensor(images)
        if limit is not None:
            images = images[:limit]
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise EvaluationError(f"the test images must be uint8 [M, C, H, W], got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if n < 2:
        raise EvaluationError(f"the test split has {n} image(s); need at least 2")
    labels = getattr(dataset, "test_labels", None)
    cut = (lambda v: v[:n]) if limit is not None else (lambda v: v)  # without --limit, lengths must match
    labels = _as_array("test_labels", cut(labels), n) if labels is not None else None
    factors = {}
    raw = getattr(dataset, "test_factors", None) or {}
    order = list(getattr(dataset, "factor_names", None) or raw.keys())
    for k in order:
        if k in raw:
            factors[k] = _as_array(f"test_factors[{k!r}]", cut(raw[k]), n)
    return EvalSplit(images, labels, factors, name or getattr(dataset, "name", None))


def load_named_dataset(name: str, data_dir: str | None):
    """jointvae_fast.data.load_dataset(name, data_dir) (imported here: evaluation needs it only by name)."""
    try:
        from .data import load_dataset
    except ImportError as e:
        raise EvaluationError(f"cannot load dataset {name!r}: jointvae_fast.data is not available ({e})") from e
    return load_dataset(name, data_dir=data_dir)


# ---------------------------------------------------------------- encoding and metrics


@dataclass
class Encoded:
    mu: torch.Tensor  # [M, D]
    logvar: torch.Tensor  # [M, D]
    logits: torch.Tensor  # [M, sum K]
    seconds: float


def encode_split(model: JointVAE, images: torch.Tensor, device, batch_size: int = BATCH, progress: bool = True) -> Encoded:
    """Posterior parameters of every image (uint8 [M, C, H, W]) in batches; CPU float32 results."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    mus, logvars, logits = [], [], []
    with torch.inference_mode(), tqdm(total=images.shape[0], unit="img", desc="encoding test split",
                                      disable=not progress, file=sys.stderr) as bar:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device).float().div_(255.0)
            mu, lv, lg = model.encode(x)
            mus.append(mu.float().cpu())
            logvars.append(lv.float().cpu())
            logits.append(lg.float().cpu())
            bar.update(x.shape[0])
    return Encoded(torch.cat(mus), torch.cat(logvars), torch.cat(logits), time.perf_counter() - t0)


def kl_per_latent(enc: Encoded, disc: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(kl_cont [D], kl_disc [V]) in nats, float64 means over the split (the training objective's formulas)."""
    mu, lv = enc.mu.double(), enc.logvar.double()
    kl_cont = (-0.5 * (1 + lv - mu**2 - lv.exp())).mean(0).numpy()
    kl_disc = []
    for block in torch.split(enc.logits.double(), list(disc), dim=1):
        logp = F.log_softmax(block, dim=1)
        kl_disc.append(float((math.log(block.shape[1]) + (logp.exp() * logp).sum(1)).mean()))
    return kl_cont, np.array(kl_disc)


def classes(enc: Encoded, disc: Sequence[int]) -> np.ndarray:
    """argmax class of each discrete variable, int64 [M, V]."""
    if not disc:
        return np.zeros((enc.logits.shape[0], 0), dtype=np.int64)
    return np.stack([b.argmax(1).numpy() for b in torch.split(enc.logits, list(disc), dim=1)], axis=1)


@torch.inference_mode()
def recon_nll(model: JointVAE, images: torch.Tensor, enc: Encoded, device, n: int = RECON_IMAGES) -> tuple[float, int]:
    """Mean per-image Bernoulli NLL (nats) of the eval-mode reconstructions of the first n images."""
    n = min(n, images.shape[0])
    total = 0.0
    for i in range(0, n, BATCH):
        j = min(i + BATCH, n)
        x = images[i:j].to(device).float().div_(255.0)
        lat = mode_latent(enc.mu[i:j], enc.logits[i:j], model.disc).to(device)
        total += float(F.binary_cross_entropy_with_logits(model.decode(lat), x, reduction="sum"))
    return total / n, n


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


# ---------------------------------------------------------------- report


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
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
    _write_html(out, metrics, figures)
    return metrics


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
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

    viz.kl_bar_figure(kl_cont, kl_disc, inactive_kl, out / "kl_units.png")
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
        viz.ranked_traversal_figure(names, kls, strips, inactive_kl, out / "ranked_traversals.png")
        figs["ranked_traversals.png"] = ("Latents ranked by KL (left), each traversed on the first test image (right): "
                                         "informative latents change the image, inactive ones do not (paper Fig. 8).")

    if source.log_path is not None:
        records = viz.read_training_log(source.log_path)
        if records:
            viz.kl_training_figure(records, out / "kl_training.png")
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
        viz.azimuth_scatter_figure(np.rad2deg(theta), enc.mu[:, unit].numpy(), f"z{unit}", r, out / "azimuth_scatter.png", fit=fit)
        figs["azimuth_scatter.png"] = (f"Posterior mean of z{unit}, the unit that best predicts {name}, against the true "
                                       f"azimuth, with the fitted sinusoid; Mardia circular-linear R = {r:.3f} (paper Fig. 9a).")
    return figs


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jointvae_fast.evaluate",
        description="Evaluate a trained Joint-VAE: metrics.json, the paper's figures and index.html.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("source", help="run directory, checkpoint file, reference implementation folder (model.pt + "
                   "specs.json), or pretrained:NAME (a model shipped in jointvae_fast.pretrained)")
    p.add_argument("--dataset", help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--out", help="report folder (default: RUN_DIR/eval, or <source name>_eval beside a file/folder)")
    p.add_argument("--edit", action="append", default=[], metavar="UNIT=VALUE", nargs="+",
                   help="edit for editing.png: z3=1.5 (or 3=1.5) sets unit 3; c0=2 sets discrete variable 0 to class 2")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images")
    p.add_argument("--inactive-kl", type=float, default=INACTIVE_KL, metavar="NATS",
                   help=f"latents with a test KL below this are inactive (default {INACTIVE_KL})")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior samples in samples_by_class.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """CLI entry; `dataset` (an object as jointvae_fast.data.load_dataset returns) skips loading by name."""
    args = build_parser().parse_args(argv)
    try:
        if not (math.isfinite(args.inactive_kl) and args.inactive_kl >= 0):
            raise EvaluationError(f"--inactive-kl must be a finite number >= 0, got {args.inactive_kl}")
        if args.limit is not None and args.limit < 2:
            raise EvaluationError(f"--limit must be >= 2, got {args.limit}")
        edits = [parse_edit(e) for group in args.edit for e in group]
        try:
            device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError as e:
            raise EvaluationError(f"--device {args.device!r} is not a torch device: {e}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise EvaluationError(f"--device {args.device!r}: no CUDA GPU is visible")
        source = load_source(args.source)
        name = args.dataset or source.dataset
        if dataset is None:
            if name is None:
                raise EvaluationError(f"{args.source} does not record its dataset: give --dataset NAME")
            dataset = load_named_dataset(name, args.data_dir or source.data_dir)
        data = eval_split(dataset, name, args.limit)
        src = Path(args.source)
        if args.out:
            out = Path(args.out)
        elif source.kind == "run":
            out = src / "eval"
        elif source.kind == "pretrained":
            out = Path(f"pretrained-{source.path.name}_eval")
        else:
            out = src.parent / f"{src.stem if src.is_file() else src.name}_eval"
        metrics = evaluate(source, data, out, edits, device, progress=not args.no_progress, seed=args.seed,
                           inactive_kl=args.inactive_kl)
    except (EvaluationError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"evaluated {metrics['n_test']} test images in {metrics['encode_seconds']:.2f} s "
          f"({metrics['images_per_second']:.0f} img/s); report: {out / 'index.html'}")
    summary = {k: metrics[k] for k in ("kl_cont_sum", "kl_disc_sum", "recon_nll")}
    if metrics["accuracy"]:
        summary["accuracy_hungarian"] = metrics["accuracy"]["hungarian"]
        summary["accuracy_majority"] = metrics["accuracy"]["majority"]
    if metrics["mig"] and metrics["mig"].get("mig") is not None:
        summary["mig"] = metrics["mig"]["mig"]
    if metrics["azimuth"]:
        summary["azimuth_r"] = metrics["azimuth"]["circular_linear_r"]
    print(json.dumps(_jsonable(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
