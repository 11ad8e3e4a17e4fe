"""The compute floor of a training step: its FLOPs, counted exactly, over the machine's matmul rate.

Counting: `torch.utils.flop_counter.FlopCounterMode` over one full training step of the model -- forward,
Eq. 7 and backward, as `TrainStep` runs them -- counts the FLOPs of every matmul-class aten op
(convolutions and their backward, transposed convolutions, mm/addmm of the linear layers: 2 per
multiply-add), only for the gradients autograd actually computes (no input gradient of the first
convolution). Elementwise work (ReLU, loss, the latent ops, Adam) is not counted: it is memory-bound and
small, so the floor is a little optimistic. The count is per image (a step of `batch` images / batch)
and the same at every precision. Throughput: median over repeats of torch.mm of two n x n matrices of
the precision's dtype (float32 with TF32 off on CUDA, or bfloat16), 2 n^3 FLOPs each.
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


def matmul_flops_per_second(device="cpu", n: int | None = None, repeats: int = 5, precision: str = "fp32") -> float:
    """Median FLOP/s of torch.mm(a, b), a, b [n, n] of the precision's dtype (n = 2048 on CPU, 8192 on CUDA),
    warm-up excluded."""
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == "cuda" else 2048
    dtype = DTYPES[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        torch.mm(a, b, out=out)
        sync()
        rates = []
        for _ in range(repeats):
            reps = 0
            t0 = time.perf_counter()
            while True:
                torch.mm(a, b, out=out)
                reps += 1
                sync()
                dt = time.perf_counter() - t0
                if dt > 0.1 and reps >= 2:
                    break
            rates.append(2.0 * n**3 * reps / dt)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return statistics.median(rates)


def floor_report(counted: dict, throughput: float, precision: str = "fp32") -> dict:
    """{precision, step_flops_per_image, forward_flops_per_image, matmul_gflops, floor_img_per_s} from
    step_flops' count and a matmul rate (FLOP/s) at that precision."""
    return {
        "precision": precision,
        "step_flops_per_image": counted["step"],
        "forward_flops_per_image": counted["forward"],
        "matmul_gflops": throughput / 1e9,
        "floor_img_per_s": throughput / counted["step"],
    }
