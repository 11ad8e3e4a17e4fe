"""python -m jointvae_fast.train --dataset NAME [options]: train the paper's Joint-VAE.

Settings resolve as DEFAULTS < the dataset's preset (see jointvae_fast.training.config)
< a resumed run's config.json < --config FILE (JSON or TOML) < flags. The run
directory (--out, default runs/<dataset>-<UTC time>) receives:

    config.json       the resolved settings (usable as --config for a rerun)
    run.json          derived facts: world size, steps per epoch, total steps,
                      training images, image size, versions, command line
    log.jsonl         one JSON line every --log-every steps (fields: see loop.py)
    checkpoints/step-XXXXXXXX.pt   the last --keep checkpoints (checkpoint.py format,
                      with optimizer, step, RNG states and config for --resume)
    samples.png       64 decoded draws from the prior (at the end)
    traversal.png     one row per continuous unit (highest KL first, at most 10)
                      over the prior's 5%..95% quantiles, then one row per
                      discrete variable over its classes (at the end)

Exit codes: 0 done, 1 stopped on a non-finite loss, 2 bad input, 130 stopped
by Ctrl-C after saving a resumable checkpoint.

Multi-GPU: torchrun --nproc_per_node K -m jointvae_fast.train ... (--batch-size
is the global batch, split evenly across ranks; rank 0 writes all files; for
--resume every rank must see the run directory).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from .checkpoint import CheckpointError
from .distributed import broadcast_from_writer, cleanup, setup
from .loop import CHECKPOINT_DIR, ResumeError, TrainImages, check_resume_shapes, derive_seed, limit_images, \
    read_latest_checkpoint, train
from ..model import JointVAE, validate_image_size
from .config import DATASET_PRESETS, DEFAULTS, PRESETS, SCHEMA, ConfigError, preset_table, read_config_file, \
    resolve_config

EXIT_OK, EXIT_NONFINITE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RUN_FILES = ("config.json", "run.json", "log.jsonl", "samples.png", "traversal.png")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked."""


def _help(key: str, default_note: str | None = None) -> str:
    text = SCHEMA[key][1]
    d = DEFAULTS.get(key)
    if default_note is not None:
        return f"{text} (default: {default_note})"
    return f"{text} (default: {d})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jointvae_fast.train",
        description="Train the Joint-VAE of Dupont (2018) on one of the paper's datasets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets (the paper's Appendix C; every value can be overridden):\n" + preset_table()
        + "\n  (synthetic-chairs uses the chairs preset; celeba's recon_weight 1/3 reproduces the published"
        "\n  code's RGB reshape, which divides the per-image reconstruction sum by the channel count)"
        "\n\nsettings resolve as: defaults < preset < resumed run's config.json < --config FILE < flags."
        "\nThe first optimizer step uses step = 1 in the capacity schedule C(step), as the paper's published"
        "\ncode does (it increments its step counter before computing C)."
        "\nA short first run: python -m jointvae_fast.train --dataset chairs --steps 2000"
        "\nThe paper's full run: python -m jointvae_fast.train --dataset chairs",
        argument_default=argparse.SUPPRESS,
    )
    preset_note = "the preset's"
    p.add_argument("--dataset", choices=list(DATASET_PRESETS), help="dataset to train on (required unless --resume)")
    p.add_argument("--preset", choices=list(PRESETS), help=_help("preset", "the dataset's own"))
    p.add_argument("--data-dir", help=_help("data_dir", "$JOINTVAE_DATA, then a per-user cache folder"))
    p.add_argument("--out", help=_help("out", "runs/<dataset>-<UTC time>"))
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (keys as the flags, with _)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest readable checkpoint")
    p.add_argument("--overwrite", action="store_true", help="reuse an existing --out, deleting its run files (default: refuse)")
    g = p.add_argument_group("length and optimisation")
    g.add_argument("--epochs", type=int, help=_help("epochs", preset_note))
    g.add_argument("--steps", type=int, help=_help("steps", "unset: epochs decide"))
    g.add_argument("--batch-size", type=int, help=_help("batch_size", "64"))
    g.add_argument("--lr", type=float, help=_help("lr", preset_note))
    g.add_argument("--seed", type=int, help=_help("seed"))
    g.add_argument("--device", help=_help("device", "cuda if available, else cpu"))
    g.add_argument("--threads", type=int, help=_help("threads", "torch's default, one per core"))
    g.add_argument("--limit", type=int, metavar="N", help=_help("limit", "all images"))
    g = p.add_argument_group("model and objective")
    g.add_argument("--cont", type=int, help=_help("cont", preset_note))
    g.add_argument("--disc", type=int, nargs="*", metavar="K", help=_help("disc", preset_note) + "; --disc with no value: none")
    g.add_argument("--temperature", type=float, help=_help("temperature"))
    g.add_argument("--temperature-final", type=float, help=_help("temperature_final", "unset, tau fixed as in the paper"))
    g.add_argument("--temperature-anneal-steps", type=int, help=_help("temperature_anneal_steps", "unset"))
    for part, sym in (("cont", "C_z"), ("disc", "C_c")):
        g.add_argument(f"--{part}-min", type=float, help=_help(f"{part}_min", "0"))
        g.add_argument(f"--{part}-max", type=float, help=_help(f"{part}_max", preset_note))
        g.add_argument(f"--{part}-iters", type=int, help=_help(f"{part}_iters", preset_note))
        g.add_argument(f"--{part}-gamma", type=float, help=_help(f"{part}_gamma", preset_note))
    g.add_argument("--recon-weight", type=float, help=_help("recon_weight", "1; celeba 1/3"))
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-every", type=int, help=_help("log_every"))
    g.add_argument("--save-every", type=int, help=_help("save_every"))
    g.add_argument("--keep", type=int, help=_help("keep"))
    g.add_argument("--images", action=argparse.BooleanOptionalAction, help=_help("images", "on"))
    g.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="show progress (a bar on a terminal, else a line every 10 s) (default: on)")
    return p


