"""Checkpoints: a model's state dict plus JSON metadata, written atomically.

File layout (a dict saved with torch.save, loadable with weights_only=True):
    format    "jointvae_fast/1"
    meta      JSON text: img_size, cont, disc, temperature, preset, step,
              jointvae_fast and torch versions, and anything the caller adds
    model     the JointVAE state dict
    training  optional: optimizer state, RNG states, ... (tensors and plain
              Python containers only)
The file is written to a temporary name in the same folder, flushed to disk
and renamed over the target, so a crash never leaves a half-written
checkpoint under the real name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic_write import atomic_write
from ..model import JointVAE

FORMAT = "jointvae_fast/1"


class CheckpointError(ValueError):
    """A file that is not a readable jointvae_fast checkpoint."""


@dataclass
class Checkpoint:
    model: JointVAE
    meta: dict[str, Any]
    training: dict[str, Any] | None = field(default=None)


def model_meta(model: JointVAE, **extra) -> dict[str, Any]:
    """The metadata that rebuilds `model`, plus versions and `extra` (JSON-serialisable)."""
    meta = {
        "img_size": list(model.img_size),
        "cont": model.cont,
        "disc": list(model.disc),
        "temperature": model.temperature,
        "jointvae_fast_version": __version__,
        "torch_version": torch.__version__,
    }
    meta.update(extra)
    json.dumps(meta)  # fail here, not at load time, if something is not JSON
    return meta


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the target's folder, fsync, then rename over `path`."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def save(path, model: JointVAE, meta: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> None:
    """Write `model` (+ metadata from `model_meta` updated by `meta`, + optional training state) to `path`."""
    full_meta = model_meta(model, **(meta or {}))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "meta": json.dumps(full_meta), "model": state}
    if training is not None:
        obj["training"] = training
    atomic_torch_save(obj, path)


def read(path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (meta parsed), with clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, pickle with code, ...
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file?): {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a jointvae_fast checkpoint (expected format {FORMAT!r}); "
            "for a checkpoint of the paper's published code use jointvae_fast.import_paper_checkpoint"
        )
    try:
        obj["meta"] = json.loads(obj["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has unreadable metadata: {e}") from e
    return obj


def model_from_meta(meta: dict[str, Any]) -> JointVAE:
    """An untrained JointVAE with the architecture `meta` describes."""
    return JointVAE(meta["img_size"], int(meta["cont"]), list(meta["disc"]), float(meta["temperature"]))


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Model (eval mode), metadata and training state from a checkpoint file."""
    obj = read(path, map_location)
    model = model_from_meta(obj["meta"])
    try:
        model.load_state_dict(obj["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the architecture in its metadata: {e}") from e
    model.eval()
    return Checkpoint(model, obj["meta"], obj.get("training"))


def load_model(path, map_location: str | torch.device = "cpu") -> JointVAE:
    """A ready model (eval mode) from a jointvae_fast checkpoint file."""
    return load_checkpoint(path, map_location).model

