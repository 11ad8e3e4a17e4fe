"""The training loop: device-resident data, seeded batch order, logging, checkpoints, exact resume.

The loop. Each optimizer step gathers this rank's batch (batches.py), sets the
temperature, runs TrainStep and appends its loss terms to the device log
(term_log.py); at log steps the log is flushed, at checkpoint steps (and at the
end, and when Ctrl-C was pressed) a checkpoint is written (run_dir.py). With
--tensorboard, rank 0 also writes each log record's scalars and, every
tensorboard_images_every steps and at the end, the sample and traversal grids
(tensorboard_log.py; the grids draw from a generator of their own, so training
is the same with and without it). How
each step ran (TrainStep.step_mode: "cuda-graph" or "eager (why)") is noted
too; the changes come back in LoopResult.step_modes ([{"step", "mode"}], the
CLI adds them to run.json).

Steps. The loop calls TrainStep with step = 1 for the first optimizer step:
the paper's published code increments its step counter before
computing the capacities, so C(1) = c_min + (c_max - c_min)/num_iters is what
its first update sees; we do the same. A checkpoint's `step` is the number of
completed optimizer steps.

DDP. Each rank computes Eq. 7 on its shard and DistributedDataParallel
averages the gradients. The reconstruction term is linear in the batch, so
this equals the global batch's gradient; the capacity terms apply |.| to each
shard's batch-mean KL, so they match the global batch's only while every
shard's KL - C has the global batch's sign (tests/training/test_ddp.py compares
in that regime). The total-correlation term and diagnostics are estimated on each
shard's rows (a batch of the local size from the same N training images).

Randomness. Sampling noise comes from a torch.Generator on the training
device per rank, seeded with derive_seed("sampling", seed, rank); checkpoints
store every generator's state (run_dir.py).
"""
from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..model import JointVAE
from ..objective import Capacity, Objective
from ..progress import Progress
from .batches import BatchOrder, TrainImages, derive_seed, run_length
from .config import RunConfig
from .distributed import World, any_rank
from ..store.run_layout import LOG, list_checkpoints
from .run_dir import is_kept_step, restore, save_checkpoint
from .step import TrainStep, make_optimizer
from .tensorboard_log import TensorBoardLog
from .term_log import TermLog

PLAIN_LINE_SECONDS = 10.0  # without a terminal, at most one progress line per this many seconds


