"""The baseline to beat: a training step written the way the paper's published code does it.

Same network as jointvae_fast.model.JointVAE (Appendix B), but built and trained in the style of
github.com/Schlumberger/joint-vae (written here from its description, nothing copied):

- its own nn.Module with three separate heads: fc_mean, fc_log_var and one fc_alphas[i] per
  discrete variable, followed by a softmax (the encoder hands out probabilities "alphas");
- a decoder ending in a Sigmoid, the reconstruction scored with F.binary_cross_entropy on
  [B*C, H*W] rows (mean) times H*W;
- Gaussian noise eps [B, D] and uniforms u [B, K_i] drawn with the CPU generator and copied to
  the training device every step;
- Gumbel-Softmax from separate ops with EPS = 1e-12:
  y = softmax((log(alpha + EPS) - log(-log(u + EPS) + EPS)) / tau);
- KL terms from separate ops: kl_cont = sum_d mean_b -0.5 (1 + logvar - mu^2 - exp(logvar)),
  kl_disc_i = log K_i + mean_b sum_k alpha log(alpha + EPS);
- loss = (recon + gamma_z |C_z - kl_cont| + gamma_c |C_c - kl_disc|) / (H*W), the capacities
  computed from a step counter incremented before each step (so the first step uses C(1));
- torch.optim.Adam with defaults besides lr, and `loss.item()` (a host sync) every step;
- images as the paper's training step gets them at its best: float batches in [0, 1] sliced from
  one in-memory tensor in a shuffled order (`in_memory_batches`), copied to the device in the step;
  or, as a second, slower variant, from a torch DataLoader over per-sample tensors (a Dataset whose
  __getitem__ returns one float image in [0, 1] and a label, collated by the default collate:
  `baseline_loader`);
- the process's default allocator (no mallopt: the benchmark runs it in a fresh process).

Its parameter names are those of the paper's published code, so `jointvae_fast.paper_checkpoints.model_from_state_dict`
maps a baseline's weights onto our JointVAE (tests/benchmarks/test_paper_baseline.py relies on that).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-12
HIDDEN = 256
FEATURES = (64, 4, 4)


class PaperStyleVAE(nn.Module):
    """PaperStyleVAE(img_size=(C, H, W), cont=D, disc=[K_1, ...], temperature=tau); H == W in {32, 64}."""

    def __init__(self, img_size, cont: int, disc: Sequence[int] = (), temperature: float = 0.67):
        super().__init__()
        c, h, w = (int(v) for v in img_size)
        if h != w or h not in (32, 64):
            raise ValueError(f"img_size must be (C, 32, 32) or (C, 64, 64), got {tuple(img_size)!r}")
        if cont < 0 or (cont == 0 and not disc):
            raise ValueError(f"need cont > 0 or a discrete variable, got cont={cont!r}, disc={list(disc)!r}")
        self.img_size = (c, h, w)
        self.cont, self.disc = int(cont), [int(k) for k in disc]
        self.temperature = float(temperature)
        self.num_pixels = h * w
        self.latent_dim = self.cont + sum(self.disc)

        enc = [c, 32, 32, 64, 64] if h == 64 else [c, 32, 64, 64]
        layers: list[nn.Module] = []
        for cin, cout in zip(enc[:-1], enc[1:]):
            layers += [nn.Conv2d(cin, cout, (4, 4), stride=2, padding=1), nn.ReLU()]
        self.img_to_features = nn.Sequential(*layers)
        n_features = FEATURES[0] * FEATURES[1] * FEATURES[2]
        self.features_to_hidden = nn.Sequential(nn.Linear(n_features, HIDDEN), nn.ReLU())
        if self.cont:
            self.fc_mean = nn.Linear(HIDDEN, self.cont)
            self.fc_log_var = nn.Linear(HIDDEN, self.cont)
        if self.disc:
            self.fc_alphas = nn.ModuleList([nn.Linear(HIDDEN, k) for k in self.disc])
        self.latent_to_features = nn.Sequential(
            nn.Linear(self.latent_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_features), nn.ReLU()
        )
        dec = [64, 64, 32, 32, c] if h == 64 else [64, 32, 32, c]
        layers = []
        for i, (cin, cout) in enumerate(zip(dec[:-1], dec[1:])):
            layers.append(nn.ConvTranspose2d(cin, cout, (4, 4), stride=2, padding=1))
            layers.append(nn.ReLU() if i < len(dec) - 2 else nn.Sigmoid())
        self.features_to_img = nn.Sequential(*layers)

    def encode(self, x):
        """x [B, C, H, W] -> (mean [B, D] | None, logvar [B, D] | None, [alpha_i [B, K_i]] softmax probabilities)."""
        hidden = self.features_to_hidden(self.img_to_features(x).view(x.size(0), -1))
        mean = self.fc_mean(hidden) if self.cont else None
        logvar = self.fc_log_var(hidden) if self.cont else None
        alphas = [F.softmax(fc(hidden), dim=1) for fc in self.fc_alphas] if self.disc else []
        return mean, logvar, alphas

    def sample_normal(self, mean, logvar, eps=None):
        """mean + exp(logvar/2) * eps; eps drawn on the CPU and copied to mean's device unless given."""
        if not self.training:
            return mean
        std = torch.exp(0.5 * logvar)
        if eps is None:
            eps = torch.zeros(std.size()).normal_()
        return mean + std * eps.to(std.device)

    def sample_gumbel_softmax(self, alpha, u=None):
        """softmax((log(alpha + EPS) + g) / tau), g = -log(-log(u + EPS) + EPS); u drawn on the CPU unless given."""
        if not self.training:
            one_hot = torch.zeros(alpha.size(), device=alpha.device)
            return one_hot.scatter_(1, alpha.argmax(dim=1, keepdim=True), 1.0)
        if u is None:
            u = torch.rand(alpha.size())
        u = u.to(alpha.device)
        gumbel = -torch.log(-torch.log(u + EPS) + EPS)
        log_alpha = torch.log(alpha + EPS)
        return F.softmax((log_alpha + gumbel) / self.temperature, dim=1)

    def forward(self, x, noise=None):
        """x -> (probabilities [B, C, H, W], mean, logvar, alphas). noise=(eps [B, D], u [B, sum K]) fixes the noise."""
        mean, logvar, alphas = self.encode(x)
        eps, u = noise if noise is not None else (None, None)
        parts = [self.sample_normal(mean, logvar, eps)] if self.cont else []
        us = torch.split(u, self.disc, dim=1) if u is not None else [None] * len(alphas)
        parts += [self.sample_gumbel_softmax(a, ui) for a, ui in zip(alphas, us)]
        latent = torch.cat(parts, dim=1)
        recon = self.features_to_img(self.latent_to_features(latent).view(-1, *FEATURES))
        return recon, mean, logvar, alphas


