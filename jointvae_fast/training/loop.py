"""The training loop: device-resident data, seeded batch order, logging, checkpoints, exact resume.

Batches. The training images stay on the training device as uint8 [N, C, H, W]
(or behind a dataset's own batch-gather method); every batch is gathered there
and converted to float in [0, 1] (x / 255). Epoch e visits the images in the
order torch.randperm(N) drawn from a generator seeded with
derive_seed("batch-order", seed, e), the last incomplete batch dropped. Step s
(1-based) of the run reads positions [(s-1) % steps_per_epoch * B, ... + B) of
its epoch's permutation, B the global batch; DDP rank r of R takes the r-th of
R equal slices of those positions (a distinct shard). So the batch order is a
function of (seed, step) alone: resume needs no saved batch-order state.

Steps. The loop calls TrainStep with step = 1 for the first optimizer step:
the paper's published code increments its step counter before
computing the capacities, so C(1) = c_min + (c_max - c_min)/num_iters is what
its first update sees; we do the same. A checkpoint's `step` is the number of
completed optimizer steps.

Host syncs. Each step only appends its loss terms to a device buffer; every
--log-every steps (and at checkpoints, at the end and on Ctrl-C) the buffer is
copied to the host once ("a flush"): that is where the log line is written,
the progress display updated, and non-finite values detected, naming the exact
step and term.

Log (log.jsonl in the run directory, one JSON object per flush; loss terms and
KLs are means over the steps since the previous line, and over DDP ranks):
  step, epoch (step / steps_per_epoch), loss (the differentiated value:
  (recon_weight*recon + capacity_loss)/(H*W)), recon (nats per image),
  capacity_loss, kl_cont_sum (KL_z), kl_disc_sum (KL_c), kl_cont [D],
  kl_disc [V], info_disc [V] (the batch estimate of I(x; c_i) = KL_i - A_i),
  agg_kl_disc [V] (A_i = KL(mean_x q(c_i|x) || uniform)), classes_in_use [V]
  (classes that are the argmax of q(c_i|x) for at least one image of the
  line's batches, all steps since the previous line and all ranks),
  c_cont (C_z), c_disc (C_c), temperature, img_per_s,
  steps_per_s, elapsed_s (since this process started training), steps_in_mean,
  step_mode (how the last step of the line ran: "cuda-graph" or "eager (why)",
  TrainStep.step_mode). The run's mode changes come back in
  LoopResult.step_modes ([{"step", "mode"}], the CLI adds them to run.json).

DDP. Each rank computes Eq. 7 on its shard and DistributedDataParallel
averages the gradients. The reconstruction term is linear in the batch, so
this equals the global batch's gradient; the capacity terms apply |.| to each
shard's batch-mean KL, so they match the global batch's only while every
shard's KL - C has the global batch's sign (tests/test_train_ddp.py compares
in that regime).

Randomness. Sampling noise comes from a torch.Generator on the training
device per rank, seeded with derive_seed("sampling", seed, rank). A checkpoint
stores the state of every rank's sampling generator, the CPU default
generator and (on CUDA) the device's default generator, so that resuming on
the same device and world size continues bit for bit on the CPU.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import checkpoint as ckpt
from .distributed import World, all_reduce_mean_, any_rank, gather_to_writer
from ..model import JointVAE
from ..objective import Capacity, Objective
from ..progress import Progress, format_seconds
from .step import TrainStep, make_optimizer

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_RE = re.compile(r"^step-(\d+)\.pt$")
PLAIN_LINE_SECONDS = 10.0  # without a terminal, at most one progress line per this many seconds


class ResumeError(ValueError):
    """A run directory that cannot be resumed (no readable checkpoint, shapes that do not match)."""


def derive_seed(purpose: str, seed: int, index: int) -> int:
    """A 63-bit seed for one use of the run's seed: first 8 bytes of sha256("purpose:seed:index")."""
    digest = hashlib.sha256(f"{purpose}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The visiting order of epoch `epoch` (0-based): randperm(n) on `device`, int64 [n]."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed("batch-order", seed, epoch))
    return torch.randperm(n, generator=g, device=device)


