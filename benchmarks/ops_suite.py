"""Ops benchmark: forward + backward of the fused latent ops vs their pure-PyTorch composites.

One timed step, the same for both: mu, logvar, logits as column slices of one leaf [B, 2D + K] tensor
(the encoder's layout) -> sample_latent + kl_capacity_loss -> autograd.backward of (latent, loss) with
a fixed upstream gradient. Median over repeats of the mean time per step; ratio = composite / fused.
On CUDA at the large batch it also reports the four fused kernels alone (no autograd) against the bytes
they must move, as a fraction of the measured device copy bandwidth.

Importable (benchmarks/run.py calls `run` and `format_table`) or standalone:
    python benchmarks/ops_suite.py [--device cpu|cuda] [--batch-size 64 65536] [--json PATH] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jointvae_fast import ops  # noqa: E402

# The paper's latent specs (Appendix C): chairs 32 continuous + one 10-way; mnist 10 + one 10-way.
LATENTS = {"chairs": (32, [10]), "mnist": (10, [10])}
TAU = 0.67


def machine() -> dict:
    """CPU model, core count, GPU name, torch version, backend."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "backend": ops.backend(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_per_call(fn, device: str, repeats: int, min_seconds: float) -> float:
    """Median over `repeats` of the mean seconds per call (each repeat runs >= min_seconds), warm-up excluded."""
    for _ in range(3):
        fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds / 4 or n < 3:
        fn()
        n += 1
    _sync(device)
    per = (time.perf_counter() - t0) / n
    inner = max(1, int(min_seconds / max(per, 1e-9)))
    samples = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - t) / inner)
    return statistics.median(samples)


def _step(sample, kl, P, D, dims, gz, one):
    mu, lv, lg = P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]
    z = sample(mu, lv, lg, dims, TAU)
    loss, _, _ = kl(mu, lv, lg, dims, 5.0, 1.0, 30.0, 30.0)
    torch.autograd.backward((z, loss), (gz, one))
    P.grad = None


def fused_bytes(B: int, D: int, K: int, itemsize: int = 4) -> int:
    """Bytes the four fused kernels must move (reads + writes), fwd and bwd of both ops."""
    V = 0  # per-variable outputs are negligible
    sample_fwd = 2 * B * D + B * K + B * (D + K) + B * D
    kl_fwd = 2 * B * D + B * K + V
    sample_bwd = B * (D + K) + B * K + B * D + 2 * B * D + B * K
    kl_bwd = (2 * B * D + B * K) * 2
    return itemsize * (sample_fwd + kl_fwd + sample_bwd + kl_bwd)


def _copy_bandwidth(device: str) -> float:
    """Measured device copy bandwidth in bytes/s (read + write) of a 256 MiB buffer."""
    x = torch.empty(64 * 2**20, device=device)
    y = torch.empty_like(x)
    t = time_per_call(lambda: y.copy_(x), device, 5, 0.2)
    return 2 * x.numel() * 4 / t


def bench_case(latent: str, B: int, device: str, repeats: int = 7, min_seconds: float = 0.2) -> dict:
    """One row: fused and composite step times (ms) and their ratio for a latent spec and batch size."""
    D, dims = LATENTS[latent]
    K = sum(dims)
    g = torch.Generator(device=device).manual_seed(0)
    P = torch.randn(B, 2 * D + K, device=device, generator=g).requires_grad_()
    gz = torch.randn(B, D + K, device=device, generator=g)
    one = torch.ones((), device=device)
    row = {"suite": "ops", "latent": latent, "device": device, "batch": B, "D": D, "disc": dims}
    t_comp = time_per_call(lambda: _step(ops.composite_sample_latent, ops.composite_kl_capacity_loss, P, D, dims, gz,
                                         one), device, repeats, min_seconds)
    row["composite_ms"] = t_comp * 1e3
    if ops.backend() == "composite" or (device == "cuda" and ops.backend() != "cuda+cpu"):
        row.update(fused_ms=None, ratio=None, note=f"fused ops unavailable: {ops.backend_info()['reason']}")
        return row
    t_fused = time_per_call(lambda: _step(ops.sample_latent, ops.kl_capacity_loss, P, D, dims, gz, one), device,
                            repeats, min_seconds)
    row["fused_ms"] = t_fused * 1e3
    row["ratio"] = t_comp / t_fused
    if device == "cuda" and B >= 16384:
        mu, lv, lg = P.detach()[:, :D], P.detach()[:, D : 2 * D], P.detach()[:, 2 * D :]
        sl, slb = torch.ops.jointvae.sample_latent.default, torch.ops.jointvae.sample_latent_backward.default
        kl, klb = torch.ops.jointvae.kl_capacity_loss.default, torch.ops.jointvae.kl_capacity_loss_backward.default

        def kernels_only():
            lat, se, _ = sl(mu, lv, lg, dims, TAU, True, None, None, None)
            loss, kc, kd = kl(mu, lv, lg, dims, 5.0, 1.0, 30.0, 30.0)
            slb(gz, lat, se, dims, TAU, True)
            klb(one, None, None, mu, lv, lg, kc, kd, dims, 5.0, 1.0, 30.0, 30.0)

        with torch.no_grad():
            t_k = time_per_call(kernels_only, device, repeats, min_seconds)
        nbytes = fused_bytes(B, D, K)
        peak = _copy_bandwidth(device)
        row.update(kernels_ms=t_k * 1e3, kernel_bytes=nbytes, kernel_GBps=nbytes / t_k / 1e9,
                   copy_GBps=peak / 1e9, bandwidth_fraction=nbytes / t_k / peak)
    return row


def run(devices=None, batch_sizes=(64, 65536), latents=("chairs", "mnist"), quick: bool = False) -> list[dict]:
    """All rows for the given devices (default: cpu, plus cuda when visible)."""
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    reps, secs = (3, 0.05) if quick else (7, 0.25)
    return [bench_case(lat, B, dev, reps, secs) for dev in devices for B in batch_sizes for lat in latents]


def format_table(rows: list[dict]) -> str:
    head = f"{'device':6} {'latent':7} {'batch':>6} {'composite ms':>13} {'fused ms':>9} {'ratio':>6}  extra"
    lines = [head, "-" * len(head)]
    for r in rows:
        fused = f"{r['fused_ms']:9.4f}" if r.get("fused_ms") is not None else f"{'-':>9}"
        ratio = f"{r['ratio']:6.2f}" if r.get("ratio") is not None else f"{'-':>6}"
        extra = ""
        if "bandwidth_fraction" in r:
            extra = (f"kernels {r['kernels_ms']:.4f} ms, {r['kernel_GBps']:.0f} GB/s = "
                     f"{100 * r['bandwidth_fraction']:.0f}% of copy {r['copy_GBps']:.0f} GB/s")
        elif r.get("note"):
            extra = r["note"]
        lines.append(f"{r['device']:6} {r['latent']:7} {r['batch']:>6} {r['composite_ms']:13.4f} {fused} {ratio}  {extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", action="append", choices=["cpu", "cuda"], help="repeatable; default cpu (+cuda)")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 65536])
    ap.add_argument("--json", type=Path, help="write {machine, rows} here")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter repeats (smoke run)")
    args = ap.parse_args(argv)
    rows = run(args.device, tuple(args.batch_size), quick=args.quick)
    info = machine()
    print(f"# {info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads), gpu={info['gpu']}, "
          f"torch {info['torch']}, backend {info['backend']}")
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
