"""One optimisation step of Joint-VAE: forward, Eq. 7, backward, optimizer -- the fast path.

`TrainStep` is what the training loop calls every step; it never syncs with
the host (the loss terms come back as tensors; the loop reads them every
--log-every steps). The math is always the same (the model's forward with the
fused latent ops, BCE with logits, Eq. 7, Adam); what the fast path changes is
how it runs, and each part can be switched off:

- CPU, `tune_allocator` (default on): glibc's malloc hands every block over
  128 KiB..32 MiB back to the kernel when it is freed, so each step's
  activations and gradients come from fresh mmaps and pay a page fault per
  4 KiB page on first touch. `tune_cpu_allocator()` raises the mmap and trim
  thresholds (mallopt) so freed blocks stay in the heap and are reused.
  Process-wide, once; no effect on results.
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
  plus one graph replay. The capacities C(step) enter the graph as device
  scalars that are refilled each step (see `graph_loss`); the sampling noise
  advances through the generator's graph-safe Philox state, so each replay draws
  fresh noise exactly as the eager step would. The graph is dropped for good (and
  the step runs eagerly) when the batch shape, the temperature or the learning
  rate changes, or when the model is switched to eval mode.

Measured effects are in docs/performance.md. What did not pay on the 2-core CPU
(torch.compile of the step, foreach vs. fused Adam) is left out.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

from ..model import JointVAE
from ..objective import LossTerms, Objective, bernoulli_nll, max_discrete_capacity

_ALLOCATOR_TUNED: bool | None = None
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit (HEAP_MAX / 2)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def tune_cpu_allocator() -> bool:
    """Keep freed blocks up to 32 MiB in glibc's heap instead of unmapping them; True when applied.

    mallopt(M_MMAP_THRESHOLD, 32 MiB) and mallopt(M_TRIM_THRESHOLD, 1 GiB), once per process, Linux/glibc
    only (elsewhere, or if libc cannot be found, nothing happens and False is returned).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                ok = (mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1) and ok
                _ALLOCATOR_TUNED = ok
            except (OSError, AttributeError):
                _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


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


def graph_loss(objective: Objective, x: torch.Tensor, out, c_cont: torch.Tensor, c_disc: torch.Tensor):
    """Eq. 7 with the capacities as device scalars (so a captured graph reads their current values).

    Same terms as `objective(x, out, step)` when c_cont, c_disc hold C_z(step), C_c(step): the fused op
    gives the per-unit KLs (its own capacity term switched off) and the capacity terms are formed here.
    Returns (total, recon, capacity_loss, kl_cont, kl_disc) tensors.
    """
    from .. import ops

    _, kl_cont, kl_disc = ops.kl_capacity_loss(out.mu, out.logvar, out.logits, objective.disc_dims, 0.0, 0.0, 0.0, 0.0)
    cap = x.new_zeros(())
    if objective.cont_capacity is not None:
        cap = cap + objective.cont_capacity.gamma * (kl_cont.sum() - c_cont).abs()
    if objective.disc_capacity is not None:
        cap = cap + objective.disc_capacity.gamma * (kl_disc.sum() - c_disc).abs()
    recon = bernoulli_nll(x, out.x_logits)
    total = (recon * objective.recon_weight + cap) / (x.shape[-1] * x.shape[-2])
    return total, recon, cap, kl_cont, kl_disc


