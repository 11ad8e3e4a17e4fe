"""The arithmetic of a training step: "fp32", or "bf16" mixed precision (the config key `precision`).

bf16: the forward pass runs under `torch.autocast(device, torch.bfloat16)`, which computes the
convolutions, transposed convolutions and linear layers in bfloat16 (products accumulated in float32 by
oneDNN / cuBLAS, results rounded to bfloat16); everything else stays float32:

- the parameters (master weights), their gradients and the Adam state: autocast casts a float32 weight to
  bfloat16 on its way into a layer, and the cast's backward brings the gradient back as float32;
- the posterior parameters: `JointVAE.encode` returns mu, logvar and logits in the weights' dtype, so the
  fused latent and KL ops get float32 inputs (no half-precision path of theirs is taken);
- the loss: `Objective` scores the reconstruction from float32 logits, and it (with backward) runs
  outside the autocast region.

Checkpoints hold the float32 parameters, so a run can be resumed at either precision. The autocast
region never caches casted weights (`cache_enabled=False`): each weight is used once per forward, and a
cache would hold tensors across a CUDA graph capture, which CUDA graphs do not allow.

On a CPU without native bf16 instructions (AVX512-BF16 or AMX-BF16) oneDNN emulates them: correct but
slower than fp32; `precision_note` says so in one line.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def autocast(precision: str, device: torch.device):
    """The context the forward pass runs in: nothing for fp32, bfloat16 autocast on `device` for bf16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError naming the value unless `precision` is one of PRECISIONS and usable on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision bf16 needs a cpu or cuda device, got {device}")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. not Linux)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether oneDNN can run bf16 convolutions natively here: mkldnn built in and AVX512-BF16 or AMX-BF16."""
    flags = cpu_flags() if flags is None else flags
    return torch.backends.mkldnn.is_available() and any(f in flags for f in _NATIVE_BF16_FLAGS)


def precision_note(precision: str, device: torch.device, flags: set[str] | None = None) -> str | None:
    """One line to print when bf16 will be slow here (emulated), else None. Training continues either way."""
    if precision != "bf16":
        return None
    if device.type == "cpu" and not cpu_has_native_bf16(flags):
        return ("note: --precision bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo, "
                "or no oneDNN): it runs emulated, correct but slower than fp32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"note: --precision bf16 on {torch.cuda.get_device_name(device)}, which has no native bf16: slower than fp32"
    return None
