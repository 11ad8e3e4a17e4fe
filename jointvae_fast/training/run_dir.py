"""A run directory: its files, its checkpoints (step-XXXXXXXX.pt), and resuming a run from them.

A checkpoint's `training` part holds the optimizer state, the completed step, the CPU generator's state
and every rank's sampling-generator (and CUDA generator) state, so that resuming on the same device and
world size continues bit for bit on the CPU.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..atomic_write import atomic_write_text
from ..errors import UserInputError, storage
from ..model import JointVAE
from ..store import checkpoint as ckpt
from .batches import derive_seed
from .config import RunConfig
from .distributed import World, gather_to_writer
from ..store.run_layout import CHECKPOINT_DIR, RUN_FILES, TENSORBOARD_DIR, checkpoint_path, list_checkpoints


class RunDirError(UserInputError):
    """A run directory that cannot be used as asked."""


class ResumeError(UserInputError):
    """A run directory that cannot be resumed (no readable checkpoint, shapes that do not match)."""


def default_out(dataset: str) -> str:
    return str(Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """RunDirError unless `run_dir` can become a new run's directory (changes nothing on disk)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(f"run directory {run_dir} already exists; use --resume {run_dir} to continue it, "
                          "--overwrite to start over in it, or another --out")
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"--out {run_dir}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {run_dir}: {parent} is not writable")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create `run_dir` (checked by check_run_dir); with `overwrite` our run files in it go first."""
    check_run_dir(run_dir, overwrite)
    with storage(run_dir, "create"):
        if run_dir.is_dir() and overwrite:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
            shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files a killed process left beside its checkpoints (never renamed into place)."""
    folder = run_dir / CHECKPOINT_DIR
    if folder.is_dir():
        for p in folder.glob(".step-*.tmp"):
            p.unlink(missing_ok=True)


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines after `step` (progress lost since the checkpoint we resume from)."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(errors="replace").splitlines():  # a torn or damaged line is dropped
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(log_path, "".join(k + "\n" for k in kept))


def read_latest_checkpoint(run_dir, map_location="cpu") -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint of a run (path, raw dict); unreadable newer ones are skipped with a warning."""
    found = list_checkpoints(run_dir)
    if not found:
        raise ResumeError(f"{run_dir} has no checkpoint to resume from (looked for {Path(run_dir) / CHECKPOINT_DIR}/step-*.pt)")
    problems = []
    for _, path in reversed(found):
        try:
            obj = ckpt.read(path, map_location)
            ckpt.check_training_state(obj, path)
        except ckpt.CheckpointError as e:
            problems.append(str(e))
            warnings.warn(f"skipping unreadable checkpoint {path}: {e}", stacklevel=2)
            continue
        return path, obj
    raise ResumeError(f"no readable checkpoint in {run_dir}: " + "; ".join(problems))


def is_kept_step(step: int, keep_every: int | None) -> bool:
    """Whether --keep-every keeps (and so the loop writes) the checkpoint of `step`."""
    return bool(keep_every) and step % keep_every == 0


def prune_checkpoints(run_dir, keep: int, keep_every: int | None = None) -> None:
    """Delete all but the `keep` newest checkpoint files and those whose step is a multiple of `keep_every`."""
    found = list_checkpoints(run_dir)
    for step, path in found[: max(0, len(found) - keep)]:
        if is_kept_step(step, keep_every):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def rank_rng_state(world: World, sampling: torch.Generator) -> dict[str, Any]:
    state = {"sampling": sampling.get_state(), "sampling_device": sampling.device.type, "cuda": None}
    if world.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(world.device)
    return state


def check_resume_shapes(obj: dict[str, Any], model: JointVAE, path) -> None:
    meta = obj["meta"]
    have = (tuple(meta.get("img_size", ())), meta.get("cont"), tuple(meta.get("disc", ())))
    want = (tuple(model.img_size), model.cont, tuple(model.disc))
    if have != want:
        raise ResumeError(
            f"checkpoint {path} holds a model with img_size={have[0]}, cont={have[1]}, disc={list(have[2])}, "
            f"but this run builds img_size={want[0]}, cont={want[1]}, disc={list(want[2])}: "
            "resume with the run's own settings (drop --cont/--disc/--dataset overrides)"
        )
    ckpt.check_weights(obj["model"], model, path)
    ckpt.check_optimizer_state(obj["training"]["optimizer"], model, path)


def restore(resume: tuple[Path, dict[str, Any]], model: JointVAE, optimizer: torch.optim.Optimizer,
            sampling: torch.Generator, world: World, seed: int) -> int:
    """Load a checkpoint's model, optimizer and RNG states; returns its step. Noise is reseeded (with a
    warning) when the checkpoint was written by another world size or device type."""
    path, obj = resume
    check_resume_shapes(obj, model, path)
    training = obj["training"]
    model.load_state_dict(obj["model"])
    optimizer.load_state_dict(training["optimizer"])
    start = int(training["step"])
    torch.set_rng_state(training["rng"]["cpu"])
    ranks = training["rng"]["ranks"]
    device = world.device
    if len(ranks) == world.size and ranks[world.rank]["sampling_device"] == device.type:
        sampling.set_state(ranks[world.rank]["sampling"])
        if device.type == "cuda" and ranks[world.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(ranks[world.rank]["cuda"], device)
    elif world.is_writer:
        warnings.warn(
            f"{path} was written by {len(ranks)} process(es) on {ranks[0]['sampling_device']}; this run has "
            f"{world.size} on {device.type}: sampling noise is reseeded (training continues, not bit for bit)",
            stacklevel=2,
        )
        sampling.manual_seed(derive_seed("sampling-resumed", seed, world.rank * 1_000_003 + start))
    return start


def save_checkpoint(run_dir: Path, step: int, config: RunConfig, model: JointVAE,
                    optimizer: torch.optim.Optimizer, sampling: torch.Generator, world: World) -> str | None:
    """Write the checkpoint of `step` (rank 0; a collective), or return why the state is not worth saving."""
    with torch.no_grad():
        ok = bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())
    if not ok:
        return f"parameters became non-finite by step {step}"
    states = gather_to_writer(rank_rng_state(world, sampling), world)
    if world.is_writer:
        training = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "rng": {"cpu": torch.get_rng_state(), "ranks": states},
            "world_size": world.size,
        }
        meta = {"preset": config.preset, "dataset": config.dataset, "step": step, "config": config.to_dict()}
        ckpt.save(checkpoint_path(run_dir, step), model, meta=meta, training=training)
        prune_checkpoints(run_dir, config.keep, config.keep_every)
    return None
