"""Layers suite: forward + backward of each transposed convolution of the paper's decoders, the bias fused into
the convolution (nn.ConvTranspose2d) against added apart (jointvae_fast.model.BiasApartConvTranspose2d).

Each layer at the input shape it sees in training (batch B, channels_last, the CPU allocator setting of `train`),
at each precision (bf16: under torch.autocast, as the training step runs it): the median over `repeats` rounds
of `iters` calls of forward, then backward of a fixed upstream gradient into the input, weight and bias.
In the process that runs it (CPU only), as `--suite profile` is: not part of `--suite all`.

    python benchmarks/run.py --suite layers --size 32 64 --precision fp32,bf16 --threads 1
"""
from __future__ import annotations

import statistics
import time
import types

import torch
from torch import nn


def _decoder_layers(size: int):
    """[(name, layer, input shape without batch)] of the paper's decoder at this image size (one channel)."""
    from jointvae_fast.model import FEATURES, JointVAE

    model = JointVAE((1, size, size), 10, [10])
    out, shape = [], FEATURES
    for i, m in enumerate(model.features_to_img):
        if isinstance(m, nn.ConvTranspose2d):
            out.append((f"features_to_img.{i} {m.in_channels}->{m.out_channels} at {shape[1]}x{shape[2]}", m, shape))
            shape = (m.out_channels, 2 * shape[1], 2 * shape[2])
    return out


def _time_layer(layer, shape, batch: int, precision: str, fused: bool, iters: int, repeats: int) -> float:
    """Median ms of forward + backward of `layer` on [batch, *shape] (channels_last)."""
    layer = layer.to(memory_format=torch.channels_last)
    layer.forward = types.MethodType(nn.ConvTranspose2d.forward if fused else type(layer).forward, layer)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    bf16 = precision == "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        grad = torch.randn_like(layer(x))

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.backward(grad)

    try:
        for _ in range(3):
            once()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                once()
            times.append((time.perf_counter() - t0) / iters * 1e3)
    finally:
        del layer.forward  # back to the class's own forward
    return statistics.median(times)


def run(sizes=(32, 64), batch: int = 64, precisions=("fp32", "bf16"), iters: int = 20, repeats: int = 5) -> list[dict]:
    """Rows {size, layer, precision, batch, fused_ms, apart_ms, fused_over_apart}, fused and apart alternating."""
    from jointvae_fast.training.allocator import tune_cpu_allocator

    tune_cpu_allocator()  # as `train` does: without it, page faults of the largest tensors dominate the timings
    rows = []
    for size in sizes:
        for name, layer, shape in _decoder_layers(size):
            for p in precisions:
                fused = _time_layer(layer, shape, batch, p, True, iters, repeats)
                apart = _time_layer(layer, shape, batch, p, False, iters, repeats)
                rows.append({"size": size, "layer": name, "precision": p, "batch": batch, "fused_ms": fused,
                             "apart_ms": apart, "fused_over_apart": fused / apart})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'size':>4} {'layer':40} {'prec':>5} {'fused ms':>9} {'apart ms':>9} {'fused/apart':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['size']:>4} {r['layer']:40} {r['precision']:>5} {r['fused_ms']:9.3f} {r['apart_ms']:9.3f} "
                     f"{r['fused_over_apart']:11.2f}")
    return "\n".join(lines)
