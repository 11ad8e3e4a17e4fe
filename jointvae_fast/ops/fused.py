"""The fused ops: dispatch to the compiled `jointvae` custom ops, or to the composite twins.

The compiled library is loaded (extension.load(): prebuilt, cached or built once) on the first op call or
backend(), not at import; the fake kernels are registered then. That first call may happen while torch.compile
traces: the load runs outside the trace (marked as assume_constant_result), so fullgraph=True holds.
Contracts (shapes, formulas, noise, dtypes): the package docstring, `jointvae_fast.ops`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import extension
from .composite import (composite_aggregate_kl, composite_gaussian_aggregate_kl, composite_kl_capacity_loss,
                        composite_sample_latent, composite_tc_pairwise)
from .validation import (FLOATS, check_float, check_gaussian, check_inputs, check_logits, check_noise, check_tau,
                         check_tc_inputs)

_INFO: dict | None = None  # extension.load()'s report, once loaded
_HAVE_OPS = False
_HAVE_CUDA = False
_FAST_DEVICES: tuple[str, ...] = ()


def _load_once() -> bool:
    """Load the compiled library (first call only) and register its fake kernels; True when the ops are there."""
    global _INFO, _HAVE_OPS, _HAVE_CUDA, _FAST_DEVICES
    if _INFO is None:
        info = extension.load()
        if info["loaded"]:
            _bind_ops()
        _HAVE_OPS, _HAVE_CUDA = bool(info["loaded"]), bool(info["cuda"])
        _FAST_DEVICES = ("cpu", "cuda") if _HAVE_CUDA else ("cpu",) if _HAVE_OPS else ()
        _INFO = info
    return _HAVE_OPS


def _ensure_loaded() -> bool:
    """_load_once(); under torch.compile it is run while tracing, not traced (it reads files, may start a build),
    and its result is a constant of the graph."""
    return _load_once()


# What torch.compiler.assume_constant_result(_ensure_loaded) does, without importing torch._dynamo at our import
# (that import sets TORCHINDUCTOR_CACHE_DIR in os.environ); tests/kernels/test_loading.py compiles a first op use.
_ensure_loaded._dynamo_marked_constant = True


def backend() -> str:
    """"cuda+cpu" (compiled ops with CUDA kernels), "cpu" (compiled CPU twin only) or "composite"."""
    if not _ensure_loaded():
        return "composite"
    return "cuda+cpu" if _HAVE_CUDA else "cpu"


def backend_info() -> dict:
    """backend() plus why: source (prebuilt / JIT cache / JIT build / composite), library path, build seconds,
    errors of failed builds (if any)."""
    return {"backend": backend(), **_INFO}


def _fast_path(mu, logvar, logits) -> bool:
    """Call the compiled op directly (no Python checks): float32/float64 tensors on a device it covers, not under
    compile. (float16/bfloat16 take the checked path, which upcasts, instead of a failing op call.)"""
    return (
        _HAVE_OPS
        and type(mu) is torch.Tensor
        and logvar is not None
        and logits is not None
        and mu.dtype in FLOATS
        and mu.device.type in _FAST_DEVICES
        and logvar.device.type == mu.device.type
        and logits.device.type == mu.device.type
        and not torch.compiler.is_compiling()
    )


def _fused_ok(t: torch.Tensor) -> bool:
    d = t.device.type
    return _HAVE_OPS and (d == "cpu" or (d == "cuda" and _HAVE_CUDA))


# ----------------------------------------------------------------------------------------------------------
# public API


def sample_latent(
    mu: torch.Tensor | None,
    logvar: torch.Tensor | None,
    logits: torch.Tensor | None,
    disc_dims: Sequence[int],
    tau: float,
    training: bool = True,
    generator: torch.Generator | None = None,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """latent [B, D + sum K] = [mu + exp(logvar/2) eps, gumbel_softmax(logits_i, tau) ...] (module docstring).

    tau: a number, or a one-element tensor on the inputs' device that the op reads when it runs (on CUDA,
    inside a captured graph too), e.g. an annealed temperature refilled every step."""
    _ensure_loaded()
    if noise is None and type(tau) is not torch.Tensor and _fast_path(mu, logvar, logits):
        # Hot path (every training step): the op's TORCH_CHECKs validate; on any error fall through to the
        # Python checks below, which raise ValueError/TypeError naming the argument (half inputs never get here:
        # _fast_path sends them to the checked path, which upcasts).
        # The op validates before it draws from the generator, so a failed call consumes no randomness.
        try:
            return _sample_latent_op(mu, logvar, logits, disc_dims, tau, training, None, None, generator)[0]
        except (RuntimeError, TypeError, ValueError):
            pass
    mu, logvar, logits, dims, K = check_inputs(mu, logvar, logits, disc_dims)
    tau = check_tau(tau, mu)
    eps = u = None
    if noise is not None:
        eps, u = check_noise(noise, mu, K)
    if not _fused_ok(mu):
        return composite_sample_latent(mu, logvar, logits, dims, tau, training, generator, None if eps is None else (eps, u))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    temperature = None
    if isinstance(tau, torch.Tensor):  # the op reads the tensor (tau itself is then ignored)
        tau, temperature = 1.0, tau
    return _sample_latent_op(mu, logvar, logits, dims, tau, bool(training), eps, u, generator, temperature)[0]


def kl_capacity_loss(
    mu: torch.Tensor | None,
    logvar: torch.Tensor | None,
    logits: torch.Tensor | None,
    disc_dims: Sequence[int],
    c_cont: float,
    c_disc: float,
    gamma_cont: float,
    gamma_disc: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gamma_cont |sum kl_cont - c_cont| + gamma_disc |sum kl_disc - c_disc|, kl_cont [D], kl_disc [V])."""
    _ensure_loaded()
    if _fast_path(mu, logvar, logits):  # see sample_latent
        try:
            return _kl_op(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc)
        except (RuntimeError, TypeError, ValueError):
            pass
    mu, logvar, logits, dims, K = check_inputs(mu, logvar, logits, disc_dims)
    if mu.shape[0] == 0:
        raise ValueError("kl_capacity_loss needs a batch of at least one row, got B = 0")
    c_cont, c_disc = check_float("c_cont", c_cont), check_float("c_disc", c_disc)
    gamma_cont, gamma_disc = check_float("gamma_cont", gamma_cont), check_float("gamma_disc", gamma_disc)
    if not _fused_ok(mu):
        return composite_kl_capacity_loss(mu, logvar, logits, dims, c_cont, c_disc, gamma_cont, gamma_disc)
    return _kl_op(mu, logvar, logits, dims, c_cont, c_disc, gamma_cont, gamma_disc)


