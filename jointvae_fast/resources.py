"""Checks of the machine against the settings, before anything is allocated: the device exists, the
latent fits the fused ops' limits, and the model fits in the device's memory.

Limits of the fused ops (the same for every backend: the composite path checks them too; checked at
configuration time, so a model valid on the CPU never fails at its first CUDA step). The C++ sources state
them as kMaxDiscVars (kernels/include/jointvae/latent_math.h) and the class-count check of
kernels/torch/checks.h; tests/test_limits.py reads those sources to keep the numbers equal:
    MAX_DISC_VARS = 64        discrete variables V
    MAX_CLASSES = 2**24       classes K_i of one discrete variable

Memory estimate (bytes, float32): 4 P (weights, gradients, Adam's two moments; P from the model built
on the meta device, which allocates nothing) + 3 B A (activations kept for the backward, their
gradients and workspace; A = per-image elements of every layer output and of the latent op, from one
meta-device forward) + the training images when they are copied to a GPU. An estimate above the
memory the device has available is a UserInputError naming the settings to lower.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from .errors import UserInputError

MAX_DISC_VARS = 64
MAX_CLASSES = 1 << 24
FLOAT_BYTES = 4


def check_latent_limits(disc: Sequence[int]) -> None:
    """UserInputError unless V <= MAX_DISC_VARS and every K_i <= MAX_CLASSES."""
    if len(disc) > MAX_DISC_VARS:
        raise UserInputError(f"disc has {len(disc)} discrete variables; the fused ops support at most {MAX_DISC_VARS}")
    big = [k for k in disc if k > MAX_CLASSES]
    if big:
        raise UserInputError(f"disc has a class count of {big[0]}; at most {MAX_CLASSES} classes per discrete variable "
                             "are supported")


def check_device(name: str | None, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The torch.device `name` names (None: cuda if available, else cpu), or UserInputError when it is not a
    device this machine has (junk text, a GPU index beyond the GPUs present, a type other than cpu/cuda)."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserInputError(f"device {name!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise UserInputError(f"device {name!r}: the CPU has no index; use cpu")
        return torch.device("cpu")
    if dev.type != "cuda":
        raise UserInputError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserInputError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    count = torch.cuda.device_count()
    index = dev.index if dev.index is not None else (local_rank if distributed else torch.cuda.current_device())
    if not 0 <= index < count:
        raise UserInputError(f"device {name!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: free GPU memory, or the CPU's MemAvailable; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _meta_model(img_size, cont: int, disc: Sequence[int]):
    from .model import JointVAE

    with torch.device("meta"):
        return JointVAE(img_size, cont, list(disc))


def training_memory(img_size, cont: int, disc: Sequence[int], batch: int) -> tuple[int, int, int]:
    """(total, parameter part, activation part) of the estimate in the module docstring, in bytes."""
    model = _meta_model(img_size, cont, disc)
    params = sum(p.numel() for p in model.parameters())
    elements = [0]

    def count(module, inputs, output):
        if not list(module.children()) and isinstance(output, torch.Tensor):
            elements[0] += output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *img_size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    latent_op = 4 * (cont + sum(disc))  # latent, noise and the op's saved intermediates
    per_image = elements[0] + latent_op + int(torch.Size(img_size).numel())
    param_bytes = 4 * params * FLOAT_BYTES
    act_bytes = 3 * batch * per_image * FLOAT_BYTES
    return param_bytes + act_bytes, param_bytes, act_bytes


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"


def check_memory(img_size, cont: int, disc: Sequence[int], batch: int, device: torch.device,
                 data_bytes: int = 0) -> None:
    """UserInputError when the estimate (plus `data_bytes` copied to the device) exceeds its available memory."""
    total, param_bytes, act_bytes = training_memory(img_size, cont, disc, batch)
    total += data_bytes
    have = available_memory(device)
    if have is None or total <= have:
        return
    raise UserInputError(
        f"the model needs about {_gib(total)} on {device} ({_gib(param_bytes)} for weights, gradients and Adam state "
        f"with cont={cont}, disc of {len(disc)} variable(s) / {sum(disc)} classes; {_gib(act_bytes)} of activations "
        f"at batch size {batch}{f'; {_gib(data_bytes)} of training images' if data_bytes else ''}) but only "
        f"{_gib(have)} of memory is available: lower --cont, --disc or --batch-size"
    )
