"""python -m jointvae_fast.train --dataset NAME [options]: train the paper's Joint-VAE.

Settings resolve as DEFAULTS < the dataset's preset (jointvae_fast.training.presets)
< a resumed run's config.json < --config FILE (JSON or TOML) < flags. A new
--dataset chairs run that finds no real chairs runs as --dataset synthetic-chairs
(with its preset unless one is given; a one-line notice says so). The run
directory (--out, default runs/<dataset>-<UTC time>) receives:

    config.json       the resolved settings (usable as --config for a rerun; a path dataset is stored
                      as an absolute path, so evaluate and explore find it)
    run.json          derived facts: dataset, precision, world size, steps per epoch, total steps,
                      training images, image size, versions, command line; for a path dataset
                      its split (rule, test fraction, counts) and skipped_images (count, file); when
                      training ends, step_mode ("cuda-graph" or "eager (why)") and step_modes (each
                      change of mode, with its first step)
    skipped_images.txt  a path dataset's images that could not be read ("path<TAB>reason")
    log.jsonl         one JSON line every --log-every steps (fields: see term_log.py)
    tensorboard/      with --tensorboard: TensorBoard events of the same records' scalars, and the
                      sample and traversal grids every --tensorboard-images-every steps
                      (tags: see tensorboard_log.py); view with tensorboard --logdir RUN_DIR/tensorboard
    checkpoints/step-XXXXXXXX.pt   the last --keep checkpoints (checkpoint.py format,
                      with optimizer, step, RNG states and config for --resume),
                      and every one whose step is a multiple of --keep-every
    samples.png       64 decoded draws from the prior (at the end)
    traversal.png     one row per continuous unit (highest KL first, at most 10)
                      over the prior's 5%..95% quantiles, then one row per
                      discrete variable over its classes (at the end)

Exit codes: 0 done, 1 stopped on a non-finite loss (or a bug: then a traceback
and a line saying so), 2 bad input (one line `error: ...`; nothing in the run
directory changed), 130 stopped by Ctrl-C after saving a resumable checkpoint.

Your own images: --dataset PATH (a folder of images or an .npy/.npz/.h5 file) with
--img-size, --fit, --channels, --labels, ... (docs/own-images.md); preset "images"
unless --preset is given.

Multi-GPU: torchrun --nproc_per_node K -m jointvae_fast.train ... (--batch-size
is the global batch, split evenly across ranks; rank 0 writes all files; for
--resume every rank must see the run directory). Several machines: torchrun
--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT on each (docs/own-images.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from ..atomic_write import atomic_write_text
from .. import data as datasets
from ..data.chairs import chairs_or_synthetic
from ..data.own import skipped_text
from ..errors import ArgumentParser, UserInputError, run_cli, storage
from ..model import JointVAE, validate_image_size
from .memory import check_memory
from ..store import checkpoint as ckpt
from ..store.run_layout import CONFIG, LOG, RUN_INFO, SKIPPED_IMAGES
from .allocator import tune_cpu_allocator
from .batches import RunLength, TrainImages, limit_images, run_length
from .config import OWN_KEYS, RunConfig, add_setting_flags, is_path_dataset, preset_table, read_config_file, resolve_config
from .distributed import World, broadcast_from_writer, cleanup, setup, wait_for_all
from .first_look import write_first_look
from .loop import train
from .precision import precision_note
from .run_dir import ResumeError, RunDirError, check_resume_shapes, check_run_dir, default_out, prepare_run_dir, \
    read_latest_checkpoint, remove_stale_temporaries, truncate_log
from .tensorboard_log import require_tensorboard

EXIT_OK, EXIT_NONFINITE, EXIT_INTERRUPTED = 0, 1, 130


def build_parser() -> argparse.ArgumentParser:
    """The settings' flags (generated from config.SCHEMA) plus the run-control flags."""
    p = ArgumentParser(
        prog="python -m jointvae_fast.train",
        description="Train the Joint-VAE of Dupont (2018) on one of the paper's datasets or on your own images "
        "(--dataset PATH: a folder of images or an .npy, .npz, .h5 file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets (every value can be overridden):\n" + preset_table()
        + "\n  (the first five are the paper's Appendix C; synthetic-chairs is this project's choice for the"
        "\n  built-in chairs, on which the paper's chairs preset collapses the discrete code: --preset chairs"
        "\n  gives the paper's; celeba's recon_weight 1/3 reproduces the published code's RGB reshape, which"
        "\n  divides the per-image reconstruction sum by the channel count)"
        "\n\nsettings resolve as: defaults < preset < resumed run's config.json < --config FILE < flags."
        "\nThe first optimizer step uses step = 1 in the capacity schedule C(step), as the paper's published"
        "\ncode does (it increments its step counter before computing C)."
        "\nA new --dataset chairs run without the real chairs runs as --dataset synthetic-chairs (its dataset"
        "\nand, unless --preset is given, its preset; a one-line notice says so)."
        "\nA short first run: python -m jointvae_fast.train --dataset chairs --steps 2000"
        "\nThe paper's full run: python -m jointvae_fast.train --dataset chairs (with the real chairs)",
        argument_default=argparse.SUPPRESS,
    )
    groups = add_setting_flags(p)
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (keys as the flags, with _)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest readable checkpoint")
    p.add_argument("--overwrite", action="store_true", help="reuse an existing --out, deleting its run files (default: refuse)")
    groups["logging and checkpoints"].add_argument(
        "--progress", action=argparse.BooleanOptionalAction,
        help="show progress (a bar on a terminal, else a line every 10 s) (default: on)")
    return p


