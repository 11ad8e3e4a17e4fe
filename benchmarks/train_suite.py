"""Train suite: images per second of a full training step, paper-style baseline vs our fast path.

A step is everything a training run does per batch: getting the batch, forward, loss, backward,
optimizer step.
- baseline (benchmarks/baseline.py): DataLoader over per-sample tensors, noise drawn on the CPU,
  sigmoid + binary_cross_entropy, ~10-op Gumbel-Softmax, torch.optim.Adam defaults, loss.item() per step.
- fast (what `train` uses): the images resident on the device as uint8 and gathered there in the loop's
  seeded order (jointvae_fast.training.batches.TrainImages), TrainStep + make_optimizer defaults (fused ops,
  fused Adam, channels_last and the allocator setting on CPU, CUDA graph on CUDA), each step's loss
  terms appended to a device buffer as the loop does, no host sync until the end.

On the CPU each measurement runs in its own fresh process (`--worker`), so process-wide settings of
one variant (the fast path's allocator setting) never reach the other (on CUDA, where no such setting
exists, baseline and fast run in the suite's own process), and baseline and fast processes
alternate round by round (the machine may be shared). In a worker: `warmup` steps untimed, then
`steps` timed steps -> img/s. A row's img/s is the median over `repeats` rounds; ratio = fast / baseline
of those medians. Each run also reports images per CPU second of its process (`*_img_per_cpu_s`):
on a machine shared with other jobs that number moves much less than wall-clock img/s (with one
thread it is the img/s the run would reach alone). The models are the paper's:
32x32 = mnist preset (10 continuous, one 10-way; lr 5e-4),
64x64 = chairs preset (32 continuous, one 10-way; lr 1e-4), one channel, random uint8 images.

Standalone: python benchmarks/train_suite.py [--size 32 64] [--batch-size 64 256] [--device cpu] ...
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = {  # size -> (cont, disc, lr, (c_max_cont, iters, gamma_cont), (c_max_disc, iters, gamma_disc))
    32: (10, [10], 5e-4, (5.0, 25000, 30.0), (5.0, 25000, 30.0)),
    64: (32, [10], 1e-4, (30.0, 100000, 300.0), (5.0, 100000, 300.0)),
}
VARIANTS = ("baseline", "fast")
# ablation variants: the fast path with one part switched off (see `worker_fast`)
ABLATIONS = ("fast", "fast-no-allocator", "fast-no-channels-last", "fast-default-adam", "fast-composite-ops", "eager",
             "baseline-tuned-allocator")
N_IMAGES = 2048
BASELINE_MODE = "eager (paper-style baseline)"


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(size: int, n: int):
    import torch

    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)


def worker_baseline(size: int, batch: int, device: str, warmup: int, steps: int,
                    tuned_allocator: bool = False) -> tuple[float, float, str]:
    """(img per wall second, img per CPU second of this process, step mode) of `steps` paper-style steps
    after `warmup` untimed ones (optionally with the fast path's
    allocator setting, to show how much of the difference that setting alone makes)."""
    import torch

    if tuned_allocator:
        from jointvae_fast.training.allocator import tune_cpu_allocator

        tune_cpu_allocator()

    from benchmarks.baseline import baseline_loader, make_baseline

    torch.manual_seed(0)
    cont, disc, lr, cc, dc = PRESETS[size]
    dev = torch.device(device)
    _, trainer = make_baseline((1, size, size), cont, disc, lr, (0.0, *cc), (0.0, *dc), device=dev)
    batches = itertools.chain.from_iterable(
        baseline_loader(_images(size, max(N_IMAGES, 2 * batch)), batch, seed=e) for e in itertools.count()
    )
    for _ in range(warmup):
        trainer.step(next(batches)[0])
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.step(next(batches)[0])
    _sync(dev)
    return batch * steps / (time.perf_counter() - t0), batch * steps / (time.process_time() - c0), BASELINE_MODE


def worker_fast(size: int, batch: int, device: str, warmup: int, steps: int,
                variant: str = "fast") -> tuple[float, float, str]:
    """(img per wall second, img per CPU second of this process, TrainStep.step_mode of the last timed step:
    "cuda-graph" or "eager (why)") of `steps` steps of the training loop's path after `warmup` untimed ones.

    variant: "fast" (defaults), or one part off: "fast-no-allocator", "fast-no-channels-last",
    "fast-default-adam", "fast-composite-ops" (JOINTVAE_FAST_BACKEND=composite must be set before import,
    the caller does that), "eager" (all of them off: composite ops, default Adam, no layout/allocator change).
    """
    import torch

    from jointvae_fast.training.batches import TrainImages, epoch_permutation
    from jointvae_fast.model import JointVAE
    from jointvae_fast.objective import Capacity, Objective
    from jointvae_fast.training.allocator import tune_cpu_allocator
    from jointvae_fast.training.step import TrainStep, make_optimizer

    torch.manual_seed(0)
    cont, disc, lr, cc, dc = PRESETS[size]
    dev = torch.device(device)
    model = JointVAE((1, size, size), cont, disc).to(dev)
    model.train()
    eager = variant == "eager"
    optimizer = make_optimizer(model, lr, fused=False if (eager or variant == "fast-default-adam") else None)
    objective = Objective(tuple(disc), Capacity(0.0, *cc), Capacity(0.0, *dc))
    gen = torch.Generator(device=dev).manual_seed(0)
    if dev.type == "cpu" and not (eager or variant == "fast-no-allocator"):
        tune_cpu_allocator()  # as the training CLI does at its start
    kw = {}
    if eager or variant == "fast-no-channels-last":
        kw["channels_last"] = False
    if eager:
        kw["cuda_graph"] = False
    step_fn = TrainStep(model, optimizer, objective, generator=gen, **kw)
    data = TrainImages(_images(size, max(N_IMAGES, 2 * batch)), dev)
    per_epoch = len(data) // batch
    buf = torch.zeros(64, 3 + cont + len(disc), device=dev)

    def run(first: int, n: int):
        perm = None
        for step in range(first, first + n):
            epoch, pos = divmod(step - 1, per_epoch)
            if perm is None or pos == 0:
                perm = epoch_permutation(len(data), 0, epoch, dev)
            x = data.batch(perm[pos * batch : (pos + 1) * batch])
            t = step_fn(x, step)
            with torch.no_grad():
                torch.cat([t.total.detach().reshape(1), t.recon.detach().reshape(1),
                           t.capacity_loss.detach().reshape(1),
                           t.kl_cont.detach().reshape(-1), t.kl_disc.detach().reshape(-1)], out=buf[step % 64])

    if step_fn.cuda_graph:  # capture happens on call warmup + 1 of TrainStep: keep it out of the timing
        warmup = max(warmup, step_fn.warmup + 2)
    run(1, warmup)
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    run(warmup + 1, steps)
    _sync(dev)
    return (batch * steps / (time.perf_counter() - t0), batch * steps / (time.process_time() - c0),
            step_fn.step_mode)


def measure_in_subprocess(variant: str, size: int, batch: int, device: str, warmup: int, steps: int,
                          threads: int | None = None, timeout: float = 600.0) -> tuple[float, float, str]:
    """Run one worker in a fresh Python process; returns its (img/s, img per CPU second, step mode)."""
    env = dict(os.environ)
    if variant in ("eager", "fast-composite-ops"):
        env["JOINTVAE_FAST_BACKEND"] = "composite"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.train_suite", "--worker", variant, "--size", str(size),
           "--batch-size", str(batch), "--device", device, "--warmup", str(warmup), "--steps", str(steps)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"train-suite worker {variant} size={size} batch={batch} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(res["img_per_s"]), float(res["img_per_cpu_s"]), str(res["step_mode"])


def measure_in_process(variant: str, size: int, batch: int, device: str, warmup: int, steps: int):
    """(img/s, img per CPU second, step mode) of the baseline or the fast path, in this process (used on CUDA)."""
    if variant == "baseline":
        return worker_baseline(size, batch, device, warmup, steps)
    return worker_fast(size, batch, device, warmup, steps, variant)


def run(sizes=(32, 64), batch_sizes=(64, 256), device: str = "cpu", steps: int | None = None, warmup: int = 3,
        repeats: int = 3, variants=VARIANTS, log=None, threads: int | None = None) -> list[dict]:
    """Rows {device, size, batch, <variant>_img_s, <variant>_runs, <variant>_step_mode (how its steps ran:
    "cuda-graph" or "eager (why)"), ratio (fast/baseline)}; rounds alternate variants."""
    rows = []
    for size in sizes:
        for batch in batch_sizes:
            if steps is not None:
                n = steps
            elif device == "cpu":
                n = max(5, min(30, 2560 // batch))
            else:
                n = max(50, 25600 // batch)
            runs = {v: [] for v in variants}
            cpu_runs = {v: [] for v in variants}
            modes = {v: [] for v in variants}
            for _ in range(repeats):
                for v in variants:
                    if device != "cpu" and v in ("baseline", "fast"):  # no process-wide CPU setting involved:
                        wall, cpu, mode = measure_in_process(v, size, batch, device, warmup, n)  # no start-up
                    else:
                        wall, cpu, mode = measure_in_subprocess(v, size, batch, device, warmup, n, threads)
                    runs[v].append(wall)
                    cpu_runs[v].append(cpu)
                    modes[v].append(mode)
            row = {"device": device, "size": size, "batch": batch, "steps": n, "warmup": warmup, "repeats": repeats,
                   "threads": threads}
            for v in variants:
                row[f"{v}_img_s"] = statistics.median(runs[v])
                row[f"{v}_runs"] = runs[v]
                row[f"{v}_img_per_cpu_s"] = statistics.median(cpu_runs[v])
                row[f"{v}_step_mode"] = " | ".join(dict.fromkeys(modes[v]))  # the distinct modes of its runs
            if "baseline" in variants and "fast" in variants:
                row["ratio"] = row["fast_img_s"] / row["baseline_img_s"]
            rows.append(row)
            if log:
                log(format_table([row], variants, header=False))
    return rows


def format_table(rows: list[dict], variants=VARIANTS, header: bool = True, key: str = "img_s") -> str:
    """One line per row; key "img_s" (wall clock) or "img_per_cpu_s" (per CPU second of the run's process)."""
    unit = " img/s" if key == "img_s" else " img/cpu-s"
    cols = "".join(f" {v + unit:>28}" for v in variants)
    head = f"{'device':6} {'size':>5} {'batch':>6}{cols} {'ratio':>6}"
    lines = [head, "-" * len(head)] if header else []
    for r in rows:
        vals = "".join(f" {r[v + '_' + key]:28.0f}" for v in variants)
        ratio = f"{r[f'fast_{key}'] / r[f'baseline_{key}']:6.2f}" if "ratio" in r else f"{'':6}"
        lines.append(f"{r['device']:6} {r['size']:>5} {r['batch']:>6}{vals} {ratio}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=("baseline",) + ABLATIONS, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int,
                    help="timed steps per run (default on CPU: min(30, 2560 // batch), at least 5)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads in each run (default: torch's own)")
    ap.add_argument("--ablation", action="store_true", help="also time the fast path with each part switched off")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        size, batch = args.size[0], args.batch_size[0]
        steps = args.steps if args.steps is not None else 10
        if args.worker in ("baseline", "baseline-tuned-allocator"):
            wall, cpu, mode = worker_baseline(size, batch, args.device, args.warmup, steps, args.worker != "baseline")
        else:
            wall, cpu, mode = worker_fast(size, batch, args.device, args.warmup, steps, args.worker)
        print(json.dumps({"img_per_s": wall, "img_per_cpu_s": cpu, "step_mode": mode}))
        return 0
    variants = ("baseline",) + ABLATIONS if args.ablation else VARIANTS
    from benchmarks.machine import describe, one_line

    print("#", one_line(describe()))
    print(format_table([], variants))
    rows = run(tuple(args.size), tuple(args.batch_size), args.device, args.steps, args.warmup, args.repeats,
               variants, log=print, threads=args.threads)
    print("# the same runs, images per CPU second of each run's process:")
    print(format_table(rows, variants, key="img_per_cpu_s"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": describe(), "train": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
