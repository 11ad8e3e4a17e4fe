"""The compute floor of a training step: its FLOPs, counted exactly, over the machine's matmul rate.

Counting: `torch.utils.flop_counter.FlopCounterMode` over one full training step of the model -- forward,
Eq. 7 and backward, as `TrainStep` runs them -- counts the FLOPs of every matmul-class aten op
(convolutions and their backward, transposed convolutions, mm/addmm of the linear layers: 2 per
multiply-add), only for the gradients autograd actually computes (no input gradient of the first
convolution). Elementwise work (ReLU, loss, the latent ops, Adam) is not counted: it is memory-bound and
small, so the floor is a little optimistic. The count is per image (a step of `batch` images / batch)
and the same at every precision. Throughput: the fastest matrix product the torch build offers at the
precision's dtype (float32 with TF32 off on CUDA, or bfloat16), each the median over repeats of a product of
two n x n matrices, 2 n^3 FLOPs: torch.mm (MKL's sgemm for float32 on x86, oneDNN for bfloat16; cuBLAS on
CUDA) and, on a CPU with oneDNN, oneDNN's inner product (`torch._C._nn.mkldnn_linear`, the kernel family of
the convolutions). Both are measured because on AMD CPUs MKL's sgemm runs far below the core's float32 rate
(about 105 against oneDNN's 235 GFLOP/s per core on the development machine's AVX-512 EPYC), and a floor
from the slower library is one the convolutions beat.
floor (img/s) = throughput at that precision / (step FLOPs per image).
"""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def step_flops(model, objective, img_size, batch: int = 2) -> dict:
    """{"forward", "backward", "step"}: FLOPs per image of one training step (forward incl. Eq. 7, backward).

    Runs on a copy of nothing: the model's parameters get gradients (zeroed afterwards), no optimizer step."""
    p = next(model.parameters())
    x = torch.rand(batch, *img_size, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as fwd:
            terms = objective(x, model(x), 1)
        with FlopCounterMode(display=False) as bwd:
            terms.total.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    f, b = fwd.get_total_flops() / batch, bwd.get_total_flops() / batch
    return {"forward": f, "backward": b, "step": f + b}


def _median_rate(run, flops_per_call: float, sync, repeats: int) -> float:
    """Median FLOP/s over `repeats` timings of `run()` (each >= 0.1 s and >= 2 calls), one warm-up call."""
    run()
    sync()
    rates = []
    for _ in range(repeats):
        reps = 0
        t0 = time.perf_counter()
        while True:
            run()
            reps += 1
            sync()
            dt = time.perf_counter() - t0
            if dt > 0.1 and reps >= 2:
                break
        rates.append(flops_per_call * reps / dt)
    return statistics.median(rates)


def matmul_rates(device="cpu", n: int | None = None, repeats: int = 5, precision: str = "fp32") -> dict:
    """{library: FLOP/s} of an n x n by n x n product at the precision's dtype (n = 2048 on CPU, 8192 on
    CUDA): "torch.mm" always; "onednn" (mkldnn_linear on oneDNN tensors) on a CPU with oneDNN."""
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == "cuda" else 2048
    dtype = DTYPES[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        rates = {"torch.mm": _median_rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, sync, repeats)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        rates["onednn"] = _median_rate(lambda: torch._C._nn.mkldnn_linear(am, bm, None), 2.0 * n**3, sync, repeats)
    return rates


def floor_report(counted: dict, rates: dict, precision: str = "fp32") -> dict:
    """{precision, step_flops_per_image, forward_flops_per_image, matmul_gflops (the fastest library's),
    matmul_gflops_by_library, floor_img_per_s} from step_flops' count and matmul_rates' {library: FLOP/s}."""
    fastest = max(rates.values())
    return {
        "precision": precision,
        "step_flops_per_image": counted["step"],
        "forward_flops_per_image": counted["forward"],
        "matmul_gflops": fastest / 1e9,
        "matmul_gflops_by_library": {k: v / 1e9 for k, v in rates.items()},
        "floor_img_per_s": fastest / counted["step"],
    }


def describe_rates(report: dict) -> str:
    """"230 GFLOP/s (the fastest of: torch.mm 106, onednn 230)" from a floor_report."""
    libs = ", ".join(f"{k} {v:.0f}" for k, v in report["matmul_gflops_by_library"].items())
    return f"{report['matmul_gflops']:.0f} GFLOP/s (the fastest of: {libs})"