class TrainStep:
    """step(x, step_index) -> LossTerms; x [B, C, H, W] float in [0, 1] on the model's device.

    `forward` is the module called for the forward pass (the model itself, or a
    DistributedDataParallel wrapper of it); `generator` drives the sampling noise.
    Keyword options (module docstring): channels_last (None: on for a CPU model), tune_allocator
    (CPU), cuda_graph (None: on when possible on CUDA), warmup (eager steps before capture).
    With a CUDA graph the returned tensors are the graph's outputs: read them before the next call.
    `mode` says how the last step ran: "eager" or "cuda-graph".
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
        tune_allocator: bool = True,
        cuda_graph: bool | None = None,
        warmup: int = 3,
    ):
        self.model = model
        self.optimizer = optimizer
        self.objective = objective
        self.forward = forward if forward is not None else model
        self.generator = generator
        self.mode = "eager"
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        on_cpu = self.device.type == "cpu"
        if tune_allocator and on_cpu:
            tune_cpu_allocator()
        if channels_last is None:
            channels_last = on_cpu and self.forward is model
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self._to_channels_last()
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
        self.warmup = warmup
        graph_possible = (
            self.device.type == "cuda"
            and self.forward is model
            and all(g.get("capturable", False) for g in optimizer.param_groups)
        )
        if cuda_graph and not graph_possible:
            raise ValueError(
                "cuda_graph=True needs a CUDA model, forward=None (no DDP wrapper) and a capturable optimizer "
                "(make_optimizer gives one)"
            )
        self.cuda_graph = graph_possible if cuda_graph is None else bool(cuda_graph)
        self._calls = 0
        self._graph = None
        self._graph_failed: str | None = None

    # ------------------------------------------------------------------------------------------ layout

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

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------------------------------ steps

    def __call__(self, x: torch.Tensor, step: int) -> LossTerms:
        self._calls += 1
        if self.cuda_graph and self._graph_failed is None:
            if self._graph is not None:
                if self._graph_usable(x):
                    return self._replay(x, step)
                self._drop_graph("the batch shape, temperature, learning rate or train mode changed")
            elif self._calls > self.warmup:
                if self._capture(x):
                    return self._replay(x, step)
            else:
                return self._side_stream_step(x, step)
        return self._eager_step(x, step)

    def _eager_step(self, x: torch.Tensor, step: int) -> LossTerms:
        self.mode = "eager"
        x = self._prepare(x)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward(x, self.generator)
        terms = self.objective(x, out, step)
        terms.total.backward()
        self.optimizer.step()
        return terms

    # ------------------------------------------------------------------------------------------ CUDA graph

    def _side_stream_step(self, x: torch.Tensor, step: int) -> LossTerms:
        """An eager step on a side stream (warm-up before capture, as CUDA graph capture requires)."""
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            terms = self._eager_step(x, step)
        main.wait_stream(side)
        return terms

    def _graph_key(self, x: torch.Tensor):
        return (tuple(x.shape), x.dtype, x.device, float(self.model.temperature), bool(self.model.training),
                tuple(float(g["lr"]) for g in self.optimizer.param_groups))

    def _graph_usable(self, x: torch.Tensor) -> bool:
        return self._graph_key(x) == self._key

    def _drop_graph(self, why: str) -> None:
        self._graph = None
        self._graph_failed = why
        self.optimizer.zero_grad(set_to_none=True)

    def _capture(self, x: torch.Tensor) -> bool:
        """Capture forward + loss + backward + optimizer step; False (and eager from now on) if it fails."""
        try:
            self._key = self._graph_key(x)
            self._static_x = torch.empty_like(x)
            self._static_x.copy_(x)
            self._c_cont = torch.zeros((), dtype=torch.float32, device=self.device)
            self._c_disc = torch.zeros((), dtype=torch.float32, device=self.device)
            torch.cuda.synchronize(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            if self.generator is not None:
                graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph):
                out = self.forward(self._static_x, self.generator)
                total, recon, cap, kl_cont, kl_disc = graph_loss(
                    self.objective, self._static_x, out, self._c_cont, self._c_disc
                )
                total.backward()
                self.optimizer.step()
            self._outputs = (total.detach(), recon.detach(), cap.detach(), kl_cont.detach(), kl_disc.detach())
            self._graph = graph
            return True
        except RuntimeError as e:  # capture unsupported here: run eagerly from now on
            self._graph = None
            self._graph_failed = f"CUDA graph capture failed: {e}"
            torch.cuda.synchronize(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            return False

    def _capacities(self, step: int) -> tuple[float, float]:
        obj = self.objective
        c_cont = obj.cont_capacity.at(step) if obj.cont_capacity is not None else 0.0
        c_disc = (obj.disc_capacity.at(step, max_discrete_capacity(obj.disc_dims))
                  if obj.disc_capacity is not None else 0.0)
        return c_cont, c_disc

    def _replay(self, x: torch.Tensor, step: int) -> LossTerms:
        self.mode = "cuda-graph"
        c_cont, c_disc = self._capacities(step)
        self._static_x.copy_(x, non_blocking=True)
        self._c_cont.fill_(c_cont)
        self._c_disc.fill_(c_disc)
        self._graph.replay()
        total, recon, cap, kl_cont, kl_disc = self._outputs
        return LossTerms(total, recon, cap, kl_cont, kl_disc, c_cont, c_disc)
