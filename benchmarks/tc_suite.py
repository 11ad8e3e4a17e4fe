"""Total-correlation benchmark: forward + backward of ops.tc_pairwise (fused: streaming logsumexps) against
ops.composite_tc_pairwise (materialises B x B x (D + V)), time and peak memory, CPU.

Each (latent, B, implementation) runs in a fresh subprocess (`python benchmarks/tc_suite.py --one ...`) with
the given torch threads: the step is log_q_joint.sum() - log_q_marginals.sum() and its backward to z, mu, logvar,
y, logits. Time: the median of `repeats` steps after one warm-up. Memory: the growth of the process's peak
resident set (ru_maxrss) over the step, after inputs, warm-up of the library and a first small call: what the
step allocates at its peak (0 when it stays below the earlier peak). The composite is skipped where its
estimated need (6 B^2 (D + V) 4 bytes) exceeds `max_composite_gb`.

    python benchmarks/run.py --suite tc --threads 1 --json out.json
"""
from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LATENTS = {"mnist": (10, [10]), "chairs": (32, [10])}
BATCHES = (64, 256, 1024, 4096)


def _inputs(B, D, dims):
    import torch

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(B, D, generator=g).requires_grad_()
    lv = (0.5 * torch.randn(B, D, generator=g)).requires_grad_()
    z = (mu + torch.randn(B, D, generator=g)).detach().requires_grad_()
    lg = torch.randn(B, sum(dims), generator=g).requires_grad_()
    y = torch.softmax(lg.detach(), dim=1).requires_grad_()
    w = torch.full((B, B), -math.log(B * 60000.0))
    return z, mu, lv, y, lg, w


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure_one(impl: str, latent: str, B: int, repeats: int, threads: int) -> dict:
    """Time (ms, median) and peak-memory growth (bytes) of one implementation's step, in this process."""
    import torch

    from jointvae_fast import ops

    torch.set_num_threads(threads)
    fn = ops.tc_pairwise if impl == "fused" else ops.composite_tc_pairwise
    D, dims = LATENTS[latent]
    small = _inputs(4, D, dims)
    step_small = fn(*small[:5], dims, small[5])
    (step_small[0].sum() - step_small[1].sum()).backward()
    z, mu, lv, y, lg, w = _inputs(B, D, dims)

    def step():
        joint, marg = fn(z, mu, lv, y, lg, dims, w)
        (joint.sum() - marg.sum()).backward()
        for t in (z, mu, lv, y, lg):
            t.grad = None

    before = _peak_bytes()
    step()
    grew = max(0, _peak_bytes() - before)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"impl": impl, "latent": latent, "D": D, "disc": dims, "batch": B, "threads": threads,
            "ms": statistics.median(times) * 1e3, "runs_ms": [t * 1e3 for t in times], "peak_growth_bytes": grew,
            "backend": ops.backend()}


def run(batch_sizes=BATCHES, latents=("mnist", "chairs"), threads: int = 1, max_composite_gb: float = 6.0) -> list:
    """One row per (latent, B): fused and composite ms, their ratio, and each one's peak-memory growth."""
    rows = []
    for latent in latents:
        D, dims = LATENTS[latent]
        for B in batch_sizes:
            repeats = 3 if B >= 1024 else 7
            row = {"suite": "tc", "latent": latent, "D": D, "disc": dims, "batch": B, "threads": threads}
            for impl in ("fused", "composite"):
                need_gb = 6 * B * B * (D + len(dims)) * 4 / 2**30
                if impl == "composite" and need_gb > max_composite_gb:
                    row["composite_note"] = f"skipped: needs ~{need_gb:.0f} GiB (estimate)"
                    continue
                cmd = [sys.executable, str(Path(__file__).resolve()), "--one", impl, latent, str(B), str(repeats),
                       str(threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row[impl] = json.loads(out.strip().splitlines()[-1])
            if "composite" in row:
                row["ratio"] = row["composite"]["ms"] / row["fused"]["ms"]
            rows.append(row)
    return rows


def format_table(rows: list) -> str:
    head = f"{'latent':7} {'B':>5} {'fused ms':>10} {'composite ms':>13} {'ratio':>6} {'fused MiB':>10} {'comp MiB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        f, c = r["fused"], r.get("composite")
        comp = f"{c['ms']:13.2f}" if c else f"{'-':>13}"
        ratio = f"{r['ratio']:6.2f}" if c else f"{'-':>6}"
        cmem = f"{c['peak_growth_bytes'] / 2**20:9.1f}" if c else f"{'-':>9}"
        lines.append(f"{r['latent']:7} {r['batch']:>5} {f['ms']:10.2f} {comp} {ratio} "
                     f"{f['peak_growth_bytes'] / 2**20:10.1f} {cmem}  {r.get('composite_note', '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--one":
        _, _, impl, latent, B, repeats, threads = sys.argv
        print(json.dumps(measure_one(impl, latent, int(B), int(repeats), int(threads))))
    else:
        rows = run()
        print(format_table(rows))
