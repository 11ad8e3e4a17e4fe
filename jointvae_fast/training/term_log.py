"""The loop's record of training: loss terms kept on the device, brought to the host once per log line.

Each step only appends its loss terms to a device buffer; every --log-every steps (and at checkpoints, at
the end and on Ctrl-C) the buffer is copied to the host once ("a flush"): that is where the log line is
written (and, with --tensorboard, the same record's scalars: tensorboard_log.py), the progress display
updated, and non-finite values detected, naming the exact step and term.

Log (log.jsonl in the run directory, one JSON object per flush; loss terms and
KLs are means over the steps since the previous line, and over DDP ranks):
  step, epoch (step / steps_per_epoch), loss (the differentiated value:
  (recon_weight*recon + capacity_loss)/(H*W)), recon (nats per image),
  capacity_loss, kl_cont_sum (KL_z), kl_disc_sum (KL_c), kl_cont [D],
  kl_disc [V], info_disc [V] (the batch estimate of I(x; c_i) = KL_i - A_i),
  agg_kl_disc [V] (A_i = KL(mean_x q(c_i|x) || uniform)), info_cont [D] (the batch
  estimate of I(x; z_d) = KL_d - A_d), agg_kl_cont [D] (A_d = KL(N(m_d, s_d^2) || N(0, 1)),
  the batch's aggregate posterior moment-matched), info_cont_sum, classes_in_use [V]
  (classes that are the argmax of q(c_i|x) for at least one image of the
  line's batches, all steps since the previous line and all ranks),
  c_cont (C_z), c_disc (C_c), tc, index_code_mi, dim_kl (the batch estimates of the
  total correlation of the posterior, the index-code information and the dimension-wise KL,
  Chen et al. 2018, over the latents tc_on covers: objective.Objective, docs/total-correlation.md;
  in every training run, whatever tc_weight), temperature, img_per_s,
  steps_per_s, elapsed_s (since this process started training), steps_in_mean,
  step_mode (how the last step of the line ran: "cuda-graph" or "eager (why)",
  TrainStep.step_mode).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import storage
from ..model import JointVAE
from ..objective import Objective
from ..progress import Progress, format_seconds
from .batches import RunLength
from .distributed import World, all_reduce_mean_
from .tensorboard_log import TensorBoardLog

TC_FIELDS = ("tc", "index_code_mi", "dim_kl")  # the order of LossTerms.tc_terms
# Eq. 7's loophole (docs/experiments/dsprites-full-2026-12-03.md): from this step on, a log line whose KL_z is at
# least LOOPHOLE_MIN_KL nats of which under LOOPHOLE_INFO_FRACTION is information gets one warning per run.
LOOPHOLE_FROM_STEP, LOOPHOLE_MIN_KL, LOOPHOLE_INFO_FRACTION = 1000, 0.1, 0.01


def loophole_warning(record: dict[str, Any]) -> str | None:
    """The warning for a log record whose continuous KL carries almost no information, else None."""
    kl, info = record.get("kl_cont_sum", 0.0), record.get("info_cont_sum", 0.0)
    if record.get("step", 0) < LOOPHOLE_FROM_STEP or kl < LOOPHOLE_MIN_KL or info >= LOOPHOLE_INFO_FRACTION * kl:
        return None
    return (f"warning: at step {record['step']} the continuous code's KL_z = {kl:.3g} nats holds only "
            f"{max(info, 0.0):.2g} nats of information about the images: the capacity term is being met by giving "
            f"every image the same shifted posterior (a dead encoder; the reconstruction stays at the mean image). "
            f"Try another --seed, or --cont-capacity-on information (docs/information-variants.md)")


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
    class_counts (sum K), info_cont (D), agg_kl_cont (D), tc, index_code_mi, dim_kl (when objective.tracks_tc)].
    """

    def __init__(self, model: JointVAE, objective: Objective, world: World, length: RunLength, rows: int,
                 log_path: Path | None, progress: Progress, tensorboard: TensorBoardLog | None = None):
        self.model, self.objective, self.world, self.length = model, objective, world, length
        self.columns = ["loss", "recon", "capacity_loss"] + [f"kl_cont[{i}]" for i in range(model.cont)] + \
            [f"{name}[{i}]" for name in ("kl_disc", "info_disc", "agg_kl_disc") for i in range(len(model.disc))] + \
            [f"class_counts[{j}]" for j in range(sum(model.disc))] + \
            [f"{name}[{i}]" for name in ("info_cont", "agg_kl_cont") for i in range(model.cont)] + \
            (list(TC_FIELDS) if objective.tracks_tc else [])
        self.buf = torch.zeros(rows, len(self.columns), device=world.device)
        self.rows = 0
        self.log_path = log_path if world.is_writer else None
        self.progress = progress
        self.tensorboard = tensorboard if world.is_writer else None
        self.t_start = self.t_last = time.perf_counter()
        self.last_record: dict[str, Any] | None = None
        self.loophole_warned = False
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
                       terms.agg_kl_disc.reshape(-1), terms.class_counts.reshape(-1), terms.info_cont.reshape(-1),
                       terms.agg_kl_cont.reshape(-1), terms.tc_terms.reshape(-1)], out=self.buf[self.rows])
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
                with storage(self.log_path), open(self.log_path, "a") as f:
                    f.write(json.dumps(self.last_record) + "\n")
            if self.tensorboard is not None:
                self.tensorboard.scalars(self.last_record)
            warning = None if self.loophole_warned or not self.world.is_writer else loophole_warning(self.last_record)
            if warning is not None:
                self.loophole_warned = True
                self.progress.write(warning)
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
        k = 3 + d + 3 * v + sum(self.model.disc)
        used = (mean[3 + d + 3 * v : k] > 0).split(list(self.model.disc)) if v else ()
        info_cont, agg_cont = mean[k : k + d].tolist(), mean[k + d : k + 2 * d].tolist()
        c_cont, c_disc = self.objective.capacities(step)
        elapsed = max(now - self.t_last, 1e-9)
        record = {
            "step": step, "epoch": round(step / self.length.steps_per_epoch, 6),
            "loss": mean[0].item(), "recon": mean[1].item(), "capacity_loss": mean[2].item(),
            "kl_cont_sum": float(sum(kl_cont)), "kl_disc_sum": float(sum(kl_disc)),
            "kl_cont": kl_cont, "kl_disc": kl_disc, "info_disc": info, "agg_kl_disc": agg,
            "info_cont_sum": float(sum(info_cont)), "info_cont": info_cont, "agg_kl_cont": agg_cont,
            "classes_in_use": [int(u.sum()) for u in used], "c_cont": c_cont, "c_disc": c_disc,
            "temperature": self.model.temperature,
            "img_per_s": self.rows * self.length.global_batch / elapsed, "steps_per_s": self.rows / elapsed,
            "elapsed_s": now - self.t_start, "steps_in_mean": self.rows,
            "step_mode": self.step_modes[-1]["mode"] if self.step_modes else None,
        }
        if self.objective.tracks_tc:
            record.update(zip(TC_FIELDS, mean[k + 2 * d : k + 2 * d + len(TC_FIELDS)].tolist()))
        self.t_last = now
        return record
