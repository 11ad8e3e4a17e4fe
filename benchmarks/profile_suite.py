"""Where a CPU training step's time goes: torch.profiler over the fast path's steps, at each precision.

Each (size, precision) runs in a fresh process (the fast path's allocator setting stays there): `warmup`
untimed steps, then `steps` steps timed without the profiler (ms per step, and the share of the floor:
floor time per step / measured time), then the same number of steps under torch.profiler (CPU activity),
whose ops are ranked by self CPU time. The floor is benchmarks/flops.py's: the step's exact FLOP count
over the matmul rate at that precision, measured in the same process.

    python benchmarks/profile_suite.py --size 32 64 --precision fp32,bf16 --steps 20 [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.train_suite import PRESETS, fast_runner, parse_precisions  # noqa: E402


def profile_worker(size: int, batch: int, precision: str, steps: int, warmup: int, top: int) -> dict:
    """{size, batch, precision, ms_per_step, floor_ms_per_step, share_of_floor, ops: [{name, self_cpu_ms
    per step, share}]} of the fast path on the CPU."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks import flops
    from jointvae_fast.model import JointVAE
    from jointvae_fast.objective import Capacity, Objective

    run, step_fn = fast_runner(size, batch, "cpu", "fast", precision)
    run(1, warmup)
    t0 = time.perf_counter()
    run(warmup + 1, steps)
    ms = (time.perf_counter() - t0) * 1e3 / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(warmup + steps + 1, steps)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    ops = [{"name": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "share": e.self_cpu_time_total / total_us, "calls_per_step": e.count / steps} for e in events[:top]]
    cont, disc, _, cc, dc = PRESETS[size]
    counted = flops.step_flops(JointVAE((1, size, size), cont, disc),
                               Objective(tuple(disc), Capacity(0.0, *cc), Capacity(0.0, *dc)), (1, size, size))
    floor = flops.floor_report(counted, flops.matmul_rates("cpu", precision=precision), precision)
    floor_ms = batch / floor["floor_img_per_s"] * 1e3
    return {"size": size, "batch": batch, "precision": precision, "threads": torch.get_num_threads(),
            "ms_per_step": ms, "floor_ms_per_step": floor_ms, "share_of_floor": floor_ms / ms,
            "matmul_gflops": floor["matmul_gflops"], "matmul_gflops_by_library": floor["matmul_gflops_by_library"],
            "step_flops_per_image": counted["step"], "ops": ops}


def run(sizes=(32, 64), batch: int = 64, precisions=("fp32", "bf16"), steps: int = 20, warmup: int = 3,
        top: int = 12, threads: int | None = None, timeout: float = 600.0) -> list[dict]:
    """One profile_worker result per (size, precision), each from a fresh process."""
    out = []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for size in sizes:
        for p in precisions:
            cmd = [sys.executable, "-m", "benchmarks.profile_suite", "--worker", "--size", str(size),
                   "--batch-size", str(batch), "--precision", p, "--steps", str(steps), "--warmup", str(warmup),
                   "--top", str(top)] + (["--threads", str(threads)] if threads else [])
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"profile worker size={size} precision={p} failed:\n{proc.stderr[-3000:]}")
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def format_profiles(results: list[dict]) -> str:
    from benchmarks import flops

    lines = []
    for r in results:
        lines.append(f"# {r['size']}x{r['size']} batch {r['batch']} {r['precision']} ({r['threads']} threads): "
                     f"{r['ms_per_step']:.2f} ms/step, floor {r['floor_ms_per_step']:.2f} ms "
                     f"({r['step_flops_per_image'] / 1e6:.1f} MFLOP/img at {flops.describe_rates(r)}) "
                     f"-> {r['share_of_floor']:.2f} of the floor")
        lines += [f"  {o['share'] * 100:5.1f}%  {o['self_cpu_ms_per_step']:7.3f} ms/step  {o['name']}" for o in r["ops"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", type=parse_precisions, default=("fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=20, help="timed steps, then as many profiled")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=12, help="ops listed, by self CPU time")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(profile_worker(args.size[0], args.batch_size, args.precision[0], args.steps,
                                        args.warmup, args.top)))
        return 0
    results = run(tuple(args.size), args.batch_size, args.precision, args.steps, args.warmup, args.top, args.threads)
    print(format_profiles(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
