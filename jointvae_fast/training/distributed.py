"""torch.distributed setup for `torchrun --nproc_per_node K -m jointvae_fast.train ...`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; when
WORLD_SIZE > 1 the process group uses NCCL on CUDA devices and gloo on the
CPU, and each rank trains on device cuda:LOCAL_RANK (or the CPU). Rank 0 is
the only writer of logs, checkpoints and images. Without torchrun everything
here is a no-op (a world of one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UserInputError
from ..devices import check_device


@dataclass(frozen=True)
class World:
    """Where this process sits: rank in [0, size), its device, and whether it writes files."""

    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserInputError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str | None = None) -> World:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    device: "cpu", "cuda", "cuda:N", ... or None for cuda-if-available. Under
    torchrun a bare "cuda" becomes cuda:LOCAL_RANK.
    """
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    dev = check_device(device, local_rank, size > 1)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=size, **kwargs)
    return World(rank, size, local_rank, dev)


def wait_for_all(world: World) -> None:
    """Every rank reaches this point before any goes on (a no-op in a world of one). Called before a
    normal exit: a rank that tore its process group down while rank 0 was still finishing (the last
    checkpoint's gather, the images) sometimes aborted with "terminate called without an active exception"."""
    if world.distributed and dist.is_initialized():
        dist.barrier()


def cleanup(world: World) -> None:
    """Leave the process group (if this process joined one)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """In place: the mean of `tensor` over ranks (identity in a world of one)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world.size)
    return tensor


def any_rank(flag: bool, world: World) -> bool:
    """True when `flag` is true on any rank (a collective: every rank must call it)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_from_writer(obj: Any, world: World) -> Any:
    """rank 0's `obj` on every rank (pickled; small Python objects only)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_writer(obj: Any, world: World) -> list[Any] | None:
    """[obj of rank 0, ..., obj of rank size-1] on rank 0, None elsewhere (a collective)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.is_writer else None
    dist.gather_object(obj, out, dst=0)
    return out

