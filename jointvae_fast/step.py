"""One optimisation step of Joint-VAE: forward, Eq. 7, backward, optimizer.

`TrainStep` is what the training loop calls every step; it never syncs with
the host (the loss terms come back as tensors; the loop reads them every
--log-every steps).
"""
from __future__ import annotations

import torch

from .model import JointVAE
from .objective import LossTerms, Objective


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the paper's settings (torch defaults besides lr)."""
    return torch.optim.Adam(model.parameters(), lr=lr)


class TrainStep:
    """step(x, step_index) -> LossTerms; x [B, C, H, W] float in [0, 1] on the model's device.

    `forward` is the module called for the forward pass (the model itself, or a
    DistributedDataParallel wrapper of it); `generator` drives the sampling noise.
    """

    def __init__(
        self,
        model: JointVAE,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        forward: torch.nn.Module | None = None,
        generator: torch.Generator | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.objective = objective
        self.forward = forward if forward is not None else model
        self.generator = generator

    def __call__(self, x: torch.Tensor, step: int) -> LossTerms:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward(x, self.generator)
        terms = self.objective(x, out, step)
        terms.total.backward()
        self.optimizer.step()
        return terms
