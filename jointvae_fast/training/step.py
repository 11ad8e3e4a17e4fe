"""One optimisation step of Joint-VAE: forward, Eq. 7, backward, optimizer -- the fast path.

`TrainStep` is what the training loop calls every step; it never syncs with
the host (the loss terms come back as tensors; the loop reads them every
--log-every steps). The math is always the same (the model's forward with the
fused latent ops, BCE with logits, Eq. 7, Adam); what the fast path changes is
how it runs, and each part can be switched off:

- CPU, `channels_last` (default on): the model's 4-D weights and the input use
  the NHWC layout oneDNN's convolutions and transposed convolutions prefer,
  which removes the NCHW <-> blocked reorders around every convolution.
  Changes only the summation order inside the convolutions (float rounding).
- `make_optimizer`: the fused Adam kernel (one kernel over all parameters; on
  CUDA also capturable, the step count living on the device). Same update rule
  as torch.optim.Adam's default path.
- CUDA, `cuda_graph` (default on when the optimizer is capturable, the forward
  is the model itself and not a DDP wrapper): the first `warmup` steps run
  eagerly on a side stream; then forward, loss, backward and optimizer step are
  captured once in a CUDA graph and every later step is one copy of the batch
  plus one graph replay. The capacities C(step) and the temperature enter the
  graph as device scalars that are refilled each step (`Objective.at_capacities`;
  the fused op reads the temperature on the device), so capacity ramps and
  temperature annealing keep the graph; the sampling noise advances through the
  generator's graph-safe Philox state, so each replay draws fresh noise exactly
  as the eager step would. The graph is dropped for good (and the step runs
  eagerly, with a warning) when capture fails, or when the batch shape or the
  learning rate changes or the model is switched to eval mode. The capture and
  replay live in `cuda_graph.CapturedStep`; `TrainStep.step_mode` says which
  path ran and why.

- `precision` ("fp32" default, or "bf16"): the forward pass under bfloat16 autocast (precision.py);
  parameters, gradients, Adam state, the latent ops' inputs and the loss stay float32. In a CUDA graph
  the autocast region is captured with the forward.

The process-wide CPU allocator setting is not made here: the training CLI
makes it at its start (`allocator.tune_cpu_allocator`).

Measured effects are in docs/performance.md. What did not pay on the 2-core CPU
(torch.compile of the step, foreach vs. fused Adam) is left out.
"""
from __future__ import annotations

import torch

from ..model import JointVAE
from ..objective import LossTerms, Objective
from .cuda_graph import CapturedStep, StepParts
from .precision import autocast, check_precision


def make_optimizer(model: torch.nn.Module, lr: float, *, fused: bool | None = None) -> torch.optim.Optimizer:
    """Adam with the paper's settings (torch defaults besides lr).

    fused=None (default): the fused Adam kernel when every parameter is a float tensor on the CPU or CUDA
    (on CUDA also capturable=True, which TrainStep's CUDA graph needs); fused=False: torch's default
    implementation. Both compute the same update.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    params = list(model.parameters())
    if fused is None:
        fused = bool(params) and all(
            p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params
        )
    if not fused:
        return torch.optim.Adam(params, lr=lr)
    on_cuda = all(p.device.type == "cuda" for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True, capturable=on_cuda)


class TrainStep:
    """step(x, step_index) -> LossTerms; x [B, C, H, W] float in [0, 1] on the model's device.

    `forward` is the module called for the forward pass (the model itself, or a
    DistributedDataParallel wrapper of it); `generator` drives the sampling noise.
    Keyword options (module docstring): channels_last (None: on for a CPU model), cuda_graph (None: on
    when possible on CUDA), warmup (eager steps before capture), precision ("fp32" or "bf16").
    With a CUDA graph the returned tensors are the graph's outputs: read them before the next call.
    `mode` says how the last step ran: "eager" or "cuda-graph"; `step_mode` the same with the reason for an
    eager step ("eager (cpu)", "eager (warm-up ...)", "eager (CUDA graph capture failed: ...)"...);
    `graph_failure` why the graph was dropped (None while it is in use or was never wanted).
    """

    def __init__(
        self,
        model: JointVAE,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        forward: torch.nn.Module | None = None,
        generator: torch.Generator | None = None,
        *,
        channels_last: bool | None = None,
        cuda_graph: bool | None = None,
        warmup: int = 3,
        precision: str = "fp32",
    ):
        self.model = model
        self.optimizer = optimizer
        self.objective = objective
        self.forward = forward if forward is not None else model
        self.generator = generator
        self.mode = "eager"
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        check_precision(precision, self.device)
        self.precision = precision
        if channels_last is None:
            channels_last = self.device.type == "cpu" and self.forward is model
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self._to_channels_last()
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
        self.warmup = warmup
        self.cuda_graph = self._want_graph(cuda_graph)
        parts = StepParts(model, optimizer, objective, generator, self.device, self.eager, self.run_forward)
        self._graph = CapturedStep(parts, warmup) if self.cuda_graph else None

    def _want_graph(self, cuda_graph: bool | None) -> bool:
        """Whether to use a CUDA graph; sets `eager_reason` (why not) when not."""
        why_not = (
            self.device.type if self.device.type != "cuda"
            else "the forward is a DDP wrapper" if self.forward is not self.model
            else "the optimizer is not capturable" if not all(g.get("capturable", False) for g in self.optimizer.param_groups)
            else None
        )
        if cuda_graph and why_not is not None:
            raise ValueError(
                "cuda_graph=True needs a CUDA model, forward=None (no DDP wrapper) and a capturable optimizer "
                f"(make_optimizer gives one); here {why_not}"
            )
        self.eager_reason = why_not if why_not is not None or cuda_graph is None else "cuda_graph=False"
        return why_not is None and cuda_graph is not False

    @property
    def graph_failure(self) -> str | None:
        return self._graph.failed if self._graph is not None else None

    @property
    def step_mode(self) -> str:
        """How the last step ran, and why: "cuda-graph", or "eager (<why>)" (for log.jsonl and run.json)."""
        if self.mode == "cuda-graph":
            return "cuda-graph"
        return f"eager ({self._graph.why_eager() if self._graph is not None else self.eager_reason})"

    def _to_channels_last(self) -> None:
        """Model's 4-D weights (and any Adam state of them) to NHWC, in place: Parameter objects are kept."""
        self.model.to(memory_format=torch.channels_last)
        for p in self.model.parameters():
            state = self.optimizer.state.get(p)
            if not state or p.dim() != 4:
                continue
            for k, v in list(state.items()):
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p).copy_(v)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The batch in the layout the model's weights use."""
        if self.channels_last and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, x: torch.Tensor, step: int) -> LossTerms:
        if self._graph is not None:
            terms = self._graph(x, step)  # None: not captured (yet, or any more); run eagerly
            if terms is not None:
                self.mode = "cuda-graph" if self._graph.replayed else "eager"
                return terms
        return self.eager(x, step)

    def run_forward(self, x: torch.Tensor):
        """The model's forward at this step's precision (the loss is formed outside, in float32)."""
        with autocast(self.precision, self.device):
            return self.forward(x, self.generator)

    def eager(self, x: torch.Tensor, step: int) -> LossTerms:
        """zero_grad; forward; Eq. 7 at `step`; backward; optimizer step."""
        self.mode = "eager"
        x = self.prepare(x)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.run_forward(x)
        terms = self.objective(x, out, step)
        terms.total.backward()
        self.optimizer.step()
        return terms
