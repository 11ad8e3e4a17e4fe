"""Encode the test split once (posterior parameters) and the per-latent quantities read off it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..model import JointVAE
from .. import ops
from ..progress import Progress
from ..grids.traversal import mode_latent

BATCH = 1000
RECON_IMAGES = 1000  # recon_nll is measured on the first this-many test images


@dataclass
class Encoded:
    mu: torch.Tensor  # [M, D]
    logvar: torch.Tensor  # [M, D]
    logits: torch.Tensor  # [M, sum K]
    seconds: float


def encode_split(model: JointVAE, images: torch.Tensor, device, batch_size: int = BATCH, progress: bool = True) -> Encoded:
    """Posterior parameters of every image (uint8 [M, C, H, W]) in batches; CPU float32 results."""
    t0 = time.perf_counter()
    mus, logvars, logits = [], [], []
    with torch.inference_mode(), Progress(images.shape[0], "encoding test split", enable=None if progress else False) as bar:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device).float().div_(255.0)
            mu, lv, lg = model.encode(x)
            mus.append(mu.float().cpu())
            logvars.append(lv.float().cpu())
            logits.append(lg.float().cpu())
            bar.update(x.shape[0])
    return Encoded(torch.cat(mus), torch.cat(logvars), torch.cat(logits), time.perf_counter() - t0)


def kl_per_latent(enc: Encoded, disc: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(kl_cont [D], kl_disc [V]) in nats: the training objective's per-unit KLs (ops.kl_capacity_loss), in
    float64, as means over the whole split."""
    with torch.no_grad():
        _, kl_cont, kl_disc = ops.kl_capacity_loss(enc.mu.double(), enc.logvar.double(), enc.logits.double(),
                                                   list(disc), 0.0, 0.0, 0.0, 0.0)
    return kl_cont.numpy(), kl_disc.numpy()


def cont_information(enc: Encoded, kl_cont: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(info_cont [D], agg_kl_cont [D]) in nats over the whole split, from kl_cont [D] (`kl_per_latent`):
    A_d = KL(N(m_d, s_d^2) || N(0, 1)) of the moment-matched aggregate posterior (ops.gaussian_aggregate_kl)
    and I_d = KL_d - A_d, an upper bound on I(x; z_d) (reference/information.py), in float64."""
    with torch.no_grad():
        agg = ops.gaussian_aggregate_kl(enc.mu.double(), enc.logvar.double()).numpy()
    return kl_cont - agg, agg


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