class TrainImages:
    """The training split on the device. `batch(idx)` -> float [B, C, H, W] in [0, 1].

    source: a uint8 tensor [N, C, H, W] (moved to `device` once), or an object
    with `__len__` and a batch-gather method `gather(indices) -> uint8 [B, C, H, W]`
    (e.g. a lazily materialised dSprites; its `.to(device)` is used when it has one), called with
    indices on `device`.
    """

    def __init__(self, source, device: torch.device):
        self.device = torch.device(device)
        if isinstance(source, torch.Tensor):
            if source.dtype != torch.uint8 or source.dim() != 4:
                raise ValueError(f"training images must be uint8 [N, C, H, W], got {source.dtype} {tuple(source.shape)}")
            self.images = source.to(self.device)
            self._gather = lambda idx: self.images.index_select(0, idx)
            self.image_size = tuple(source.shape[1:])
            self.n = source.shape[0]
        elif hasattr(source, "gather") and hasattr(source, "__len__"):
            # e.g. data.dsprites.IndexedImages: move its (packed or procedural) state to the device once
            self.images = source.to(self.device) if callable(getattr(source, "to", None)) else source
            self._gather = self.images.gather
            self.n = len(source)
            shape = getattr(source, "image_size", None) or getattr(source, "shape", None)
            self.image_size = tuple(shape[-3:]) if shape is not None else tuple(self._gather(
                torch.zeros(1, dtype=torch.long, device=self.device)).shape[1:])
        else:
            raise TypeError(f"training images must be a uint8 tensor or have a gather(indices) method, got {type(source).__name__}")
        if self.n < 1:
            raise ValueError("the training split is empty")

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = self._gather(idx)
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        return x.to(torch.float32).div_(255.0)


def limit_images(source, limit: int, seed: int):
    """A seeded random subset of `limit` training images (in their original order), as a uint8 tensor."""
    n = source.shape[0] if isinstance(source, torch.Tensor) else len(source)
    if limit >= n:
        return source
    g = torch.Generator().manual_seed(derive_seed("limit", seed, 0))
    idx = torch.randperm(n, generator=g)[:limit].sort().values
    if isinstance(source, torch.Tensor):
        return source.index_select(0, idx)
    return source.gather(idx).cpu()


# ---------------------------------------------------------------- checkpoints in a run directory


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoint files, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_latest_checkpoint(run_dir, map_location="cpu") -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint of a run (path, raw dict); unreadable newer ones are skipped with a warning."""
    found = list_checkpoints(run_dir)
    if not found:
        raise ResumeError(f"{run_dir} has no checkpoint to resume from (looked for {Path(run_dir) / CHECKPOINT_DIR}/step-*.pt)")
    problems = []
    for _, path in reversed(found):
        try:
            obj = ckpt.read(path, map_location)
            if "training" not in obj:
                raise ckpt.CheckpointError(f"{path} holds no training state")
        except (ckpt.CheckpointError, OSError) as e:
            problems.append(str(e))
            warnings.warn(f"skipping unreadable checkpoint {path}: {e}", stacklevel=2)
            continue
        return path, obj
    raise ResumeError(f"no readable checkpoint in {run_dir}: " + "; ".join(problems))


def prune_checkpoints(run_dir, keep: int) -> None:
    """Delete all but the `keep` newest checkpoint files."""
    found = list_checkpoints(run_dir)
    for _, path in found[: max(0, len(found) - keep)]:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------- Ctrl-C


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


@dataclass(frozen=True)
class RunLength:
    """How a run walks its data: the global batch, each rank's share, steps per epoch, total optimizer steps."""

    global_batch: int
    local_batch: int
    steps_per_epoch: int
    total: int