RUN_CONTROL = ("config", "resume", "overwrite", "progress")


def load_config_dataset(config: RunConfig, quiet: bool = False):
    """jointvae_fast.data.load_dataset for a run's config: a built-in name with data_dir, or a path with the
    own-images settings (quiet: no notes on stderr, for DDP ranks other than 0)."""
    if not is_path_dataset(config.dataset):
        return datasets.load_dataset(config.dataset, data_dir=config.data_dir)
    options = {k: getattr(config, k) for k in OWN_KEYS}
    return datasets.load_dataset(config.dataset, quiet=quiet, progress=False if quiet else None, **options)


def load_training_data(config: RunConfig, dataset=None, quiet: bool = False):
    """(train images source, image_size, what run.json records about the data) from an injected dataset object
    or jointvae_fast.data."""
    if dataset is None:
        dataset = load_config_dataset(config, quiet)
    source = dataset.train if hasattr(dataset, "train") else dataset
    if config.limit is not None:
        source = limit_images(source, config.limit, config.seed)
    size = getattr(dataset, "image_size", None)
    if size is None:
        size = tuple(source.shape[1:])
    return source, validate_image_size(size), data_facts(dataset)


def data_facts(dataset) -> dict[str, Any]:
    """run.json's record of a path dataset: its split and the images skipped (with the list's source)."""
    facts: dict[str, Any] = {}
    if getattr(dataset, "split", None):
        facts["split"] = dataset.split
    skipped = getattr(dataset, "skipped", ())
    if skipped:
        facts["skipped_images"] = {"count": len(skipped), "file": SKIPPED_IMAGES}
        facts["_skipped"] = list(skipped)
    return facts


