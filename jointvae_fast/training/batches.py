"""The training data on the device and the order a run visits it.

The training images stay on the training device as uint8 [N, C, H, W] (or
behind a dataset's own batch-gather method); every batch is gathered there and
converted to float in [0, 1] (x / 255). Epoch e visits the images in the order
torch.randperm(N) drawn from a generator seeded with
derive_seed("batch-order", seed, e), the last incomplete batch dropped. Step s
(1-based) of the run reads positions [(s-1) % steps_per_epoch * B, ... + B) of
its epoch's permutation, B the global batch; DDP rank r of R takes the r-th of
R equal slices of those positions (a distinct shard). So the batch order is a
function of (seed, step) alone: resume needs no saved batch-order state.

A streamed source (`streamed = True`: your own data, a memory map that may be
larger than memory, data.own.MappedImages) stays where it is: its batches are
gathered on the CPU ahead of the step by a background thread (prefetch.py) and
copied to the device without blocking. Its permutations are drawn on the CPU,
so a streamed run visits the same images in the same order on every device
(on the CPU, the same order as the resident path).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..errors import UserInputError
from .config import RunConfig
from .prefetch import Prefetcher


def derive_seed(purpose: str, seed: int, index: int) -> int:
    """A 63-bit seed for one use of the run's seed: first 8 bytes of sha256("purpose:seed:index")."""
    digest = hashlib.sha256(f"{purpose}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The visiting order of epoch `epoch` (0-based): randperm(n) on `device`, int64 [n]."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed("batch-order", seed, epoch))
    return torch.randperm(n, generator=g, device=device)


@dataclass(frozen=True)
class BatchOrder:
    """Which positions of an n-image split optimizer step s reads on DDP rank `rank` (module docstring)."""

    n: int
    seed: int
    steps_per_epoch: int
    global_batch: int
    local_batch: int
    rank: int


class StepIndices:
    """`indices(step)` -> int64 [local_batch] positions of `order` on `device`; keeps one epoch's permutation."""

    def __init__(self, order: BatchOrder, device: torch.device):
        self.order, self.device = order, torch.device(device)
        self.epoch, self.perm = -1, None

    def __call__(self, step: int) -> torch.Tensor:
        o = self.order
        epoch, pos = divmod(step - 1, o.steps_per_epoch)
        if epoch != self.epoch:
            self.perm = epoch_permutation(o.n, o.seed, epoch, self.device)
            self.epoch = epoch
        lo = pos * o.global_batch + o.rank * o.local_batch
        return self.perm[lo : lo + o.local_batch]


class TrainImages:
    """The training split on the device. `batch(idx)` -> float [B, C, H, W] in [0, 1]; after `plan(order,
    first, last)`, `batch_at(step)` -> the batch of optimizer step `step`.

    source: a uint8 tensor [N, C, H, W] (moved to `device` once), or an object
    with `__len__` and a batch-gather method `gather(indices) -> uint8 [B, C, H, W]`
    (e.g. a lazily materialised dSprites; its `.to(device)` is used when it has one), called with
    indices on `device`; or a streamed one (`streamed = True`), gathered on the CPU by a Prefetcher.
    """

    def __init__(self, source, device: torch.device):
        self.device = torch.device(device)
        self.streamed = bool(getattr(source, "streamed", False))
        self._indices = self._prefetch = None
        if self.streamed and hasattr(source, "gather") and hasattr(source, "__len__"):
            self.images = source
            self._gather = source.gather
            self.n = len(source)
            self.image_size = tuple(source.image_size)
        elif isinstance(source, torch.Tensor):
            if source.dtype != torch.uint8 or source.dim() != 4:
                raise UserInputError(f"training images must be uint8 [N, C, H, W], got {source.dtype} "
                                     f"{tuple(source.shape)}")
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
            raise UserInputError(f"training images must be a uint8 tensor or have a gather(indices) method, "
                                 f"got {type(source).__name__}")
        if self.n < 1:
            raise UserInputError("the training split is empty")

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self._to_float(self._gather(idx))

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        return x.to(torch.float32).div_(255.0)

    def plan(self, order: BatchOrder, first_step: int, last_step: int) -> None:
        """Visit the images in `order` from optimizer step `first_step` to `last_step` (batch_at)."""
        self.close()
        if self.streamed:
            self._prefetch = Prefetcher(self.images, StepIndices(order, torch.device("cpu")), first_step,
                                        last_step, self.device)
        else:
            self._indices = StepIndices(order, self.device)

    def batch_at(self, step: int) -> torch.Tensor:
        """float [local_batch, C, H, W] in [0, 1] of optimizer step `step` of the planned order, on the device."""
        if self._prefetch is not None:
            x = self._prefetch.get(step)  # the CPU: already float (prefetch.as_float); a GPU: pinned uint8
            return x if x.dtype == torch.float32 else self._to_float(x)
        return self.batch(self._indices(step))

    def close(self) -> None:
        """Stop the prefetch thread of a streamed source (if any)."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None


def limit_images(source, limit: int, seed: int):
    """A seeded random subset of `limit` training images (in their original order), as a uint8 tensor (a source
    with a `subset` method: its subset)."""
    n = source.shape[0] if isinstance(source, torch.Tensor) else len(source)
    if limit >= n:
        return source
    g = torch.Generator().manual_seed(derive_seed("limit", seed, 0))
    idx = torch.randperm(n, generator=g)[:limit].sort().values
    if isinstance(source, torch.Tensor):
        return source.index_select(0, idx)
    if callable(getattr(source, "subset", None)):  # a streamed source stays streamed
        return source.subset(idx)
    return source.gather(idx).cpu()


@dataclass(frozen=True)
class RunLength:
    """How a run walks its data: the global batch, each rank's share, steps per epoch, total optimizer steps."""

    global_batch: int
    local_batch: int
    steps_per_epoch: int
    total: int


def run_length(config: RunConfig, n_images: int, world_size: int) -> RunLength:
    """RunLength of `config` on `n_images` training images; ValueError for a batch that does not fit."""
    batch = config.batch_size
    if batch % world_size:
        raise UserInputError(f"batch_size {batch} must be divisible by the number of processes {world_size}")
    steps_per_epoch = n_images // batch
    if steps_per_epoch < 1:
        raise UserInputError(f"batch_size {batch} is larger than the training split ({n_images} images): "
                             "lower --batch-size or raise --limit")
    total = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    return RunLength(batch, batch // world_size, steps_per_epoch, total)