def run_length(config: dict[str, Any], n_images: int, world_size: int) -> RunLength:
    """RunLength of `config` on `n_images` training images; ValueError for a batch that does not fit."""
    batch = config["batch_size"]
    if batch % world_size:
        raise ValueError(f"batch_size {batch} must be divisible by the number of processes {world_size}")
    steps_per_epoch = n_images // batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch} is larger than the training split ({n_images} images)")
    total = config["steps"] if config["steps"] is not None else config["epochs"] * steps_per_epoch
    return RunLength(batch, batch // world_size, steps_per_epoch, total)


def make_objective(config: dict[str, Any], model: JointVAE) -> Objective:
    """Eq. 7 with the config's capacities (a part without latent units has no capacity term)."""
    cont = Capacity(config["cont_min"], config["cont_max"], config["cont_iters"], config["cont_gamma"]) if model.cont else None
    disc = Capacity(config["disc_min"], config["disc_max"], config["disc_iters"], config["disc_gamma"]) if model.disc else None
    return Objective(tuple(model.disc), cont, disc, float(config["recon_weight"]),
                     config["disc_capacity_on"], config["disc_aggregate_weight"])


def temperature_at(config: dict[str, Any], step: int) -> float:
    """tau(step): fixed, or tau0 * (tau_final/tau0)^(step/N) floored at tau_final when annealing is on."""
    t0, tf, n = config["temperature"], config["temperature_final"], config["temperature_anneal_steps"]
    if tf is None:
        return t0
    return max(tf, t0 * (tf / t0) ** (step / n))


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
    sd = obj["model"]
    ours = model.state_dict()
    bad = [k for k in ours if k not in sd or tuple(sd[k].shape) != tuple(ours[k].shape)]
    extra = [k for k in sd if k not in ours]
    if bad or extra:
        raise ResumeError(f"checkpoint {path} does not match the model: mismatched or missing {bad}, unexpected {extra}")


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


def save_checkpoint(run_dir: Path, step: int, config: dict[str, Any], model: JointVAE,
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
        meta = {"preset": config["preset"], "dataset": config["dataset"], "step": step, "config": config}
        ckpt.save(checkpoint_path(run_dir, step), model, meta=meta, training=training)
        prune_checkpoints(run_dir, config["keep"])
    return None


# ---------------------------------------------------------------- the log


def _progress_status(record: dict[str, Any], length: RunLength) -> str:
    step, epochs = record["step"], math.ceil(length.total / length.steps_per_epoch)
    epoch = min((step - 1) // length.steps_per_epoch + 1, epochs)
    rate = record["steps_per_s"]
    left = (length.total - step) / rate if rate > 0 else float("nan")
    return (f"epoch {epoch}/{epochs} loss {record['loss']:.4g} recon {record['recon']:.4g} "
            f"KL_z {record['kl_cont_sum']:.3g} KL_c {record['kl_disc_sum']:.3g} C_z {record['c_cont']:.3g} "
            f"C_c {record['c_disc']:.3g} {record['img_per_s']:.0f} img/s left {format_seconds(left)}")


class TermLog:
    """The loss terms of each step, kept on the device; `flush` brings them to the host once (module docstring).

    Row layout: [loss, recon, capacity_loss, kl_cont (D), kl_disc (V), info_disc (V), agg_kl_disc (V),
    class_counts (sum K)].
    """

    def __init__(self, model: JointVAE, objective: Objective, world: World, length: RunLength, rows: int,
                 log_path: Path | None, progress: Progress):
        self.model, self.objective, self.world, self.length = model, objective, world, length
        self.columns = ["loss", "recon", "capacity_loss"] + [f"kl_cont[{i}]" for i in range(model.cont)] + \
            [f"{name}[{i}]" for name in ("kl_disc", "info_disc", "agg_kl_disc") for i in range(len(model.disc))] + \
            [f"class_counts[{j}]" for j in range(sum(model.disc))]
        self.buf = torch.zeros(rows, len(self.columns), device=world.device)
        self.rows = 0
        self.log_path = log_path if world.is_writer else None
        self.progress = progress
        self.t_start = self.t_last = time.perf_counter()
        self.last_record: dict[str, Any] | None = None
        self.step_modes: list[dict[str, Any]] = []  # [{"step": first step, "mode": step mode}] at each change

    def note_mode(self, step: int, mode: str) -> None:
        """The step mode of `step` (TrainStep.step_mode); a change is kept in step_modes."""
        if not self.step_modes or self.step_modes[-1]["mode"] != mode:
            self.step_modes.append({"step": step, "mode": mode})

    def append(self, terms) -> None:
        """Copy one step's LossTerms into the buffer (device work only)."""
        with torch.no_grad():
            torch.cat([terms.total.detach().reshape(1), terms.recon.detach().reshape(1),
                       terms.capacity_loss.detach().reshape(1), terms.kl_cont.detach().reshape(-1),
                       terms.kl_disc.detach().reshape(-1), terms.info_disc.reshape(-1),
                       terms.agg_kl_disc.reshape(-1), terms.class_counts.reshape(-1)], out=self.buf[self.rows])
        self.rows += 1

    def flush(self, step: int) -> str | None:
        """Mean of the buffered rows over steps and ranks -> log line and progress; the non-finite message, if any."""
        if self.rows == 0:
            return None
        vals = all_reduce_mean_(self.buf[: self.rows].clone(), self.world).cpu().double()
        bad = self._nonfinite(vals, step)
        if bad is None:
            self.last_record = self._record(vals.mean(dim=0), step)
            if self.log_path is not None:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(self.last_record) + "\n")
            self.progress.update(step - self.progress.done, _progress_status(self.last_record, self.length),
                                 force=step == self.length.total)
        self.rows = 0
        return bad

    def _nonfinite(self, vals: torch.Tensor, step: int) -> str | None:
        finite = torch.isfinite(vals)
        if bool(finite.all()):
            return None
        r = int((~finite.all(dim=1)).nonzero()[0])
        bad = [self.columns[j] for j in range(len(self.columns)) if not bool(finite[r, j])]
        shown = "+".join(f"{self.columns[j]}={vals[r, j].item()}" for j in range(min(3, len(self.columns))))
        return f"non-finite loss at step {step - self.rows + 1 + r}: {', '.join(bad)} ({shown})"

    def _record(self, mean: torch.Tensor, step: int) -> dict[str, Any]:
        now = time.perf_counter()
        d, v = self.model.cont, len(self.model.disc)
        kl_cont, kl_disc = mean[3 : 3 + d].tolist(), mean[3 + d : 3 + d + v].tolist()
        info, agg = mean[3 + d + v : 3 + d + 2 * v].tolist(), mean[3 + d + 2 * v : 3 + d + 3 * v].tolist()
        used = (mean[3 + d + 3 * v :] > 0).split(list(self.model.disc)) if v else ()
        c_cont, c_disc = self.objective.capacities(step)
        elapsed = max(now - self.t_last, 1e-9)
        record = {
            "step": step, "epoch": round(step / self.length.steps_per_epoch, 6),
            "loss": mean[0].item(), "recon": mean[1].item(), "capacity_loss": mean[2].item(),
            "kl_cont_sum": float(sum(kl_cont)), "kl_disc_sum": float(sum(kl_disc)),
            "kl_cont": kl_cont, "kl_disc": kl_disc, "info_disc": info, "agg_kl_disc": agg,
            "classes_in_use": [int(u.sum()) for u in used], "c_cont": c_cont, "c_disc": c_disc,
            "temperature": self.model.temperature,
            "img_per_s": self.rows * self.length.global_batch / elapsed, "steps_per_s": self.rows / elapsed,
            "elapsed_s": now - self.t_start, "steps_in_mean": self.rows,
            "step_mode": self.step_modes[-1]["mode"] if self.step_modes else None,
        }
        self.t_last = now
        return record


# ---------------------------------------------------------------- the loop


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
        self.epoch, self.perm = -1, None

    def batch(self, step: int) -> torch.Tensor:
        """This rank's batch of optimizer step `step` (1-based): its slice of the epoch's permutation."""
        epoch, pos = divmod(step - 1, self.length.steps_per_epoch)
        if epoch != self.epoch:
            self.perm = epoch_permutation(len(self.data), self.config["seed"], epoch, self.world.device)
            self.epoch = epoch
        lo = pos * self.length.global_batch + self.world.rank * self.length.local_batch
        return self.data.batch(self.perm[lo : lo + self.length.local_batch])

    def step(self, step: int) -> None:
        if self.config["temperature_final"] is not None:
            self.model.temperature = temperature_at(self.config, step)
        self.log.append(self.step_fn(self.batch(step), step))
        self.log.note_mode(step, self.step_fn.step_mode)

    def stopping(self, stop: StopRequest, at_log: bool) -> bool:
        """Whether a stop was requested (on any rank: agreed at log steps only, a collective there)."""
        if not self.world.distributed:
            return stop.requested
        return any_rank(stop.requested, self.world) if at_log else False

    def after_step(self, step: int, stop: StopRequest) -> tuple[str, str] | None:
        """Log, save and stop as due after `step`; (status, message) when the run ends here."""
        total = self.length.total
        at_save = step % self.config["save_every"] == 0 or step == total
        at_log = at_save or step % self.config["log_every"] == 0
        stopping = self.stopping(stop, at_log)
        bad = self.log.flush(step) if at_log or stopping else None
        if bad is None and (at_save or stopping):
            bad = save_checkpoint(self.run_dir, step, self.config, self.model, self.step_fn.optimizer,
                                  self.sampling, self.world)
        if bad is not None:
            return "nonfinite", bad
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
    config: dict[str, Any],
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
    optimizer = make_optimizer(model, config["lr"])
    objective = make_objective(config, model)
    sampling = torch.Generator(device=world.device)
    sampling.manual_seed(derive_seed("sampling", config["seed"], world.rank))
    start = restore(resume, model, optimizer, sampling, world, config["seed"]) if resume is not None else 0
    model.train()
    step_fn = TrainStep(model, optimizer, objective, forward=_forward_module(model, world), generator=sampling)
    progress = Progress(length.total, "step", unit="step", initial=start, every_s=PLAIN_LINE_SECONDS,
                        enable=None if show_progress and world.is_writer else False)
    log = TermLog(model, objective, world, length, config["log_every"], run_dir / "log.jsonl", progress)
    try:
        status, message, step = _Run(config, model, data, world, run_dir, length, step_fn, log, sampling).run(
            start, step_hook)
    finally:
        progress.close()
    if status == "nonfinite":
        kept = list_checkpoints(run_dir)
        message += (f"; training stopped. The last good checkpoint is {kept[-1][1]} (step {kept[-1][0]})"
                    if kept else "; training stopped before any checkpoint was written")
        return LoopResult(status, kept[-1][0] if kept else 0, message, log.last_record, log.step_modes)
    return LoopResult(status, step, message, log.last_record, log.step_modes)
