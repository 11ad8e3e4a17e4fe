"""The fused ops' size limits, the same for every backend (the composite path checks them too).

The C++ sources state them as kMaxDiscVars (kernels/include/jointvae/latent_math.h) and the class-count
check of kernels/torch/checks.h; tests/kernels/test_limits_match_sources.py reads those sources to keep the numbers equal:
    MAX_DISC_VARS = 64        discrete variables V
    MAX_CLASSES = 2**24       classes K_i of one discrete variable
They are checked when a model is built and when a configuration is resolved, so a model valid on the CPU
never fails at its first CUDA step.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import UserInputError

MAX_DISC_VARS = 64
MAX_CLASSES = 1 << 24


def check_latent_limits(disc: Sequence[int]) -> None:
    """UserInputError unless V <= MAX_DISC_VARS and every K_i <= MAX_CLASSES."""
    if len(disc) > MAX_DISC_VARS:
        raise UserInputError(f"disc has {len(disc)} discrete variables; the fused ops support at most {MAX_DISC_VARS}")
    big = [k for k in disc if k > MAX_CLASSES]
    if big:
        raise UserInputError(f"disc has a class count of {big[0]}; at most {MAX_CLASSES} classes per discrete variable "
                             "are supported")