def aggregate_kl(logits: torch.Tensor, disc_dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(agg_kl [V], qbar [sum K]): qbar = mean_b softmax(logits_b) per block, agg_kl[i] = KL(qbar_i || uniform(K_i)).

    Differentiable in logits through agg_kl (qbar is not differentiable). Needs B >= 1.
    """
    _ensure_loaded()
    if _fast_path(logits, logits, logits):  # see sample_latent
        try:
            return _aggregate_op(logits, disc_dims)
        except (RuntimeError, TypeError, ValueError):
            pass
    logits, dims = check_logits(logits, disc_dims)
    if not _fused_ok(logits):
        return composite_aggregate_kl(logits, dims)
    return _aggregate_op(logits, dims)


def gaussian_aggregate_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A [D]: A_d = KL(N(m_d, s2_d) || N(0, 1)) = (m^2 + s2 - 1 - log s2) / 2, m = mean_b mu,
    s2 = mean_b exp(logvar) + mean_b (mu - m)^2 (s2 floored at finfo(dtype).tiny).

    Differentiable in mu and logvar. Needs B >= 1. `torch.ops.jointvae.gaussian_aggregate_kl` also returns the
    moments float64 [2, D] = (m; s2) that its backward reads (not differentiable).
    """
    _ensure_loaded()
    if _fast_path(mu, logvar, mu):  # see sample_latent
        try:
            return _gaussian_aggregate_op(mu, logvar)[0]
        except (RuntimeError, TypeError, ValueError):
            pass
    mu, logvar = check_gaussian(mu, logvar)
    if not _fused_ok(mu):
        return composite_gaussian_aggregate_kl(mu, logvar)
    return _gaussian_aggregate_op(mu, logvar)[0]


def philox_uniform(seed: int, offset: int, n: int, device="cpu") -> torch.Tensor:
    """float32 [n]: uniforms of Philox stream S(seed, offset), through the compiled device code path."""
    if not _ensure_loaded():
        raise RuntimeError(f"philox_uniform needs the compiled ops; backend is composite ({_INFO['reason']})")
    out = torch.empty(int(n), dtype=torch.float32, device=device)
    torch.ops.jointvae.philox_uniform_.default(out, _as_int64(seed), _as_int64(offset))
    return out


def _as_int64(x: int) -> int:
    """uint64 -> the int64 with the same bits (op schemas carry int64)."""
    x = int(x) & 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= (1 << 63) else x


# ----------------------------------------------------------------------------------------------------------
# custom-op plumbing: fake kernels (autograd is registered in C++)

_sample_latent_op = _kl_op = _aggregate_op = _gaussian_aggregate_op = _tc_op = None  # bound by _bind_ops()


def _sample_latent_fake(mu, logvar, logits, disc_dims, tau, training, eps, u, generator, temperature=None):
    B, D = mu.shape
    return mu.new_empty((B, D + logits.shape[1])), mu.new_empty((B, D)), mu.new_empty((2,), dtype=torch.int64)


def _sample_latent_backward_fake(grad, latent, sigma_eps, disc_dims, tau, training, temperature=None):
    B, D = sigma_eps.shape
    return latent.new_empty((B, D)), latent.new_empty((B, D)), latent.new_empty((B, latent.shape[1] - D))


def _kl_fake(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc):
    return mu.new_empty(()), mu.new_empty((mu.shape[1],)), mu.new_empty((len(disc_dims),))


def _kl_backward_fake(grad_loss, gkc, gkd, mu, logvar, logits, kl_cont, kl_disc, disc_dims, *args):
    return mu.new_empty(mu.shape), mu.new_empty(mu.shape), logits.new_empty(logits.shape)


def _aggregate_fake(logits, disc_dims):
    return logits.new_empty((len(disc_dims),)), logits.new_empty((logits.shape[1],))


def _aggregate_backward_fake(grad_agg, logits, qbar, disc_dims):
    return logits.new_empty(logits.shape)


def _gaussian_aggregate_fake(mu, logvar):
    return mu.new_empty((mu.shape[1],)), mu.new_empty((2, mu.shape[1]), dtype=torch.float64)


def _gaussian_aggregate_backward_fake(grad_agg, mu, logvar, moments):
    return mu.new_empty(mu.shape), mu.new_empty(mu.shape)


def _philox_uniform_fake(out, seed, offset):
    return None


def _tc_fake(z, mu, logvar, y, logits, disc_dims, log_weights):
    return mu.new_empty((mu.shape[0],)), mu.new_empty((mu.shape[0], mu.shape[1] + len(disc_dims)))


def _tc_backward_fake(grad_joint, grad_marginals, z, mu, logvar, y, logits, disc_dims, *saved):
    return (mu.new_empty(mu.shape), mu.new_empty(mu.shape), mu.new_empty(mu.shape),
            logits.new_empty(logits.shape), logits.new_empty(logits.shape))


_FAKES = {
    "sample_latent": _sample_latent_fake, "sample_latent_backward": _sample_latent_backward_fake,
    "kl_capacity_loss": _kl_fake, "kl_capacity_loss_backward": _kl_backward_fake,
    "aggregate_kl": _aggregate_fake, "aggregate_kl_backward": _aggregate_backward_fake,
    "gaussian_aggregate_kl": _gaussian_aggregate_fake, "gaussian_aggregate_kl_backward": _gaussian_aggregate_backward_fake,
    "philox_uniform_": _philox_uniform_fake,
    "tc_pairwise": _tc_fake, "tc_pairwise_backward": _tc_backward_fake,
}


def _bind_ops() -> None:
    """The compiled ops' handles, and their fake kernels (shapes only: torch.compile, CUDA graphs). Autograd is
    registered in C++ (kernels/torch/autograd.cpp: autograd kernels calling the fused backward ops)."""
    global _sample_latent_op, _kl_op, _aggregate_op, _gaussian_aggregate_op, _tc_op
    _sample_latent_op = torch.ops.jointvae.sample_latent.default
    _kl_op = torch.ops.jointvae.kl_capacity_loss.default
    _aggregate_op = torch.ops.jointvae.aggregate_kl.default
    _gaussian_aggregate_op = torch.ops.jointvae.gaussian_aggregate_kl.default
    _tc_op = torch.ops.jointvae.tc_pairwise.default
    for name, fake in _FAKES.items():
        torch.library.register_fake(f"jointvae::{name}")(fake)


def tc_pairwise(z, mu, logvar, y, logits, disc_dims: Sequence[int], log_weights):
    """(log_q_joint [B], log_q_marginals [B, D + V]) of the total correlation's estimators (`jointvae_fast.ops`).

    The compiled op streams the logsumexps over the batch (memory O(B (D + sum K)), backward by recomputation);
    devices it does not cover run the composite twin (memory O(B^2 (D + V))). log_weights is not differentiated."""
    _ensure_loaded()
    if _fast_path(mu, logvar, logits) and type(z) is torch.Tensor and type(y) is torch.Tensor \
            and type(log_weights) is torch.Tensor:  # see sample_latent
        try:
            return _tc_op(z, mu, logvar, y, logits, disc_dims, log_weights)
        except (RuntimeError, TypeError, ValueError):
            pass
    z, mu, logvar, y, logits, dims, w = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights)
    if not _fused_ok(mu):
        return composite_tc_pairwise(z, mu, logvar, y, logits, dims, w)
    return _tc_op(z, mu, logvar, y, logits, dims, w.detach())
