"""Argument checks shared by the fused ops and their composite twins (cheap: called every training step).

`check_inputs` fills None blocks with [B, 0] tensors, validates shapes, dtypes and devices, upcasts
float16/bfloat16 to float32 and returns (mu, logvar, logits, dims list, sum K). Errors are ValueError or
TypeError naming the argument.
"""
from __future__ import annotations

import functools
import math

import torch

from .limits import MAX_CLASSES, MAX_DISC_VARS

_UPCAST = (torch.float16, torch.bfloat16)
FLOATS = (torch.float32, torch.float64)  # computed in their own precision


@functools.lru_cache(maxsize=512)
def _disc_layout(dims: tuple) -> tuple[list[int], int]:
    if len(dims) > MAX_DISC_VARS:  # the compiled ops' limit, enforced on the composite path too
        raise ValueError(f"at most {MAX_DISC_VARS} discrete variables are supported, got {len(dims)}")
    out = []
    for i, k in enumerate(dims):
        if isinstance(k, bool) or not isinstance(k, int):
            try:
                k = int(k) if float(k) == int(k) else None
            except (TypeError, ValueError):
                k = None
            if k is None:
                raise TypeError(f"disc_dims[{i}] must be an int, got {dims[i]!r}")
        if not 2 <= k <= MAX_CLASSES:
            raise ValueError(f"disc_dims[{i}] must be 2..{MAX_CLASSES} classes, got {k}")
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


def check_inputs(mu, logvar, logits, disc_dims):
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
    if dt not in FLOATS:
        if dt in _UPCAST:
            mu, logvar, logits = mu.float(), logvar.float(), logits.float()
        else:
            raise TypeError(f"mu, logvar, logits must be floating point (float32/float64), got {dt}")
    dev = mu.device
    if logvar.device != dev or logits.device != dev:
        raise ValueError(f"mu, logvar, logits must be on one device, got {mu.device}, {logvar.device}, {logits.device}")
    return mu, logvar, logits, dims, K


def check_logits(logits, disc_dims):
    """The aggregate KL's input: logits [B >= 1, sum K] -> (logits as float32/float64, dims list)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    _, _, logits, dims, _ = check_inputs(None, None, logits, disc_dims)
    if logits.shape[0] == 0:
        raise ValueError("aggregate_kl needs logits with at least one row (a batch mean), got B = 0")
    return logits, dims


def check_gaussian(mu, logvar):
    """The continuous aggregate KL's inputs: mu, logvar [B >= 1, D] -> (mu, logvar) as float32/float64."""
    for name, t in (("mu", mu), ("logvar", logvar)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    mu, logvar, _, _, _ = check_inputs(mu, logvar, None, ())
    if mu.shape[0] == 0:
        raise ValueError("gaussian_aggregate_kl needs mu, logvar with at least one row (a batch mean), got B = 0")
    return mu, logvar


def check_tau(tau, mu=None):
    """A finite number > 0 -> float; or a one-element floating tensor (a device scalar the caller refills, e.g.
    an annealed temperature under a CUDA graph) -> that tensor as a 0-dim tensor of mu's dtype. A tensor's
    value is checked on the CPU only (reading a device tensor would wait for the device)."""
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1 or not tau.is_floating_point():
            raise ValueError(f"tau as a tensor must have one floating-point element, got {tuple(tau.shape)} {tau.dtype}")
        if tau.device.type == "cpu":  # free to read here
            check_tau(float(tau.reshape(())))
        if mu is None:
            return tau.reshape(())
        if tau.device != mu.device:
            raise ValueError(f"tau must be on {mu.device}, got {tau.device}")
        return tau.reshape(()).to(mu.dtype)
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise TypeError(f"tau must be a number, got {tau!r}") from None
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return t


def check_noise(noise, mu, K):
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


def check_float(name, v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None


def check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights):
    """tc_pairwise's inputs -> (z, mu, logvar, y, logits, dims list, log_weights) in one float32/float64 dtype:
    z, mu, logvar [B, D]; y, logits [B, sum K]; log_weights [B, B] (cast to the dtype: not differentiated)."""
    for name, t in (("z", z), ("y", y), ("log_weights", log_weights)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    mu, logvar, logits, dims, _ = check_inputs(mu, logvar, logits, disc_dims)
    for name, t, ref_name, ref in (("z", z, "mu", mu), ("y", y, "logits", logits)):
        if t.shape != ref.shape:
            raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
        if t.device != ref.device:
            raise ValueError(f"{name} must be on {ref.device}, got {t.device}")
    B = mu.shape[0]
    if tuple(log_weights.shape) != (B, B):
        raise ValueError(f"log_weights must have shape {(B, B)}, got {tuple(log_weights.shape)}")
    if log_weights.device != mu.device:
        raise ValueError(f"log_weights must be on {mu.device}, got {log_weights.device}")
    return z.to(mu.dtype), mu, logvar, y.to(mu.dtype), logits, dims, log_weights.to(mu.dtype)

