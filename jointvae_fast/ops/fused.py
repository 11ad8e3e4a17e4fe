"""The two fused latent ops of Joint-VAE, and their pure-PyTorch composites.

Shapes: mu, logvar [B, D] (D may be 0; None means [B, 0]); logits [B, sum K] (None means [B, 0]);
disc_dims a sequence of ints >= 2 summing to the logits width (may be empty).

    sample_latent(...)    -> latent [B, D + sum K] = [z, y_1, ..., y_V]
        z = mu + exp(logvar/2) * eps,   y_i = softmax((log_softmax(logits_i) + g) / tau),  g = -log(-log u)
        training=False: z = mu, y_i = one_hot(argmax logits_i) (first index on ties; NaN block -> NaN).
    kl_capacity_loss(...) -> (loss [], kl_cont [D], kl_disc [V])
        kl_cont[d] = mean_b 0.5 (mu^2 + exp(logvar) - 1 - logvar);  kl_disc[i] = mean_b (log K_i + sum p log p)
        loss = gamma_cont |sum kl_cont - c_cont| + gamma_disc |sum kl_disc - c_disc|   (d|x|/dx at 0 is 0)

Both are differentiable in mu, logvar, logits: C++ autograd kernels (kernels/torch/autograd.cpp) call the
fused backward ops (no double backward). Fake kernels are registered, so torch.compile(fullgraph=True)
works; sample_latent is tagged nondeterministic_seeded (never recomputed by the partitioner).

Noise. `noise=(eps [B, D], u [B, sum K])` gives it explicitly (u in [2^-126, 1); out-of-range u gives NaN).
Otherwise the fused op draws Philox4x32-10 noise keyed by (seed, offset) (DESIGN.md "Randomness"): on
CUDA from the device generator's graph-safe philox state (offset += 4 per call, so CUDA graph replays draw
fresh noise; a non-default generator must be registered with the graph, as for any PyTorch RNG op); on
CPU a fresh 64-bit seed from the CPU generator per call, offset 0. `torch.manual_seed(s)` therefore fixes
the samples; evaluation mode draws nothing. The composite functions draw their noise with torch.randn /
torch.rand instead (different numbers, same distribution) unless `noise` is given.
`torch.ops.jointvae.sample_latent` also returns sigma_eps = exp(logvar/2) eps (what the backward reads)
and rng_state int64 [2] = the (seed, offset) used (zeros with explicit noise or in evaluation mode).

Hot path: with tensors on a covered device the compiled op is called directly and validates with
TORCH_CHECK; any failure re-runs the Python checks, which raise ValueError/TypeError naming the argument.

Dtypes: float32 and float64 are computed in that precision. float16/bfloat16 inputs are upcast and the
result is float32. Inputs may be non-contiguous (column slices of the encoder output are read in place).

`backend()` is "cuda+cpu", "cpu" or "composite"; `backend_info()` says why. Tensors on a device the
compiled ops do not cover use the composite path.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from . import extension

__all__ = [
    "sample_latent",
    "kl_capacity_loss",
    "composite_sample_latent",
    "composite_kl_capacity_loss",
    "philox_uniform",
    "backend",
    "backend_info",
]

_INFO = extension.load()
_HAVE_OPS = bool(_INFO["loaded"])
_HAVE_CUDA = bool(_INFO["cuda"])
_UPCAST = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float32, torch.float64)


def backend() -> str:
    """"cuda+cpu" (compiled ops with CUDA kernels), "cpu" (compiled CPU twin only) or "composite"."""
    if not _HAVE_OPS:
        return "composite"
    return "cuda+cpu" if _HAVE_CUDA else "cpu"


def backend_info() -> dict:
    """backend() plus why: build directory, build seconds, errors of failed builds (if any)."""
    return {"backend": backend(), **_INFO}


# ----------------------------------------------------------------------------------------------------------
# validation (cheap: the model calls these every training step)


@functools.lru_cache(maxsize=512)
def _disc_layout(dims: tuple) -> tuple[list[int], int]:
    out = []
    for i, k in enumerate(dims):
        if isinstance(k, bool) or not isinstance(k, int):
            try:
                k = int(k) if float(k) == int(k) else None
            except (TypeError, ValueError):
                k = None
            if k is None:
                raise TypeError(f"disc_dims[{i}] must be an int, got {dims[i]!r}")
        if k < 2:
            raise ValueError(f"disc_dims[{i}] must be >= 2 classes, got {k}")
        out.append(k)
    return out, sum(out)


def _layout(disc_dims) -> tuple[list[int], int]:
    try:
        dims = disc_dims if type(disc_dims) is tuple else tuple(disc_dims)
        if torch.compiler.is_compiling():  # dynamo traces through (and warns about) lru_cache wrappers
            return _disc_layout.__wrapped__(dims)
        return _disc_layout(dims)
    except TypeError as e:
        if "disc_dims[" in str(e):
            raise
        raise TypeError(f"disc_dims must be a sequence of ints, got {disc_dims!r}") from None


def _fill_empty(mu, logvar, logits):
    ref = next((t for t in (mu, logvar, logits) if t is not None), None)
    if ref is None:
        raise ValueError("mu, logvar and logits are all None: nothing to compute")
    if not isinstance(ref, torch.Tensor):
        raise TypeError(f"expected tensors, got {type(ref).__name__}")
    B = ref.shape[0] if ref.dim() >= 1 else 0
    if mu is None:
        mu = ref.new_empty((B, 0))
    if logvar is None:
        logvar = ref.new_empty((B, 0)) if mu.shape[1:] == (0,) else None
        if logvar is None:
            raise ValueError("logvar is None but mu has D > 0 columns")
    if logits is None:
        logits = ref.new_empty((B, 0))
    return mu, logvar, logits


def _check(mu, logvar, logits, disc_dims):
    """Validate; returns (mu, logvar, logits, dims list, sum K) with a shared float32/float64 dtype."""
    if mu is None or logvar is None or logits is None:
        mu, logvar, logits = _fill_empty(mu, logvar, logits)
    for name, t in (("mu", mu), ("logvar", logvar), ("logits", logits)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D [B, n], got shape {tuple(t.shape)}")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    if logits.shape[0] != mu.shape[0]:
        raise ValueError(f"logits has {logits.shape[0]} rows but mu has {mu.shape[0]}")
    dims, K = _layout(disc_dims)
    if logits.shape[1] != K:
        raise ValueError(f"disc_dims {list(disc_dims)} sum to {K} but logits has {logits.shape[1]} columns")
    dt = mu.dtype
    if logvar.dtype != dt or logits.dtype != dt:
        raise TypeError(f"mu, logvar, logits must share a dtype, got {mu.dtype}, {logvar.dtype}, {logits.dtype}")
    if dt not in _FLOATS:
        if dt in _UPCAST:
            mu, logvar, logits = mu.float(), logvar.float(), logits.float()
        else:
            raise TypeError(f"mu, logvar, logits must be floating point (float32/float64), got {dt}")
    dev = mu.device
    if logvar.device != dev or logits.device != dev:
        raise ValueError(f"mu, logvar, logits must be on one device, got {mu.device}, {logvar.device}, {logits.device}")
    return mu, logvar, logits, dims, K


def _check_tau(tau) -> float:
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise TypeError(f"tau must be a number, got {tau!r}") from None
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return t


def _check_noise(noise, mu, K):
    if not (isinstance(noise, (tuple, list)) and len(noise) == 2):
        raise TypeError("noise must be a pair (eps [B, D], u [B, sum K])")
    eps, u = noise
    B, D = mu.shape
    for name, t, w in (("noise eps", eps, D), ("noise u", u, K)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != (B, w):
            raise ValueError(f"{name} must have shape {(B, w)}, got {tuple(t.shape)}")
        if t.device != mu.device:
            raise ValueError(f"{name} must be on {mu.device}, got {t.device}")
    return eps.to(mu.dtype), u.to(mu.dtype)


_FAST_DEVICES = ("cpu", "cuda") if _HAVE_CUDA else ("cpu",)


def _fast_path(mu, logvar, logits) -> bool:
    """Call the compiled op directly (no Python checks): tensors on a device it covers, not under compile."""
    return (
        _HAVE_OPS
        and type(mu) is torch.Tensor
        and logvar is not None
        and logits is not None
        and mu.device.type in _FAST_DEVICES
        and logvar.device.type == mu.device.type
        and logits.device.type == mu.device.type
        and not torch.compiler.is_compiling()
    )


def _fused_ok(t: torch.Tensor) -> bool:
    d = t.device.type
    return _HAVE_OPS and (d == "cpu" or (d == "cuda" and _HAVE_CUDA))


def _check_float(name, v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None


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
    """latent [B, D + sum K] = [mu + exp(logvar/2) eps, gumbel_softmax(logits_i, tau) ...] (module docstring)."""
    if noise is None and _fast_path(mu, logvar, logits):
        # Hot path (every training step): the op's TORCH_CHECKs validate; on any error fall through to the
        # Python checks below, which raise ValueError/TypeError naming the argument (or upcast and retry).
        # The op validates before it draws from the generator, so a failed call consumes no randomness.
        try:
            return _sample_latent_op(mu, logvar, logits, disc_dims, tau, training, None, None, generator)[0]
        except (RuntimeError, TypeError, ValueError):
            pass
    mu, logvar, logits, dims, K = _check(mu, logvar, logits, disc_dims)
    tau = _check_tau(tau)
    eps = u = None
    if noise is not None:
        eps, u = _check_noise(noise, mu, K)
    if not _fused_ok(mu):
        return composite_sample_latent(mu, logvar, logits, dims, tau, training, generator, None if eps is None else (eps, u))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return _sample_latent_op(mu, logvar, logits, dims, tau, bool(training), eps, u, generator)[0]


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
    if _fast_path(mu, logvar, logits):  # see sample_latent
        try:
            return _kl_op(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc)
        except (RuntimeError, TypeError, ValueError):
            pass
    mu, logvar, logits, dims, K = _check(mu, logvar, logits, disc_dims)
    if mu.shape[0] == 0:
        raise ValueError("kl_capacity_loss needs a batch of at least one row, got B = 0")
    c_cont, c_disc = _check_float("c_cont", c_cont), _check_float("c_disc", c_disc)
    gamma_cont, gamma_disc = _check_float("gamma_cont", gamma_cont), _check_float("gamma_disc", gamma_disc)
    if not _fused_ok(mu):
        return composite_kl_capacity_loss(mu, logvar, logits, dims, c_cont, c_disc, gamma_cont, gamma_disc)
    return _kl_op(mu, logvar, logits, dims, c_cont, c_disc, gamma_cont, gamma_disc)


def philox_uniform(seed: int, offset: int, n: int, device="cpu") -> torch.Tensor:
    """float32 [n]: uniforms of Philox stream S(seed, offset), through the compiled device code path."""
    if not _HAVE_OPS:
        raise RuntimeError(f"philox_uniform needs the compiled ops; backend is composite ({_INFO['reason']})")
    out = torch.empty(int(n), dtype=torch.float32, device=device)
    torch.ops.jointvae.philox_uniform_.default(out, _as_int64(seed), _as_int64(offset))
    return out


def _as_int64(x: int) -> int:
    """uint64 -> the int64 with the same bits (op schemas carry int64)."""
    x = int(x) & 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= (1 << 63) else x


# ----------------------------------------------------------------------------------------------------------
# composite (pure PyTorch): the fallback and the eager baseline


def composite_sample_latent(mu, logvar, logits, disc_dims, tau, training=True, generator=None, noise=None):
    """sample_latent from ~10 PyTorch ops per block; noise from torch.randn/torch.rand unless given."""
    mu, logvar, logits, dims, K = _check(mu, logvar, logits, disc_dims)
    tau = _check_tau(tau)
    blocks = torch.split(logits, dims, dim=1) if dims else ()
    if not training:
        ys = []
        for lb in blocks:
            y = F.one_hot(lb.argmax(dim=1), lb.shape[1]).to(lb.dtype)
            ys.append(y + lb.sum(dim=1, keepdim=True) * 0)  # NaN in the block -> NaN block
        return torch.cat([mu, *ys], dim=1)
    if noise is not None:
        eps, u = _check_noise(noise, mu, K)
    else:
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        u = torch.rand(logits.shape, dtype=mu.dtype, device=mu.device, generator=generator)
        u = u.clamp_(2.0**-24, 1.0 - 2.0**-24)
    z = mu + torch.exp(0.5 * logvar) * eps
    ys = []
    for lb, ub in zip(blocks, torch.split(u, dims, dim=1) if dims else ()):
        g = -torch.log(-torch.log(ub))
        ys.append(F.softmax((F.log_softmax(lb, dim=1) + g) / tau, dim=1))
    return torch.cat([z, *ys], dim=1)


def composite_kl_capacity_loss(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc):
    """kl_capacity_loss from plain PyTorch ops (same formulas, autograd backward)."""
    mu, logvar, logits, dims, K = _check(mu, logvar, logits, disc_dims)
    kl_cont = (0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)).mean(dim=0)
    kls = []
    for lb, k in zip(torch.split(logits, dims, dim=1) if dims else (), dims):
        logp = F.log_softmax(lb, dim=1)
        kls.append(((logp.exp() * logp).sum(dim=1) + math.log(k)).mean(dim=0))
    kl_disc = torch.stack(kls) if kls else logits.new_zeros(0)
    loss = gamma_cont * (kl_cont.sum() - c_cont).abs() + gamma_disc * (kl_disc.sum() - c_disc).abs()
    return loss, kl_cont, kl_disc


# ----------------------------------------------------------------------------------------------------------
# custom-op plumbing: fake kernels (autograd is registered in C++)

if _HAVE_OPS:
    _sample_latent_op = torch.ops.jointvae.sample_latent.default
    _kl_op = torch.ops.jointvae.kl_capacity_loss.default

    @torch.library.register_fake("jointvae::sample_latent")
    def _sample_latent_fake(mu, logvar, logits, disc_dims, tau, training, eps, u, generator):
        B, D = mu.shape
        return (
            mu.new_empty((B, D + logits.shape[1])),
            mu.new_empty((B, D)),
            mu.new_empty((2,), dtype=torch.int64),
        )

    @torch.library.register_fake("jointvae::sample_latent_backward")
    def _sample_latent_backward_fake(grad, latent, sigma_eps, disc_dims, tau, training):
        B, D = sigma_eps.shape
        return latent.new_empty((B, D)), latent.new_empty((B, D)), latent.new_empty((B, latent.shape[1] - D))

    @torch.library.register_fake("jointvae::kl_capacity_loss")
    def _kl_fake(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc):
        return mu.new_empty(()), mu.new_empty((mu.shape[1],)), mu.new_empty((len(disc_dims),))

    @torch.library.register_fake("jointvae::kl_capacity_loss_backward")
    def _kl_backward_fake(grad_loss, gkc, gkd, mu, logvar, logits, kl_cont, kl_disc, disc_dims, *args):
        return mu.new_empty(mu.shape), mu.new_empty(mu.shape), logits.new_empty(logits.shape)

    @torch.library.register_fake("jointvae::philox_uniform_")
    def _philox_uniform_fake(out, seed, offset):
        return None

    # Autograd: C++ autograd kernels (kernels/torch/autograd.cpp) calling the fused backward ops.
