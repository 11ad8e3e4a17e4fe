"""KL per latent for the explorer's ordering, from the best source at hand (first that applies):

1. the test split (first `limit` images), encoded now: analysis.encoding.kl_per_latent, the training objective's formula;
2. a recorded evaluation of these weights: metrics.json of a pretrained model, or RUN_DIR/eval of the same step;
3. the run's last training-log line (batch means over the steps before it, on training images);
4. the checkpoint's metadata, when it records kl_cont / kl_disc;
5. prior samples decoded and encoded again (z ~ N(0, I), classes uniform; pixel probabilities as the image).
Each result says in words where it came from (`KL.source`), which the page shows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..analysis.encoding import Encoded, encode_split, kl_per_latent
from ..grids.traversal import prior_latents

PRIOR_SAMPLES = 512


@dataclass
class KL:
    cont: np.ndarray  # [D] nats
    disc: np.ndarray  # [V] nats
    source: str  # one line for the page


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
