"""The Joint-VAE network of the paper's Appendix B.

Encoder: 4x4 stride-2 convolutions (32, 32, 64, 64 channels for 64x64 images;
32, 64, 64 for 32x32), ReLU, a 256-unit linear layer, then one linear head that
gives the joint posterior's parameters [mu (D), logvar (D), logits (sum K)].
Decoder: latent -> 256 -> 64*4*4, then the transposed convolutions mirrored,
ending in image logits (the paper's sigmoid is applied by the loss / by
`probabilities`).
Larger images (this project's extension, for your own data): one more 32-channel
stride-2 block per doubling, first in the encoder and last in the decoder, the
step the paper takes from 32x32 to 64x64: 128x128 has 32, 32, 32, 64, 64 and
256x256 32, 32, 32, 32, 64, 64. The features stay 64x4x4, so the rest of the
network is the paper's. The 32x32 and 64x64 networks (and their checkpoints) are
unchanged.

The module names follow the paper's published code
(img_to_features, features_to_hidden, latent_to_features, features_to_img) so
its checkpoints map onto ours; its three heads fc_mean, fc_log_var and
fc_alphas.i are stacked into our single `to_posterior` layer (one GEMM).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .errors import UserInputError
from . import ops
from .layers import BiasApartConvTranspose2d, PatchConvTranspose2d
from .ops.limits import check_latent_limits

HIDDEN = 256
FEATURES = (64, 4, 4)  # encoder output / decoder input, for both image sizes
# A decoder's last layer to at most this many channels runs as one matrix product + col2im on the CPU
# (layers/patch_deconv.py); with 3 channels that was no faster than oneDNN (docs/performance.md).
PATCH_MAX_CHANNELS = 1


class JointVAEOutput(NamedTuple):
    """What `JointVAE.forward` returns. Shapes for a batch of B images."""

    x_logits: torch.Tensor  # [B, C, H, W] Bernoulli logits of the reconstruction
    mu: torch.Tensor  # [B, D]
    logvar: torch.Tensor  # [B, D]
    logits: torch.Tensor  # [B, sum K] discrete posteriors, packed side by side
    latent: torch.Tensor  # [B, D + sum K] what the decoder read


IMAGE_SIZES = (32, 64, 128, 256)


def _encoder_channels(channels: int, size: int) -> list[int]:
    """[C, 32, 64, 64] at 32x32; one more 32 after C per doubling (64: [C, 32, 32, 64, 64])."""
    extra = IMAGE_SIZES.index(size)
    return [channels] + [32] * (1 + extra) + [64, 64]


def _decoder_channels(channels: int, size: int) -> list[int]:
    """The encoder's channels reversed: [64, 32, 32, C] at 32x32, [64, 64, 32, 32, C] at 64x64, ... with the
    paper's 64x64 decoder for 64 and its 32x32 decoder for 32."""
    return [64, 32, 32, channels] if size == 32 else [64, 64] + [32] * (1 + IMAGE_SIZES.index(size)) + [channels]


def network_note(size: int) -> str:
    """One line on which network an image size gets (model cards, docs/own-images.md)."""
    extra = IMAGE_SIZES.index(size) - 1
    if extra <= 0:
        return f"the paper's {size}x{size} network (Appendix B)"
    return (f"the paper's 64x64 network with {extra} more 32-channel stride-2 block{'s' * (extra > 1)} in the encoder "
            "and the decoder (one per doubling: this project's extension, not the paper's)")


def validate_latent_spec(cont, disc) -> tuple[int, tuple[int, ...]]:
    """Check a latent spec: cont >= 0 units, disc a list of class counts >= 2, not both empty."""
    if isinstance(cont, bool) or not isinstance(cont, int) or cont < 0:
        raise UserInputError(f"cont must be an int >= 0, got {cont!r}")
    if isinstance(disc, (str, bytes)) or not isinstance(disc, Sequence):
        raise TypeError(f"disc must be a list of class counts, got {disc!r}")
    disc = tuple(disc)
    for k in disc:
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise UserInputError(f"disc must hold class counts >= 2, got {list(disc)!r}")
    if cont == 0 and not disc:
        raise UserInputError("the latent is empty: give cont > 0 or at least one discrete variable")
    check_latent_limits(disc)
    return cont, disc


