"""KL per latent (each continuous unit z_j, each discrete variable c_i) from the best source at hand, for ranking
the units: the explorer's order of sliders and the `kl_ranking` of export's model.json. First that applies:

1. the test split (first `limit` images), encoded now: analysis.encoding.kl_per_latent, the training objective's formula;
2. a recorded evaluation of these weights: metrics.json of a pretrained model, or RUN_DIR/eval of the same step;
3. the run's last training-log line (batch means over the steps before it, on training images);
4. the checkpoint's metadata, when it records kl_cont / kl_disc;
5. prior samples decoded and encoded again (z ~ N(0, I), classes uniform; pixel probabilities as the image).
Each result says in words where it came from (`KL.source`), which the explorer's page and model.json show.
`test_images` loads the test split for 1. (or says why there is none); the explorer also picks images from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import numpy as np
import torch

from ..grids.traversal import prior_latents
from .encoding import Encoded, encode_split, kl_per_latent
from .sources import EvaluationError, Source
from .split import eval_split, load_named_dataset

KL_IMAGES = 1000  # test images the KL is measured on (source 1)
PRIOR_SAMPLES = 512


@dataclass
class KL:
    cont: np.ndarray  # [D] nats
    disc: np.ndarray  # [V] nats
    source: str  # one line: where the numbers came from (the explorer's page, model.json)


def from_images(model, images, name: str | None, limit: int) -> KL:
    """KL on the first `limit` images of a test split (uint8 [M, C, H, W] or analysis.split.GatheredImages)."""
    n = min(limit, images.shape[0])
    enc = encode_split(model, images[:n], next(model.parameters()).device, progress=False)
    cont, disc = kl_per_latent(enc, model.disc)
    of = f"the first {n} of {images.shape[0]}" if n < images.shape[0] else f"all {n}"
    return KL(cont, disc, f"test split of {name}: {of} test images, encoded at start-up")


def _matches(model, cont, disc) -> bool:
    return (isinstance(cont, list) and isinstance(disc, list) and len(cont) == model.cont
            and len(disc) == len(model.disc) and all(isinstance(v, (int, float)) for v in cont + disc))


def from_metrics(model, path: Path, step) -> KL | None:
    """KL recorded by `evaluate` in metrics.json, if it evaluated this step and this latent layout."""
    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(m, dict) or m.get("step") != step or not _matches(model, m.get("kl_cont"), m.get("kl_disc")):
        return None
    return KL(np.asarray(m["kl_cont"], float), np.asarray(m["kl_disc"], float),
              f"test split of {m.get('dataset')}: recorded by evaluate ({m.get('n_test')} images, {path.name})")


def from_log(model, log_path: Path | None) -> KL | None:
    """KL of the last parseable log.jsonl line that carries kl_cont and kl_disc for this latent layout."""
    if log_path is None or not Path(log_path).is_file():
        return None
    for line in reversed(Path(log_path).read_text().splitlines()):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and _matches(model, r.get("kl_cont"), r.get("kl_disc")):
            return KL(np.asarray(r["kl_cont"], float), np.asarray(r["kl_disc"], float),
                      f"training log, line of step {r.get('step')} (training batches, not the test split)")
    return None


def from_meta(model, meta: dict) -> KL | None:
    """KL recorded in the checkpoint's metadata (kl_cont, kl_disc), if any."""
    if not _matches(model, meta.get("kl_cont"), meta.get("kl_disc")):
        return None
    return KL(np.asarray(meta["kl_cont"], float), np.asarray(meta["kl_disc"], float), "checkpoint metadata")


@torch.no_grad()
def from_prior(model, samples: int = PRIOR_SAMPLES, seed: int = 0) -> KL:
    """KL of the posteriors of `samples` decoded prior draws (no data needed)."""
    lat = prior_latents(model, samples, torch.Generator().manual_seed(seed))
    mu, logvar, logits = model.encode(torch.sigmoid(model.decode(lat)))
    cont, disc = kl_per_latent(Encoded(mu.float().cpu(), logvar.float().cpu(), logits.float().cpu(), 0.0), model.disc)
    return KL(cont, disc, f"{samples} prior samples decoded and encoded again (no test split or recorded KL at hand)")


@dataclass
class TestImages:
    images: Any  # uint8 [M, C, H, W] (tensor or analysis.split.GatheredImages), or None
    dataset: str | None
    note: str  # why they are unavailable, or what they are
    stand_in: bool = False  # images of another dataset than the model's (not used for KL)


def test_images(source: Source, model, name: str | None, data_dir, dataset=None) -> TestImages:
    """The test split of dataset `name` (else the source's), or why there is none. `dataset`: an already loaded
    dataset object."""
    name = name or source.dataset
    if dataset is None:
        if name is None:
            return TestImages(None, None, "the source does not record its dataset (give --dataset NAME)")
        try:
            dataset = load_named_dataset(name, data_dir or source.data_dir, source.data_options)
        except (ValueError, OSError) as e:  # not found, corrupt, unknown name: the caller shows why
            return TestImages(None, name, f"dataset {name} could not be loaded: {e}")
    try:
        split = eval_split(dataset, name)
    except EvaluationError as e:
        return TestImages(None, name, str(e))
    if tuple(split.images.shape[1:]) != tuple(model.img_size):
        return TestImages(None, name, f"dataset {name} has images of size {tuple(split.images.shape[1:])}, "
                                      f"the model takes {tuple(model.img_size)}")
    loaded = getattr(dataset, "name", None) or name
    if name is not None and loaded != name:
        return TestImages(split.images, loaded, f"{loaded} test images stand in for {name}, which was not found",
                          stand_in=True)
    return TestImages(split.images, loaded, f"test split of {loaded}")


def kl_for(source: Source, model, test: TestImages, limit: int = KL_IMAGES) -> KL:
    """KL per latent from the first source that applies (the module docstring's order)."""
    if test.images is not None and not test.stand_in:
        return from_images(model, test.images, test.dataset, limit)
    recorded = {"pretrained": source.path / "metrics.json", "run": Path(source.path) / "eval" / "metrics.json"}
    found = from_metrics(model, recorded[source.kind], source.step) if source.kind in recorded else None
    return found or from_log(model, source.log_path) or from_meta(model, source.meta) or from_prior(model)
