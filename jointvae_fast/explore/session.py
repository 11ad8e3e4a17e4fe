"""What the explorer's API computes, without HTTP: latent validation, decoding, traversals, prior draws and
encoding test images. Every user mistake raises ApiError(status, message); anything else is a bug.

A latent travels as JSON {"z": [D numbers], "c": [V class indices]} and becomes the decoder's input
[z, one_hot(c_1), ..., one_hot(c_V)] (the layout of jointvae_fast.traversal).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..analysis.latent_kl import KL, TestImages
from ..grids.traversal import mode_latent, prior_latents, prior_quantiles, set_class, set_unit

Z_LIMIT = 10.0  # |z| the API accepts (the prior's mass is within +-4)
SLIDER = 3.0  # the page's slider range (+-)
MAX_STEPS = 16  # traversal strip length the API accepts
DEFAULT_STEPS = 9


class ApiError(Exception):
    """A bad request: HTTP `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _int(name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        raise ApiError(400, f"{name} must be an integer in [{lo}, {hi - 1}], got {v!r}")
    return v


class Explorer:
    """A model in eval mode, its KL per latent, and optional test images."""

    def __init__(self, model, kl: KL, test: TestImages, description: str, inactive_kl: float):
        self.model = model.eval()
        self.kl, self.test, self.description, self.inactive_kl = kl, test, description, inactive_kl
        self.device = next(model.parameters()).device

    # ------------------------------------------------------------ description
    def info(self) -> dict[str, Any]:
        m, kl = self.model, self.kl
        order = np.argsort(-kl.cont, kind="stable")
        units = [{"name": f"z{j}", "index": int(j), "kl": float(kl.cont[j]), "active": bool(kl.cont[j] > self.inactive_kl)}
                 for j in order]
        disc = [{"name": f"c{i}", "index": i, "classes": k, "kl": float(kl.disc[i])} for i, k in enumerate(m.disc)]
        n = 0 if self.test.images is None else int(self.test.images.shape[0])
        return {"source": self.description, "img_size": list(m.img_size), "cont": m.cont, "disc": list(m.disc),
                "units": units, "discrete": disc, "kl_source": kl.source, "inactive_threshold": self.inactive_kl,
                "z_limit": Z_LIMIT, "slider": SLIDER, "max_steps": MAX_STEPS, "traversal_steps": DEFAULT_STEPS,
                "test_images": {"available": n > 0, "count": n, "dataset": self.test.dataset, "note": self.test.note}}

    # ------------------------------------------------------------ latents
    def latent(self, body) -> torch.Tensor:
        """{"z": [...], "c": [...]} -> decoder input [L] (float32, on the model's device)."""
        m = self.model
        if not isinstance(body, dict):
            raise ApiError(400, f"the body must be a JSON object with z and c, got {type(body).__name__}")
        z, c = body.get("z", []), body.get("c", [])
        if not isinstance(z, list) or len(z) != m.cont:
            raise ApiError(400, f"z must be a list of {m.cont} numbers, got {_short(z)}")
        if not isinstance(c, list) or len(c) != len(m.disc):
            raise ApiError(400, f"c must be a list of {len(m.disc)} class indices, got {_short(c)}")
        for j, v in enumerate(z):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > Z_LIMIT:
                raise ApiError(400, f"z{j} = {v!r} is out of range: a number in [-{Z_LIMIT:g}, {Z_LIMIT:g}]")
        parts = [torch.tensor(z, dtype=torch.float32)]
        for i, (v, k) in enumerate(zip(c, m.disc)):
            parts.append(torch.nn.functional.one_hot(torch.tensor(_int(f"c{i}", v, 0, k)), k).float())
        return torch.cat(parts).to(self.device)

    def as_json(self, latent: torch.Tensor) -> dict[str, Any]:
        """Decoder input [L] -> {"z": [...], "c": [...]} (the argmax class of each one-hot block)."""
        lat = latent.detach().cpu()
        z = [float(v) for v in lat[: self.model.cont]]
        c, start = [], self.model.cont
        for k in self.model.disc:
            c.append(int(lat[start : start + k].argmax()))
            start += k
        return {"z": z, "c": c}

    def traversal_latents(self, body) -> torch.Tensor:
        """body {"z", "c", "latent": "z3" | "c0", "steps"} -> [S, L]: the latent varied along one unit/variable."""
        base = self.latent({k: v for k, v in body.items() if k in ("z", "c")} if isinstance(body, dict) else body)
        name = body.get("latent")
        unit = _parse_latent_name(name, self.model)
        if unit[0] == "z":
            steps = _int("steps", body.get("steps", DEFAULT_STEPS), 2, MAX_STEPS + 1)
            return set_unit(base.repeat(steps, 1), unit[1], prior_quantiles(steps).to(base.device))
        return torch.stack([set_class(base, self.model, unit[1], k) for k in range(self.model.disc[unit[1]])])

    def prior(self, body) -> dict[str, Any]:
        """A draw from the prior; body {"seed": int} (optional) makes it reproducible."""
        seed = body.get("seed") if isinstance(body, dict) else None
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(_int("seed", seed, 0, 2**63))
        return self.as_json(prior_latents(self.model, 1, g)[0])

    # ------------------------------------------------------------ images
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoder inputs [B, L] -> pixel probabilities [B, C, H, W] on the CPU."""
        return torch.sigmoid(self.model.decode(latents.to(self.device))).float().cpu()

    @torch.no_grad()
    def encode(self, body) -> tuple[dict[str, Any], torch.Tensor]:
        """body {"index": i} -> (eval-mode latent as JSON, the test image [C, H, W] in [0, 1])."""
        if self.test.images is None:
            raise ApiError(409, f"no test images: {self.test.note}")
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object {\"index\": i}")
        i = _int("index", body.get("index"), 0, int(self.test.images.shape[0]))
        x = self.test.images[i : i + 1].to(self.device).float() / 255.0
        mu, _, logits = self.model.encode(x)
        lat = mode_latent(mu, logits, self.model.disc)[0].clamp(-Z_LIMIT, Z_LIMIT)
        return self.as_json(lat), x[0].cpu()


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_latent_name(name, model) -> tuple[str, int]:
    have = (f"z0..z{model.cont - 1}" if model.cont else "no z") + (
        f", c0..c{len(model.disc) - 1}" if model.disc else "")
    if isinstance(name, str) and len(name) > 1 and name[0] in "zc" and name[1:].isdigit():
        kind, idx = name[0], int(name[1:])
        if idx < (model.cont if kind == "z" else len(model.disc)):
            return kind, idx
    raise ApiError(400, f"unknown unit {_short(name)}; the model has {have}")
