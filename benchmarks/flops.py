"""The compute floor of a training step: FLOPs counted from the network over the machine's matmul rate.

Counting (per image): a Conv2d / ConvTranspose2d / Linear layer does MACs = (output elements) x
(input channels / features) x (kernel area) (for a transposed convolution the input elements times
Cout x kernel area); forward FLOPs = 2 x MACs; backward ~ 2 x forward (input and weight gradients);
a training step ~ 3 x forward. Elementwise work (ReLU, loss, latent sampling, Adam) is left out: it is
memory-bound and small. Throughput: median over repeats of torch.mm of two n x n float32 matrices
(TF32 off on CUDA), 2 n^3 FLOPs each. floor (img/s) = throughput / (step FLOPs per image).
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def layer_macs(model: nn.Module, img_size) -> list[tuple[str, int]]:
    """[(layer name, MACs per image)] for every Conv2d, ConvTranspose2d and Linear, found by a forward hook pass."""
    found: list[tuple[str, int]] = []
    hooks = []

    def hook(name):
        def f(mod, inp, out):
            x = inp[0]
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = out[0].numel() * (mod.in_channels // mod.groups) * k
            elif isinstance(mod, nn.ConvTranspose2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = x[0].numel() * (mod.out_channels // mod.groups) * k
            else:
                macs = mod.in_features * mod.out_features
            found.append((name, int(macs)))
        return f

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *img_size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return found


def step_flops_per_image(model: nn.Module, img_size) -> float:
    """FLOPs of one training step per image: 3 x 2 x MACs (forward + backward ~ 2 x forward)."""
    return 3.0 * 2.0 * sum(m for _, m in layer_macs(model, img_size))


def matmul_flops_per_second(device="cpu", n: int | None = None, repeats: int = 5) -> float:
    """Median FLOP/s of torch.mm(a, b), a, b float32 [n, n] (n = 2048 on CPU, 8192 on CUDA), warm-up excluded."""
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
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


def floor_report(model: nn.Module, img_size, throughput: float) -> dict:
    """{macs_per_image, step_flops_per_image, matmul_gflops, floor_img_per_s, layers}."""
    layers = layer_macs(model, img_size)
    flops = 6.0 * sum(m for _, m in layers)
    return {
        "macs_per_image": sum(m for _, m in layers),
        "step_flops_per_image": flops,
        "matmul_gflops": throughput / 1e9,
        "floor_img_per_s": throughput / flops,
        "layers": layers,
    }
