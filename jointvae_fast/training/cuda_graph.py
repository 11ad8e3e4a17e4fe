"""A training step replayed as one CUDA graph (the CUDA fast path of `step.TrainStep`).

The first `warmup` calls run the eager step on a side stream (capture needs warmed-up kernels and
allocator pools); the next call captures forward, Eq. 7, backward and the optimizer step once; every
later call copies the batch into the graph's input, refills the capacities C_z(step), C_c(step) (device
scalars: `Objective.at_capacities`) and the temperature (a device scalar the model's fused op reads while
the graph runs: it stands in for the float `model.temperature` during capture) and replays. The sampling
noise advances through the generator's graph-safe Philox state, so each replay draws fresh noise as the
eager step would. With precision bf16 the autocast region is entered inside the capture (casts and bf16
kernels are recorded like any other; no cast cache outlives it). The graph is dropped for good (the caller runs eagerly from then on, after one warning)
when capture fails, or when the batch shape, dtype or device, the train/eval mode or the learning rate
changes.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..model import JointVAE
from ..objective import LossTerms, Objective


@dataclass(frozen=True)
class StepParts:
    """What a captured step needs of its owner: the pieces it records, and the eager step and forward it calls
    (`eager(x, step)` -> LossTerms; `run_forward(x)` -> the model's output at the step's precision)."""
    model: JointVAE
    optimizer: torch.optim.Optimizer
    objective: Objective
    generator: torch.Generator | None
    device: torch.device
    eager: Callable[[torch.Tensor, int], LossTerms]
    run_forward: Callable[[torch.Tensor], object]


class CapturedStep:
    """`captured(x, step)` -> LossTerms, or None when the caller must run the eager step itself.
    `replayed` says whether the last returned terms came from a graph replay (else an eager warm-up step)."""

    def __init__(self, parts: StepParts, warmup: int):
        self.parts = parts
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None
        self.replayed = False

    def __call__(self, x: torch.Tensor, step: int) -> LossTerms | None:
        self.replayed = False
        if self.failed is not None:
            return None
        self.calls += 1
        if self.graph is not None:
            if self._key(x) == self.key:
                return self._replay(x, step)
            self._drop("CUDA graph dropped: the batch shape, learning rate or train mode changed")
            return None
        if self.calls > self.warmup:
            return self._replay(x, step) if self._capture(x) else None
        return self._side_stream_step(x, step)

    def _side_stream_step(self, x: torch.Tensor, step: int) -> LossTerms:
        """An eager step on a side stream (warm-up before capture, as CUDA graph capture requires)."""
        device = self.parts.device
        main = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            terms = self.parts.eager(x, step)
        main.wait_stream(side)
        return terms

    def _key(self, x: torch.Tensor):
        s = self.parts
        return (tuple(x.shape), x.dtype, x.device, bool(s.model.training),
                tuple(float(g["lr"]) for g in s.optimizer.param_groups))

    def why_eager(self) -> str:
        """Why the last step ran eagerly: the failure, or the warm-up before capture."""
        return self.failed if self.failed is not None else f"warm-up, CUDA graph capture after {self.warmup} steps"

    def _drop(self, why: str) -> None:
        """Eager from now on; one warning (a graph is dropped or fails at most once)."""
        self.graph = None
        self.failed = why
        warnings.warn(f"jointvae_fast: {why}; training continues with eager steps", RuntimeWarning, stacklevel=4)
        if self.parts.device.type == "cuda":
            torch.cuda.synchronize(self.parts.device)
        self.parts.optimizer.zero_grad(set_to_none=True)

    def _capture(self, x: torch.Tensor) -> bool:
        """Capture forward + loss + backward + optimizer step; False (and eager from now on) if it fails."""
        try:
            self._record(x)
            return True
        except RuntimeError as e:  # capture unsupported here: run eagerly from now on
            self._drop(f"CUDA graph capture failed: {e}")
            return False

    def _record(self, x: torch.Tensor) -> None:
        s = self.parts
        self.key = self._key(x)
        self._static_x = torch.empty_like(x)
        self._static_x.copy_(x)
        self._c_cont = torch.zeros((), dtype=torch.float32, device=s.device)
        self._c_disc = torch.zeros((), dtype=torch.float32, device=s.device)
        self._tau = torch.zeros((), dtype=next(s.model.parameters()).dtype, device=s.device)
        self._tau.fill_(float(s.model.temperature))
        torch.cuda.synchronize(s.device)
        s.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        if s.generator is not None:
            graph.register_generator_state(s.generator)
        with torch.cuda.graph(graph), _temperature(s.model, self._tau):
            out = s.run_forward(self._static_x)  # autocast (bf16) inside the captured region
            terms = s.objective.at_capacities(self._static_x, out, self._c_cont, self._c_disc)
            terms.total.backward()
            s.optimizer.step()
        self._outputs = tuple(t.detach() for t in terms[:5])  # total, recon, capacity_loss, kl_cont, kl_disc
        self._diagnostics = (terms.info_disc, terms.agg_kl_disc, terms.class_counts, terms.info_cont,
                             terms.agg_kl_cont, terms.tc_terms)
        self.graph = graph

    def _replay(self, x: torch.Tensor, step: int) -> LossTerms:
        self.replayed = True
        c_cont, c_disc = self.parts.objective.capacities(step)
        self._static_x.copy_(x, non_blocking=True)
        self._c_cont.fill_(c_cont)
        self._c_disc.fill_(c_disc)
        self._tau.fill_(float(self.parts.model.temperature))
        self.graph.replay()
        return LossTerms(*self._outputs, c_cont, c_disc, *self._diagnostics)


@contextlib.contextmanager
def _temperature(model, tau: torch.Tensor):
    """model.temperature is the device scalar `tau` inside the block (the float again afterwards)."""
    value = model.temperature
    model.temperature = tau
    try:
        yield
    finally:
        model.temperature = value
