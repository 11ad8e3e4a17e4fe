"""What is evaluated: a run directory, a jointvae_fast checkpoint, a checkpoint of the paper's published code,
or `pretrained:NAME` (a model shipped in jointvae_fast.pretrained).

`load_source(path)` -> Source (model in eval mode on the CPU, its kind, dataset name, log path, step).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError, storage
from .. import pretrained
from ..data import OPTION_KEYS
from ..model import JointVAE
from ..paper_checkpoints import PaperCheckpointError, read_paper_checkpoint
from ..store import checkpoint as ckpt
from ..store.run_layout import CHECKPOINT_DIR, CONFIG, LOG, is_run_dir, list_checkpoints


class EvaluationError(UserInputError):
    """A source, dataset or option that cannot be evaluated."""


@dataclass
class Source:
    model: JointVAE
    kind: str  # "run", "checkpoint", "paper" or "pretrained"
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    dataset: str | None = None
    data_dir: str | None = None
    step: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # a path dataset's loader options (its config's)


def _from_checkpoint(path: Path, kind: str, run_dir: Path | None) -> Source:
    c = ckpt.load_checkpoint(path)
    meta = c.meta
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    log = run_dir / LOG if run_dir is not None and (run_dir / LOG).is_file() else None
    step = meta.get("step")
    return Source(c.model, kind, path, meta, log, meta.get("dataset") or config.get("dataset"),
                  config.get("data_dir"), int(step) if isinstance(step, int) else None, data_options(config))


def data_options(config: dict[str, Any]) -> dict[str, Any]:
    """The own-images settings a run's config holds (OPTION_KEYS), for loading its path dataset again."""
    return {k: config[k] for k in OPTION_KEYS if config.get(k) is not None}


def load_source(path) -> Source:
    """The model (eval mode, CPU) and what is known about it, from a run dir, checkpoint file, folder of the paper's
    code or `pretrained:NAME`. Every command that takes a model (evaluate, explore) resolves it here."""
    name = pretrained.source_name(str(path))
    if name is not None:
        return _from_pretrained(name)
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path} does not exist (give a run directory, a checkpoint file or a folder of the paper's code)")
    if path.is_dir():
        if is_run_dir(path):
            problems = []
            for _, p in reversed(list_checkpoints(path)):  # newest readable
                try:
                    src = _from_checkpoint(p, "run", path)
                except ckpt.CheckpointError as e:
                    problems.append(str(e))
                    continue
                if src.dataset is None and (path / CONFIG).is_file():
                    cfg = _read_run_config(path / CONFIG)
                    src.dataset, src.data_dir = cfg.get("dataset"), cfg.get("data_dir")
                    src.data_options = data_options(cfg)
                src.path = path
                src.meta["checkpoint"] = str(p)
                return src
            raise EvaluationError(f"run directory {path} has no readable checkpoint in {path / CHECKPOINT_DIR}: "
                                  + ("; ".join(problems) or "none found"))
        if (path / "model.pt").is_file():
            return _from_paper_checkpoint(path)
        raise EvaluationError(f"{path} is neither a run directory (checkpoints/, config.json) nor a folder of the paper's code (model.pt)")
    try:
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else None
        return _from_checkpoint(path, "checkpoint", run_dir)
    except ckpt.CheckpointError as e:
        if "not a jointvae_fast checkpoint" not in str(e):
            raise EvaluationError(str(e)) from e
    return _from_paper_checkpoint(path)


def _from_pretrained(name: str) -> Source:
    try:
        model, meta = pretrained.load(name)
    except pretrained.PretrainedError as e:
        raise EvaluationError(str(e)) from None
    c = meta["checkpoint"]
    step = c.get("step")
    return Source(model, "pretrained", Path(meta["folder"]), c, None, c.get("dataset"), None,
                  int(step) if isinstance(step, int) else None)


def _read_run_config(path: Path) -> dict[str, Any]:
    try:
        with storage(path, "read"):
            cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvaluationError(f"{path} is not valid JSON ({e}); give --dataset NAME or restore it") from None
    if not isinstance(cfg, dict):
        raise EvaluationError(f"{path} must hold a JSON object of settings")
    return cfg


def _from_paper_checkpoint(path: Path) -> Source:
    try:
        model, specs = read_paper_checkpoint(path)
    except PaperCheckpointError as e:
        raise EvaluationError(str(e)) from e
    return Source(model, "paper", path, {"specs": specs}, None, specs.get("dataset"), None, None)