def validate_image_size(img_size) -> tuple[int, int, int]:
    """Check an image size (C, H, W): C in {1, 3}, H == W in IMAGE_SIZES."""
    try:
        c, h, w = (int(v) for v in img_size)
    except (TypeError, ValueError):
        raise UserInputError(f"img_size must be (C, H, W), got {img_size!r}") from None
    if c not in (1, 3) or h != w or h not in IMAGE_SIZES:
        raise UserInputError(
            f"img_size must be (C, H, W) with C in {{1, 3}} and H == W in {{32, 64, 128, 256}} "
            f"(the paper's architectures for 32 and 64, one more stride-2 block per doubling above), "
            f"got {tuple(img_size)!r}"
        )
    return c, h, w


class JointVAE(nn.Module):
    """Joint-VAE with D continuous units and discrete variables of K_i classes.

    JointVAE(img_size=(C, H, W), cont=D, disc=[K_1, ..., K_V], temperature=tau)
    """

    def __init__(self, img_size, cont: int, disc: Sequence[int] = (), temperature: float = 0.67):
        super().__init__()
        self.img_size = validate_image_size(img_size)
        self.cont, self.disc = validate_latent_spec(cont, disc)
        temperature = float(temperature)
        if not temperature > 0:
            raise UserInputError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature
        self.latent_dim = self.cont + sum(self.disc)
        c, size, _ = self.img_size

        enc = _encoder_channels(c, size)
        layers: list[nn.Module] = []
        for cin, cout in zip(enc[:-1], enc[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]
        self.img_to_features = nn.Sequential(*layers)
        n_features = FEATURES[0] * FEATURES[1] * FEATURES[2]
        self.features_to_hidden = nn.Sequential(nn.Linear(n_features, HIDDEN), nn.ReLU())
        self.to_posterior = nn.Linear(HIDDEN, 2 * self.cont + sum(self.disc))

        self.latent_to_features = nn.Sequential(
            nn.Linear(self.latent_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_features), nn.ReLU()
        )
        dec = _decoder_channels(c, size)
        layers = []
        for i, (cin, cout) in enumerate(zip(dec[:-1], dec[1:])):
            deconv = PatchConvTranspose2d if cout <= PATCH_MAX_CHANNELS else BiasApartConvTranspose2d
            layers.append(deconv(cin, cout, 4, stride=2, padding=1))
            if i < len(dec) - 2:
                layers.append(nn.ReLU())
        self.features_to_img = nn.Sequential(*layers)

    @property
    def num_pixels(self) -> int:
        """H * W: what the paper's published code divides the loss by."""
        return self.img_size[1] * self.img_size[2]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [0, 1] -> (mu [B, D], logvar [B, D], logits [B, sum K]) in the weights' dtype.

        Under bf16 autocast the convolutions and the hidden layer compute in bfloat16, but the head (to_posterior)
        runs in the weights' dtype on the features cast up: bf16 rounding of the logits (~3e-4 near 0) is as large
        as their spread over images at initialisation (~1e-3) and could hold the discrete code at the uniform
        point, where dI/dlogits = 0. The head is under 1% of the encoder's FLOPs."""
        h = self.features_to_hidden(self.img_to_features(x).flatten(1))
        params = self._posterior_head(h)
        d = self.cont
        return params[:, :d], params[:, d : 2 * d], params[:, 2 * d :]

    def _posterior_head(self, h: torch.Tensor) -> torch.Tensor:
        """to_posterior(h) in the weights' dtype; under autocast (h in bf16) with autocast off for this layer."""
        dtype = self.to_posterior.weight.dtype
        if h.dtype == dtype:
            return self.to_posterior(h)
        with torch.autocast(h.device.type, enabled=False):
            return self.to_posterior(h.to(dtype))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D + sum K] -> image logits [B, C, H, W]; sigmoid gives probabilities."""
        h = self.latent_to_features(latent).view(-1, *FEATURES)
        return self.features_to_img(h)

    def latent(self, mu, logvar, logits, generator=None) -> torch.Tensor:
        """The decoder's input: a reparameterised sample when training, else [mu, one-hot argmax]."""
        return ops.sample_latent(
            mu, logvar, logits, self.disc, self.temperature, training=self.training, generator=generator
        )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> JointVAEOutput:
        """x [B, C, H, W] -> JointVAEOutput (reconstruction logits, posterior, latent)."""
        mu, logvar, logits = self.encode(x)
        z = self.latent(mu, logvar, logits, generator)
        return JointVAEOutput(self.decode(z), mu, logvar, logits, z)

    @torch.no_grad()
    def probabilities(self, latent: torch.Tensor) -> torch.Tensor:
        """Decoded pixel probabilities sigmoid(decode(latent)), [B, C, H, W]."""
        return torch.sigmoid(self.decode(latent))

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, cont={self.cont}, disc={list(self.disc)}, temperature={self.temperature}"