class StopRequest:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second Ctrl-C aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: saving a checkpoint after this step (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def make_objective(config: RunConfig, model: JointVAE, dataset_size: int | None = None) -> Objective:
    """Eq. 7 with the config's capacities (a part without latent units has no capacity term) and its
    total-correlation term; dataset_size (the training images, N of the TC estimators) also turns on the TC
    diagnostics of the log."""
    cont = Capacity(config.cont_min, config.cont_max, config.cont_iters, config.cont_gamma) if model.cont else None
    disc = Capacity(config.disc_min, config.disc_max, config.disc_iters, config.disc_gamma) if model.disc else None
    return Objective(tuple(model.disc), cont, disc, config.recon_weight,
                     config.disc_capacity_on, config.disc_aggregate_weight,
                     config.cont_capacity_on, config.cont_aggregate_weight, config.tc_weight,
                     config.tc_estimator, config.tc_on, dataset_size)


def temperature_at(config: RunConfig, step: int) -> float:
    """tau(step): fixed, or tau0 * (tau_final/tau0)^(step/N) floored at tau_final when annealing is on."""
    t0, tf, n = config.temperature, config.temperature_final, config.temperature_anneal_steps
    if tf is None:
        return t0
    return max(tf, t0 * (tf / t0) ** (step / n))


@dataclass
class LoopResult:
    status: str  # "done", "interrupted" or "nonfinite"
    step: int  # completed optimizer steps (of the last good state)
    message: str
    last_record: dict[str, Any] | None
    step_modes: list[dict[str, Any]] = field(default_factory=list)  # TermLog.step_modes


class _Run:
    """The state of one training run between steps (built by `train`)."""

    def __init__(self, config, model, data, world, run_dir, length, step_fn, log, sampling):
        self.config, self.model, self.data, self.world, self.run_dir = config, model, data, world, run_dir
        self.length, self.step_fn, self.log, self.sampling = length, step_fn, log, sampling
        self.tensorboard = log.tensorboard

    def step(self, step: int) -> None:
        if self.config.temperature_final is not None:
            self.model.temperature = temperature_at(self.config, step)
        self.log.append(self.step_fn(self.data.batch_at(step), step))
        self.log.note_mode(step, self.step_fn.step_mode)

    def stopping(self, stop: StopRequest, at_log: bool) -> bool:
        """Whether a stop was requested (on any rank: agreed at log steps only, a collective there)."""
        if not self.world.distributed:
            return stop.requested
        return any_rank(stop.requested, self.world) if at_log else False

    def after_step(self, step: int, stop: StopRequest) -> tuple[str, str] | None:
        """Log, save and stop as due after `step`; (status, message) when the run ends here."""
        total = self.length.total
        at_save = step % self.config.save_every == 0 or step == total \
            or is_kept_step(step, self.config.keep_every)
        at_log = at_save or step % self.config.log_every == 0
        stopping = self.stopping(stop, at_log)
        bad = self.log.flush(step) if at_log or stopping else None
        if bad is None and (at_save or stopping):
            bad = save_checkpoint(self.run_dir, step, self.config, self.model, self.step_fn.optimizer,
                                  self.sampling, self.world)
        if bad is not None:
            return "nonfinite", bad
        if self.tensorboard is not None and self.tensorboard.images_due(step):
            self.tensorboard.images(self.model, step, self.log.last_record)
        if stopping and step < total:
            return "interrupted", f"interrupted: checkpoint saved at step {step}; continue with --resume {self.run_dir}"
        return None

    def run(self, start: int, step_hook) -> tuple[str, str, int]:
        """Steps start+1 .. total; (status, message, last step)."""
        total, step = self.length.total, start
        with StopRequest() as stop:
            for step in range(start + 1, total + 1):
                self.step(step)
                if step_hook is not None:
                    step_hook(step, self.step_fn)
                ended = self.after_step(step, stop)
                if ended is not None:
                    return (*ended, step)
        if start < total:
            return "done", f"finished {total} steps", step
        return "done", f"nothing to do: the run is already at step {start} of {total} (raise --steps or --epochs)", step


def _forward_module(model: JointVAE, world: World) -> torch.nn.Module:
    """The model, or its DistributedDataParallel wrapper in a multi-process run."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[world.device] if world.device.type == "cuda" else None)


def train(
    config: RunConfig,
    model: JointVAE,
    data: TrainImages,
    world: World,
    run_dir: Path,
    resume: tuple[Path, dict[str, Any]] | None = None,
    show_progress: bool = True,
    step_hook: Callable[[int, TrainStep], None] | None = None,
) -> LoopResult:
    """Train `model` (already on world.device) for the config's steps, writing into `run_dir` (rank 0).

    resume: (path, raw checkpoint dict) to continue from. step_hook(step, train_step) is called after
    each step (for tests).
    """
    length = run_length(config, len(data), world.size)
    optimizer = make_optimizer(model, config.lr)
    objective = make_objective(config, model, len(data))
    sampling = torch.Generator(device=world.device)
    sampling.manual_seed(derive_seed("sampling", config.seed, world.rank))
    start = restore(resume, model, optimizer, sampling, world, config.seed) if resume is not None else 0
    model.train()
    step_fn = TrainStep(model, optimizer, objective, forward=_forward_module(model, world), generator=sampling,
                        precision=config.precision)
    tensorboard = TensorBoardLog(run_dir, start, config.seed, config.tensorboard_images_every, length.total) \
        if config.tensorboard and world.is_writer else None
    progress = Progress(length.total, "step", unit="step", initial=start, every_s=PLAIN_LINE_SECONDS,
                        enable=None if show_progress and world.is_writer else False)
    log = TermLog(model, objective, world, length, config.log_every, run_dir / LOG, progress, tensorboard)
    data.plan(BatchOrder(len(data), config.seed, length.steps_per_epoch, length.global_batch, length.local_batch,
                         world.rank), start + 1, length.total)
    try:
        status, message, step = _Run(config, model, data, world, run_dir, length, step_fn, log, sampling).run(
            start, step_hook)
    finally:
        data.close()
        progress.close()
        if tensorboard is not None:
            tensorboard.close()
    if status == "nonfinite":
        kept = list_checkpoints(run_dir)
        message += (f"; training stopped. The last good checkpoint is {kept[-1][1]} (step {kept[-1][0]})"
                    if kept else "; training stopped before any checkpoint was written")
        return LoopResult(status, kept[-1][0] if kept else 0, message, log.last_record, log.step_modes)
    return LoopResult(status, step, message, log.last_record, log.step_modes)
