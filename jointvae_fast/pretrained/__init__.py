"""Pretrained models shipped inside the package: `names()` and `load(name) -> (model, metadata)`.

A registry is a folder with one sub-folder per model (its name: lowercase letters, digits and '-'):
    model.pt      a jointvae_fast checkpoint (checkpoint.py format): float32 weights and the metadata
                  that rebuilds the model (img_size, cont, disc, temperature, dataset, preset, step, config);
                  no optimizer state
    card.md       how the model was made: the exact training command, the commit, the machine and time,
                  and its evaluation (numbers quoted from metrics.json)
    metrics.json  the evaluation of exactly these weights (python -m jointvae_fast.evaluate)
The default registry is the `models/` folder of this package (what a pip install ships). Tests and
custom collections point elsewhere with root=... or the environment variable JOINTVAE_PRETRAINED_DIR.
Model folders are made from a training run by `python -m jointvae_fast.pack RUN_DIR NAME`.
Wherever a model source is taken (evaluate, explore), `pretrained:NAME` names one of these models.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..store import checkpoint as ckpt

ENV = "JOINTVAE_PRETRAINED_DIR"
PREFIX = "pretrained:"
WEIGHTS, CARD, METRICS = "model.pt", "card.md", "metrics.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DEFAULT_ROOT = Path(__file__).resolve().parent / "models"


class PretrainedError(UserInputError):
    """An unknown or unreadable pretrained model name."""


def registry_root(root=None) -> Path:
    """The registry folder: `root` if given, else $JOINTVAE_PRETRAINED_DIR if set, else the package's models/."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV)
    return Path(env) if env else DEFAULT_ROOT


def names(root=None) -> list[str]:
    """Sorted names of the models in the registry (folders holding model.pt); [] when there are none."""
    base = registry_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and NAME_RE.match(p.name) and (p / WEIGHTS).is_file())


def model_dir(name: str, root=None) -> Path:
    """The folder of model `name`; PretrainedError (listing the available names) when there is none."""
    available = names(root)
    if name not in available:
        have = ", ".join(available) if available else f"none (the registry {registry_root(root)} holds no model yet)"
        raise PretrainedError(f"unknown pretrained model {name!r}; available: {have}")
    return registry_root(root) / name


def source_name(source) -> str | None:
    """NAME for a source text 'pretrained:NAME', else None."""
    if isinstance(source, str) and source.startswith(PREFIX):
        return source[len(PREFIX):]
    return None


def load(name: str, root=None, map_location="cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, metadata) of pretrained model `name`.

    metadata: name, folder, checkpoint (the weights file's metadata), metrics (metrics.json, or None),
    card (card.md's text, or None)."""
    folder = model_dir(name, root)
    try:
        c = ckpt.load_checkpoint(folder / WEIGHTS, map_location)
    except ckpt.CheckpointError as e:
        raise PretrainedError(f"pretrained model {name!r}: {e}") from e
    metrics = None
    if (folder / METRICS).is_file():
        try:
            metrics = json.loads((folder / METRICS).read_text())
        except json.JSONDecodeError as e:
            raise PretrainedError(f"pretrained model {name!r}: unreadable {METRICS}: {e}") from e
    card = (folder / CARD).read_text() if (folder / CARD).is_file() else None
    return c.model, {"name": name, "folder": str(folder), "checkpoint": c.meta, "metrics": metrics, "card": card}


__all__ = ["ENV", "PREFIX", "PretrainedError", "registry_root", "names", "model_dir", "source_name", "load"]