class BaselineTrainer:
    """One paper-style training step per call: `trainer.step(x)` -> loss as a Python float (a host sync).

    cont_capacity / disc_capacity: (c_min, c_max, num_iters, gamma) tuples, or None for a model
    without that part of the latent.
    """

    def __init__(self, model: PaperStyleVAE, optimizer, cont_capacity=None, disc_capacity=None):
        self.model = model
        self.optimizer = optimizer
        self.cont_capacity = cont_capacity
        self.disc_capacity = disc_capacity
        self.num_steps = 0
        self.device = next(model.parameters()).device

    def loss(self, data, recon, mean, logvar, alphas) -> dict:
        """The loss at the current step counter: dict(total, recon, kl_cont, kl_disc, c_cont, c_disc)."""
        n = self.model.num_pixels
        recon_loss = F.binary_cross_entropy(recon.view(-1, n), data.view(-1, n)) * n
        total = recon_loss
        out = {"recon": recon_loss, "kl_cont": None, "kl_disc": None, "c_cont": 0.0, "c_disc": 0.0}
        if self.model.cont:
            kl_values = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())
            kl_cont = torch.sum(torch.mean(kl_values, dim=0))
            c_min, c_max, iters, gamma = self.cont_capacity
            c = min((c_max - c_min) * self.num_steps / float(iters) + c_min, c_max)
            total = total + gamma * torch.abs(c - kl_cont)
            out.update(kl_cont=kl_cont, c_cont=c)
        if self.model.disc:
            kls = []
            for alpha in alphas:
                log_dim = torch.tensor([math.log(alpha.size(-1))], device=alpha.device)
                neg_entropy = torch.sum(alpha * torch.log(alpha + EPS), dim=1)
                kls.append(log_dim + torch.mean(neg_entropy, dim=0))
            kl_disc = torch.sum(torch.cat(kls))
            c_min, c_max, iters, gamma = self.disc_capacity
            c = min((c_max - c_min) * self.num_steps / float(iters) + c_min, c_max)
            c = min(c, sum(float(math.log(k)) for k in self.model.disc))
            total = total + gamma * torch.abs(c - kl_disc)
            out.update(kl_disc=kl_disc, c_disc=c)
        out["total"] = total / n
        return out

    def step(self, data) -> float:
        self.num_steps += 1
        data = data.to(self.device)
        self.optimizer.zero_grad()
        recon, mean, logvar, alphas = self.model(data)
        loss = self.loss(data, recon, mean, logvar, alphas)["total"]
        loss.backward()
        self.optimizer.step()
        return loss.item()


class PerSampleImages(torch.utils.data.Dataset):
    """images uint8 [N, C, H, W] -> item i = (float image [C, H, W] in [0, 1], label 0), one tensor per sample."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i].float().div(255.0), 0


def baseline_loader(images: torch.Tensor, batch_size: int, seed: int = 0) -> torch.utils.data.DataLoader:
    """A shuffling DataLoader (main process, default collate, last partial batch dropped) over per-sample images."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        PerSampleImages(images), batch_size=batch_size, shuffle=True, drop_last=True, generator=g
    )


def in_memory_batches(images: torch.Tensor, batch_size: int, seed: int = 0):
    """Endless float batches [batch_size, C, H, W] in [0, 1]: images uint8 [N, C, H, W] converted once, then
    sliced in a fresh shuffled order each epoch (last partial batch dropped), on the CPU."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if not 1 <= batch_size <= images.shape[0]:
        raise ValueError(f"batch_size must be in [1, {images.shape[0]}], got {batch_size}")
    data = images.float().div(255.0)
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(data.shape[0], generator=g)
        for i in range(data.shape[0] // batch_size):
            yield data[perm[i * batch_size : (i + 1) * batch_size]]


def make_baseline(img_size, cont, disc, lr, cont_capacity, disc_capacity, device="cpu", temperature=0.67):
    """(model, BaselineTrainer) on `device`, Adam(lr) with torch defaults otherwise."""
    model = PaperStyleVAE(img_size, cont, disc, temperature).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return model, BaselineTrainer(model, optimizer, cont_capacity, disc_capacity)