def resolve_run_config(flags: dict[str, Any], control: dict[str, Any],
                       injected_dataset: bool = False) -> tuple[RunConfig, Path | None]:
    """(config, the run directory to resume or None) from the layers the flags name (module docstring).
    A new run of --dataset chairs without real chairs becomes a synthetic-chairs run (chairs_fallback)
    unless the data is injected (main's `dataset`)."""
    layers = []
    resume_dir = None
    if control.get("resume"):
        resume_dir = Path(control["resume"])
        cfg_path = resume_dir / CONFIG
        if not cfg_path.is_file():
            raise ResumeError(f"--resume {resume_dir}: no run there (no config.json)")
        try:
            with storage(cfg_path, "read"):
                saved = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResumeError(f"{cfg_path} is not valid JSON ({e}): restore it or start a new run") from None
        layers.append((f"{resume_dir / 'config.json'}", saved))
        if "out" in flags and Path(flags["out"]) != resume_dir:
            raise RunDirError("--resume continues in its own run directory; do not combine it with --out")
    if control.get("config"):
        layers.append((f"config file {control['config']}", read_config_file(control["config"])))
    layers.append(("the command line", flags))
    config = resolve_config(*layers)
    if resume_dir is None and not injected_dataset:
        config = chairs_fallback(config, layers)
    if resume_dir is not None:
        config = replace(config, out=str(resume_dir))
    elif config.out is None:
        config = replace(config, out=default_out(Path(config.dataset).name if is_path_dataset(config.dataset)
                                                 else config.dataset))
    return config, resume_dir


def chairs_fallback(config: RunConfig, layers: list[tuple[str, dict[str, Any]]]) -> RunConfig:
    """The config of a new run, re-resolved as --dataset synthetic-chairs (its preset unless one is given) when
    it asks for chairs and none are found (data.chairs.chairs_or_synthetic, which says so on stderr)."""
    if config.dataset != "chairs":
        return config
    name = chairs_or_synthetic(config.data_dir)
    return config if name == "chairs" else resolve_config(*layers, ("the chairs fallback", {"dataset": name}))


def claim_run_dir(world: World, run_dir: Path, resume_dir: Path | None, overwrite: bool) -> str | None:
    """Check the new run directory (changing nothing), or find the checkpoint to resume (path or None):
    decided by rank 0, the verdict shared with every rank."""
    verdict = resume_path = None
    if world.is_writer:
        try:
            if resume_dir is None:
                check_run_dir(run_dir, overwrite)
            else:
                resume_path = str(read_latest_checkpoint(resume_dir)[0])
        except UserInputError as e:
            verdict = str(e)
    verdict, resume_path = broadcast_from_writer((verdict, resume_path), world)
    if verdict is not None:
        raise RunDirError(verdict)
    return resume_path


