"""The fused latent ops of Joint-VAE (sampling, KL + capacity, aggregate KLs) and their composite twins.

Shapes: mu, logvar [B, D] (D may be 0; None means [B, 0]); logits [B, sum K] (None means [B, 0]);
disc_dims a sequence of ints >= 2 summing to the logits width (may be empty).

    sample_latent(...)    -> latent [B, D + sum K] = [z, y_1, ..., y_V]
        z = mu + exp(logvar/2) * eps,   y_i = softmax((log_softmax(logits_i) + g) / tau),  g = -log(-log u)
        training=False: z = mu, y_i = one_hot(argmax logits_i) (first index on ties; NaN block -> NaN).
    kl_capacity_loss(...) -> (loss [], kl_cont [D], kl_disc [V])
        kl_cont[d] = mean_b 0.5 (mu^2 + exp(logvar) - 1 - logvar);  kl_disc[i] = mean_b (log K_i + sum p log p)
        loss = gamma_cont |sum kl_cont - c_cont| + gamma_disc |sum kl_disc - c_disc|   (d|x|/dx at 0 is 0)
    aggregate_kl(logits, disc_dims) -> (agg_kl [V], qbar [sum K])
        qbar_i = mean_b softmax(logits_b,i);  agg_kl[i] = KL(qbar_i || uniform(K_i)) = sum_k qbar log(K qbar)
        (B >= 1; qbar is not differentiable). kl_disc - agg_kl = the batch information I(b; c) per variable.
    gaussian_aggregate_kl(mu, logvar) -> A [D]
        m = mean_b mu,  s2 = mean_b exp(logvar) + mean_b (mu - m)^2,  A_d = KL(N(m, s2) || N(0, 1))
        = (m^2 + s2 - 1 - log s2) / 2: the moment-matched aggregate posterior's KL (B >= 1). kl_cont - A = the
        batch information per unit (reference/information.py). The moments are taken shifted by row 0's mu
        (rows sharing a mu: variance exactly 0; the fused op sums in float64); s2 is floored at
        finfo(dtype).tiny (it falls below only when a unit's rows share one mu and logvar < -87 in float32),
        the gradient being the formula's at the floored s2 -- fused and composite alike.
        torch.ops.jointvae.gaussian_aggregate_kl also returns moments float64 [2, D] = (m; s2), what its
        backward reads (not differentiable).

    tc_pairwise(z, mu, logvar, y, logits, disc_dims, log_weights) -> (log_q_joint [B], log_q_marginals [B, D + V])
        the pairwise part of the total correlation's batch estimators (jointvae_fast/total_correlation.py,
        docs/total-correlation.md). z [B, D], y [B, sum K]: the latent each row sampled; log_weights [B, B]
        (not differentiated). With a[n,m,d] = log N(z_n,d; mu_m,d, exp(logvar_m,d)) and
        b[n,m,i] = sum_k y_n,i,k log_softmax(logits_m,i)_k:
        log_q_joint[n] = LSE_m (log_weights[n,m] + sum_d a[n,m,d] + sum_i b[n,m,i]);
        log_q_marginals[n, j] = LSE_m (log_weights[n,m] + a[n,m,j]) for j < D, with b[n,m,j-D] for j >= D.
        Differentiable in z, mu, logvar, y and logits (log_weights is a constant). The compiled op (CPU and
        CUDA) streams both LSEs over m (memory O(B (D + sum K)), backward by recomputation from the two
        outputs); the composite twin materialises [B, B, D + V] (memory O(B^2 (D + V))).

    im2col(image, k, s, p) -> patches [B h w, C k k];  col2im(patches, (B, C, H, W), k, s, p) -> image
        the patches of a strided convolution and their adjoint (ops/patches.py; compiled on the CPU, F.unfold /
        F.fold elsewhere); patches_available(device) says whether the compiled pair runs there.

The first four are differentiable in their inputs (aggregate_kl in logits): C++ autograd kernels
(kernels/torch/autograd.cpp) call the fused backward ops (no double backward). Fake kernels are registered,
so torch.compile(fullgraph=True) works; sample_latent is tagged nondeterministic_seeded (never recomputed by
the partitioner).

Noise. `noise=(eps [B, D], u [B, sum K])` gives it explicitly (u in [2^-126, 1); out-of-range u gives NaN).
Otherwise the fused op draws Philox4x32-10 noise keyed by (seed, offset) (docs/design.md, "Randomness"): on
CUDA from the device generator's graph-safe philox state in PyTorch's own counter layout (offset += 8 per
call, reference.OFFSET_PER_CALL, so calls never share a counter with each other or with other torch random
ops, and CUDA graph replays draw fresh noise; a non-default generator must be registered with the graph,
as for any PyTorch RNG op); on
CPU a fresh 64-bit seed from the CPU generator per call, offset 0. `torch.manual_seed(s)` therefore fixes
the samples; evaluation mode draws nothing. The composite functions draw their noise with torch.randn /
torch.rand instead (different numbers, same distribution) unless `noise` is given.
`torch.ops.jointvae.sample_latent` also returns sigma_eps = exp(logvar/2) eps (what the backward reads)
and rng_state int64 [2] = the (seed, offset) used (zeros with explicit noise or in evaluation mode).

Hot path: with tensors on a covered device the compiled op is called directly and validates with
TORCH_CHECK; any failure re-runs the Python checks, which raise ValueError/TypeError naming the argument.

Dtypes: float32 and float64 are computed in that precision. float16/bfloat16 inputs are upcast (before
the compiled op is called) and the result is float32. tau may also be a one-element tensor on the inputs'
device (read when the op runs: an annealed temperature under a CUDA graph). Inputs may be non-contiguous (column slices of the encoder output are read in place).

`backend()` is "cuda+cpu", "cpu" or "composite"; `backend_info()` says why. Tensors on a device the
compiled ops do not cover use the composite path.

Loading. Importing this package (or an op's name) compiles and loads nothing: the library is loaded on the
first op call or `backend()` (extension.py: the library `pip install` compiled into the package, else a cached
or new JIT build, else the composite ops), also when that first call is traced by torch.compile. `limits`,
`composite` and `build_spec` never need it. `python -m jointvae_fast.doctor` says which library loads and why.
"""
from __future__ import annotations

import importlib

from .limits import MAX_CLASSES, MAX_DISC_VARS, check_latent_limits

_COMPOSITE = ("composite_sample_latent", "composite_kl_capacity_loss", "composite_aggregate_kl",
              "composite_gaussian_aggregate_kl", "composite_tc_pairwise")
_PATCHES = ("im2col", "col2im", "patches_available")
_FUSED = ("sample_latent", "kl_capacity_loss", "aggregate_kl", "gaussian_aggregate_kl", "tc_pairwise",
          "philox_uniform", "backend", "backend_info")

__all__ = [*_FUSED, *_PATCHES, *_COMPOSITE, "MAX_DISC_VARS", "MAX_CLASSES", "check_latent_limits"]


def __getattr__(name: str):
    """The ops' names, imported on first use (the fused ones load the compiled library then)."""
    if name in _FUSED:
        module = importlib.import_module(".fused", __name__)
    elif name in _PATCHES:
        module = importlib.import_module(".patches", __name__)
    elif name in _COMPOSITE:
        module = importlib.import_module(".composite", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