RUN_CONTROL = ("config", "resume", "overwrite", "progress")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def default_out(dataset: str) -> str:
    return str(Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create `run_dir`; an existing non-empty one is refused unless `overwrite` (then our run files go)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(f"run directory {run_dir} already exists; use --resume {run_dir} to continue it, "
                              "--overwrite to start over in it, or another --out")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines after `step` (progress lost since the checkpoint we resume from)."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    _atomic_write_text(log_path, "".join(k + "\n" for k in kept))


def load_training_data(config: dict[str, Any], dataset=None):
    """(train images source, image_size) from an injected dataset object or jointvae_fast.data."""
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(config["dataset"], data_dir=config["data_dir"])
    source = dataset.train if hasattr(dataset, "train") else dataset
    if config["limit"] is not None:
        source = limit_images(source, config["limit"], config["seed"])
    size = getattr(dataset, "image_size", None)
    if size is None:
        size = tuple(source.shape[1:])
    validate_image_size(size)
    return source, tuple(int(s) for s in size)


@torch.no_grad()
def write_first_look(model: JointVAE, run_dir: Path, seed: int, kl_cont: Sequence[float] | None) -> list[Path]:
    """samples.png (64 prior draws) and traversal.png (top continuous units, then discrete variables)."""
    from ..analysis.figures.images import save_image_grid
    from ..analysis.figures.traversal import continuous_traversal, discrete_traversal, prior_latents

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(derive_seed("images", seed, 0))
    paths = []
    lat = prior_latents(model, 64, g)
    paths.append(save_image_grid(model.probabilities(lat), run_dir / "samples.png", nrow=8))
    steps = max([10, *model.disc])
    base = prior_latents(model, 1, g)
    if model.disc:  # start every row from class 0 of every discrete variable
        start = model.cont
        for k in model.disc:
            base[:, start : start + k] = 0.0
            base[:, start] = 1.0
            start += k
    units = list(range(model.cont))
    if kl_cont is not None and len(kl_cont) == model.cont:
        units.sort(key=lambda d: -kl_cont[d])
    rows = [continuous_traversal(model, d, steps=steps, base=base).images[0] for d in units[:10]]
    for v, k in enumerate(model.disc):
        imgs = discrete_traversal(model, v, base=base).images[0]
        if k < steps:
            imgs = torch.cat([imgs, imgs.new_zeros(steps - k, *imgs.shape[1:])])
        rows.append(imgs)
    paths.append(save_image_grid(torch.cat(rows), run_dir / "traversal.png", nrow=steps))
    model.train(was_training)
    return paths


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """The CLI. `dataset` (for tests and notebooks): an object with .train (uint8 [N, C, H, W]) and
    .image_size used instead of loading config["dataset"] from disk."""
    args = vars(build_parser().parse_args(argv))
    control = {k: args.pop(k) for k in RUN_CONTROL if k in args}
    flags = args  # only the flags given on the command line (argument_default=SUPPRESS)
    world = None
    try:
        layers = []
        resume_dir = None
        if control.get("resume"):
            resume_dir = Path(control["resume"])
            if not (resume_dir / "config.json").is_file():
                raise ResumeError(f"--resume {resume_dir}: no run there (no config.json)")
            try:
                saved = json.loads((resume_dir / "config.json").read_text())
            except json.JSONDecodeError as e:
                raise ResumeError(f"{resume_dir / 'config.json'} is not valid JSON: {e}") from e
            layers.append((f"{resume_dir / 'config.json'}", saved))
            if "out" in flags and Path(flags["out"]) != resume_dir:
                raise RunDirError("--resume continues in its own run directory; do not combine it with --out")
        if control.get("config"):
            layers.append((f"config file {control['config']}", read_config_file(control["config"])))
        layers.append(("the command line", flags))
        config = resolve_config(*layers)
        if resume_dir is not None:
            config["out"] = str(resume_dir)
        elif config["out"] is None:
            config["out"] = default_out(config["dataset"])
        run_dir = Path(config["out"])

        world = setup(config["device"])
        if config["threads"] is not None:
            torch.set_num_threads(config["threads"])
        torch.manual_seed(config["seed"])

        # the run directory: decided by rank 0, the verdict shared with every rank
        verdict = None
        resume_path = None
        if world.is_writer:
            try:
                if resume_dir is None:
                    prepare_run_dir(run_dir, bool(control.get("overwrite")))
                else:
                    resume_path = str(read_latest_checkpoint(resume_dir)[0])
            except (RunDirError, ResumeError) as e:
                verdict = str(e)
        verdict, resume_path = broadcast_from_writer((verdict, resume_path), world)
        if verdict is not None:
            raise RunDirError(verdict)

        source, img_size = load_training_data(config, dataset)
        model = JointVAE(img_size, config["cont"], config["disc"], config["temperature"]).to(world.device)
        data = TrainImages(source, world.device)
        if config["batch_size"] % world.size:
            raise ValueError(f"batch_size {config['batch_size']} must be divisible by the number of processes {world.size}")
        if len(data) < config["batch_size"]:
            raise ValueError(f"batch_size {config['batch_size']} is larger than the training split ({len(data)} images)")

        resume = None
        if resume_path is not None:
            from . import checkpoint as ckpt

            resume = (Path(resume_path), ckpt.read(resume_path, "cpu"))
            check_resume_shapes(resume[1], model, resume[0])  # before anything in the run directory changes
        if world.is_writer:
            _atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
            start = int(resume[1]["training"]["step"]) if resume else 0
            if resume:
                truncate_log(run_dir / "log.jsonl", start)
            spe = len(data) // config["batch_size"]
            run_info = {
                "world_size": world.size,
                "device": str(world.device),
                "train_images": len(data),
                "image_size": list(img_size),
                "steps_per_epoch": spe,
                "total_steps": config["steps"] if config["steps"] is not None else config["epochs"] * spe,
                "resumed_from": {"checkpoint": str(resume[0]), "step": start} if resume else None,
                "jointvae_fast_version": __version__,
                "torch_version": torch.__version__,
                "command": [sys.executable, "-m", "jointvae_fast.train", *(argv if argv is not None else sys.argv[1:])],
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=2) + "\n")
            print(f"training {config['dataset']} (preset {config['preset']}) on {world.device}"
                  f"{f' x{world.size}' if world.distributed else ''}: {len(data)} images {img_size}, "
                  f"{run_info['total_steps']} steps{f', resuming at step {start}' if resume else ''}; "
                  f"run directory {run_dir}", file=sys.stderr, flush=True)

        result = train(config, model, data, world, run_dir, resume=resume,
                       show_progress=control.get("progress", True))
        if world.is_writer:
            print(result.message, file=sys.stderr, flush=True)
        if result.status == "nonfinite":
            return EXIT_NONFINITE
        if result.status == "interrupted":
            return EXIT_INTERRUPTED
        if world.is_writer and config["images"]:
            kl = result.last_record["kl_cont"] if result.last_record else None
            paths = write_first_look(model, run_dir, config["seed"], kl)
            print("images: " + ", ".join(str(p) for p in paths), file=sys.stderr, flush=True)
        return EXIT_OK
    except (ConfigError, RunDirError, ResumeError, CheckpointError, FileNotFoundError, ValueError, TypeError) as e:
        return _error(str(e))
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C during it
        print("\naborted by Ctrl-C (checkpoints written before remain)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if world is not None:
            cleanup(world)
