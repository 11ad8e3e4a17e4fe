"""TensorBoard output of a run (--tensorboard): the log's scalars and the first-look grids, in RUN_DIR/tensorboard/.

Scalars are the values of each log.jsonl record (term_log.py), nothing recomputed, at the record's step
(stored by TensorBoard as float32). Tags:
  loss/total, loss/recon, loss/capacity            loss, recon, capacity_loss
  capacity/c_cont, capacity/kl_cont_sum            C_z and KL_z
  capacity/info_cont_sum                           info_cont_sum (the batch information bound of KL_z)
  capacity/c_disc, capacity/kl_disc_sum            C_c and KL_c
  kl_cont/z{d}, info_cont/z{d}, agg_kl_cont/z{d}   kl_cont[d], info_cont[d], agg_kl_cont[d], one per unit
  kl_disc/c{i}, info_disc/c{i}, agg_kl_disc/c{i},  kl_disc[i], info_disc[i], agg_kl_disc[i],
  classes_in_use/c{i}                              classes_in_use[i], one per discrete variable
  temperature, speed/img_per_s, speed/steps_per_s
  tc/tc, tc/index_code_mi, tc/dim_kl                tc, index_code_mi, dim_kl (when the record has them)
Images images/samples and images/traversal (first_look.py's grids, laid out as samples.png and traversal.png)
every tensorboard_images_every steps and at the last step.

A resumed run hides the events after its checkpoint's step (SummaryWriter's purge_step), as the log is cut
back there. The tensorboard package is optional: require_tensorboard is the one-line error when it is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserInputError, storage
from ..grids.images import image_grid
from ..model import JointVAE
from ..store.run_layout import TENSORBOARD_DIR
from .first_look import first_look_grids

SCALARS = {  # record key -> tag
    "loss": "loss/total", "recon": "loss/recon", "capacity_loss": "loss/capacity",
    "c_cont": "capacity/c_cont", "kl_cont_sum": "capacity/kl_cont_sum",
    "c_disc": "capacity/c_disc", "kl_disc_sum": "capacity/kl_disc_sum", "info_cont_sum": "capacity/info_cont_sum",
    "temperature": "temperature", "img_per_s": "speed/img_per_s", "steps_per_s": "speed/steps_per_s",
}
OPTIONAL_SCALARS = {"tc": "tc/tc", "index_code_mi": "tc/index_code_mi", "dim_kl": "tc/dim_kl"}
PER_VARIABLE = {"kl_cont": "z", "info_cont": "z", "agg_kl_cont": "z", "kl_disc": "c", "info_disc": "c",
                "agg_kl_disc": "c", "classes_in_use": "c"}


def require_tensorboard():
    """torch's SummaryWriter class, or a UserInputError saying how to install the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"--tensorboard needs the tensorboard package ({why}): pip install tensorboard, "
                             "or install jointvae_fast with its extra: pip install -e '.[tensorboard]'") from None
    return SummaryWriter


def scalar_items(record: dict[str, Any]) -> list[tuple[str, float]]:
    """(tag, value) of every scalar of a log record (module docstring)."""
    items = [(tag, float(record[key])) for key, tag in SCALARS.items()]
    items += [(tag, float(record[key])) for key, tag in OPTIONAL_SCALARS.items() if key in record]
    for key, prefix in PER_VARIABLE.items():
        items += [(f"{key}/{prefix}{i}", float(v)) for i, v in enumerate(record[key])]
    return items


class TensorBoardLog:
    """A SummaryWriter on RUN_DIR/tensorboard for a run that starts after step `start`. Rank 0 only."""

    def __init__(self, run_dir: Path, start: int, seed: int, images_every: int, total: int):
        writer = require_tensorboard()
        self.dir = Path(run_dir) / TENSORBOARD_DIR
        with storage(self.dir, "create"):
            self.writer = writer(log_dir=str(self.dir), purge_step=start + 1 if start else None)
        self.seed, self.images_every, self.total = seed, images_every, total

    def scalars(self, record: dict[str, Any]) -> None:
        """The record's scalars at its step."""
        with storage(self.dir):
            for tag, value in scalar_items(record):
                self.writer.add_scalar(tag, value, record["step"])

    def images_due(self, step: int) -> bool:
        return step % self.images_every == 0 or step == self.total

    def images(self, model: JointVAE, step: int, record: dict[str, Any] | None) -> None:
        """The first-look grids at `step`, the traversal's units ordered by the record's kl_cont."""
        grids = first_look_grids(model, self.seed, record["kl_cont"] if record else None)
        with storage(self.dir):
            for name, grid in zip(("samples", "traversal"), grids):
                self.writer.add_image(f"images/{name}", image_grid(grid.images, nrow=grid.nrow), step,
                                      dataformats="HWC")

    def close(self) -> None:
        with storage(self.dir):
            self.writer.close()
