"""Whether a training run fits in its device's memory, checked before anything is allocated.

Estimate (bytes, float32): 4 P (weights, gradients, Adam's two moments; P from the model built on the meta
device, which allocates nothing) + 3 B A (activations kept for the backward, their gradients and workspace;
A = per-image elements of every layer output and of the latent op, from one meta-device forward) + the
training images when they are copied to a GPU. An estimate above the memory the device has available is a
UserInputError naming the settings to lower.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..devices import available_memory
from ..errors import UserInputError
from ..model import JointVAE

FLOAT_BYTES = 4


def _meta_model(img_size, cont: int, disc: Sequence[int]) -> JointVAE:
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