def write_run_files(config: RunConfig, run_dir: Path, world: World, n_images: int, img_size, length: RunLength,
                    resume: tuple[Path, dict[str, Any]] | None, argv: Sequence[str] | None,
                    facts: dict[str, Any] | None = None) -> None:
    """config.json, run.json (with `facts`, data_facts), skipped_images.txt and (resuming) the log cut back to the
    checkpoint; one line on stderr. Rank 0."""
    facts = dict(facts or {})
    skipped = facts.pop("_skipped", None)
    atomic_write_text(run_dir / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
    if skipped:
        atomic_write_text(run_dir / SKIPPED_IMAGES, skipped_text(skipped))
    start = int(resume[1]["training"]["step"]) if resume else 0
    if resume:
        truncate_log(run_dir / LOG, start)
        remove_stale_temporaries(run_dir)
    run_info = {
        "dataset": config.dataset,
        "world_size": world.size,
        "device": str(world.device),
        "precision": config.precision,
        "train_images": n_images,
        "image_size": list(img_size),
        "steps_per_epoch": length.steps_per_epoch,
        "total_steps": length.total,
        "resumed_from": {"checkpoint": str(resume[0]), "step": start} if resume else None,
        **facts,
        "jointvae_fast_version": __version__,
        "torch_version": torch.__version__,
        "command": [sys.executable, "-m", "jointvae_fast.train", *(argv if argv is not None else sys.argv[1:])],
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(run_dir / RUN_INFO, json.dumps(run_info, indent=2) + "\n")
    print(f"training {config.dataset} (preset {config.preset}) on {world.device}"
          f"{f' x{world.size}' if world.distributed else ''}: {n_images} images {img_size}, "
          f"{length.total} steps, precision {config.precision}{f', resuming at step {start}' if resume else ''}; "
          f"run directory {run_dir}", file=sys.stderr, flush=True)
    note = precision_note(config.precision, world.device)
    if note is not None:
        print(note, file=sys.stderr, flush=True)


def record_step_modes(run_dir: Path, step_modes: list[dict[str, Any]]) -> None:
    """run.json gains step_mode (how the last step ran: "cuda-graph" or "eager (why)") and step_modes (each
    change: [{"step", "mode"}]) once training ends. Rank 0."""
    path = run_dir / RUN_INFO
    run_info = json.loads(path.read_text())
    run_info["step_mode"] = step_modes[-1]["mode"] if step_modes else None
    run_info["step_modes"] = step_modes
    atomic_write_text(path, json.dumps(run_info, indent=2) + "\n")


def start_process(config: RunConfig) -> World:
    """Process-wide settings, in one place: the distributed world, torch threads, the seed, and on the
    CPU the allocator setting (allocator.tune_cpu_allocator)."""
    world = setup(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if world.device.type == "cpu":
        tune_cpu_allocator()
    return world


def run(config: RunConfig, control: dict[str, Any], resume_dir: Path | None, world: World,
        argv: Sequence[str] | None, dataset=None) -> int:
    """Set up the run directory, data and model, train, and write the first-look images; the exit code."""
    run_dir = Path(config.out)
    overwrite = bool(control.get("overwrite"))
    resume_path = claim_run_dir(world, run_dir, resume_dir, overwrite)
    source, img_size, facts = load_training_data(config, dataset, quiet=not world.is_writer)
    data = TrainImages(source, world.device)
    length = run_length(config, len(data), world.size)
    check_memory(img_size, config.cont, config.disc, length.local_batch, world.device)
    model = JointVAE(img_size, config.cont, config.disc, config.temperature).to(world.device)
    resume = None
    if resume_path is not None:
        resume = (Path(resume_path), ckpt.read(resume_path, "cpu"))
        ckpt.check_training_state(resume[1], resume[0])
        check_resume_shapes(resume[1], model, resume[0])
    if world.is_writer:  # every check passed: only now does the run directory change
        if resume is None:
            prepare_run_dir(run_dir, overwrite)
        write_run_files(config, run_dir, world, len(data), img_size, length, resume, argv, facts)
    result = train(config, model, data, world, run_dir, resume=resume, show_progress=control.get("progress", True))
    if world.is_writer:
        record_step_modes(run_dir, result.step_modes)
        print(result.message, file=sys.stderr, flush=True)
    if result.status != "done":
        return EXIT_NONFINITE if result.status == "nonfinite" else EXIT_INTERRUPTED
    if world.is_writer and config.images:
        kl = result.last_record["kl_cont"] if result.last_record else None
        paths = write_first_look(model, run_dir, config.seed, kl)
        print("images: " + ", ".join(str(p) for p in paths), file=sys.stderr, flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """The CLI. `dataset` (for tests and notebooks): an object with .train (uint8 [N, C, H, W]) and
    .image_size used instead of loading the config's dataset from disk. A bad input is one line `error: ...`
    and exit status 2; any other exception is a bug: its traceback, a line saying so, exit status 1."""
    args = vars(build_parser().parse_args(argv))
    control = {k: args.pop(k) for k in RUN_CONTROL if k in args}
    flags = args  # only the flags given on the command line (argument_default=SUPPRESS)

    def work() -> int:
        world = None
        try:
            config, resume_dir = resolve_run_config(flags, control, injected_dataset=dataset is not None)
            if config.tensorboard:  # an optional package: missing, one line before anything is written
                require_tensorboard()
            world = start_process(config)
            status = run(config, control, resume_dir, world, argv, dataset)
            wait_for_all(world)
            return status
        except KeyboardInterrupt:  # before training started, or a second Ctrl-C during it
            print("\naborted by Ctrl-C (checkpoints written before remain)", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        finally:
            if world is not None:
                cleanup(world)

    return run_cli(work)
