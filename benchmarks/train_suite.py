"""Train suite: images per second of a full training step, paper-style baseline vs our fast path.

A step is everything a training run does per batch: getting the batch, forward, loss, backward,
optimizer step.
- baseline (benchmarks/baseline.py): the paper's training step as its code runs it at its best: float
  batches sliced from one in-memory tensor, noise drawn on the CPU, separate heads, sigmoid +
  binary_cross_entropy, ~10-op Gumbel-Softmax with EPS logs, torch.optim.Adam defaults, loss.item() per
  step, float32, the process's default allocator. "baseline-dataloader": the same step fed by a DataLoader
  over per-sample tensors (the previous, slower baseline; a second, labelled column).
- fast (what `train` uses): the images resident on the device as uint8 and gathered there in the loop's
  seeded order (jointvae_fast.training.batches.TrainImages), TrainStep + make_optimizer defaults (fused ops,
  fused Adam, channels_last and the allocator setting on CPU, CUDA graph on CUDA), the objective with the
  training set's size (so the total-correlation diagnostics of the log are computed, tc_weight 0), each step's
  loss terms appended to a device buffer as the loop does, no host sync until the end; at each of
  `precisions` ("fp32", "bf16": training/precision.py). The baselines are float32, as the paper's code.

On the CPU each measurement runs in its own fresh process (`--worker`), so process-wide settings of
one variant (the fast path's allocator setting) never reach the other (on CUDA, where no such setting
exists, baseline and fast run in the suite's own process), and baseline and fast processes
alternate round by round (the machine may be shared). In a worker: `warmup` steps untimed, then
`steps` timed steps -> img/s. A row's img/s is the median over `repeats` rounds; ratio = fast / baseline
of those medians; one row per precision (the baselines' runs are shared by the rows). Each run also reports images per CPU second of its process (`*_img_per_cpu_s`):
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
VARIANTS = ("baseline", "baseline-dataloader", "fast")
BASELINES = ("baseline", "baseline-dataloader", "baseline-tuned-allocator")  # float32 only
# ablation variants: the fast path with one part switched off (see `fast_runner`)
ABLATIONS = ("fast", "fast-no-allocator", "fast-no-channels-last", "fast-default-adam", "fast-composite-ops",
             "fast-fused-deconv-bias", "fast-torch-image-layers", "eager", "baseline-tuned-allocator", "fast-no-tc-log",
             "fast-tc")
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
                    variant: str = "baseline") -> tuple[float, float, str]:
    """(img per wall second, img per CPU second of this process, step mode) of `steps` paper-style steps
    after `warmup` untimed ones. variant: "baseline" (in-memory batches), "baseline-dataloader" (a DataLoader
    over per-sample tensors), "baseline-tuned-allocator" (in-memory, with the fast path's allocator setting,
    to show how much of the difference that setting alone makes)."""
    import torch

    if variant == "baseline-tuned-allocator":
        from jointvae_fast.training.allocator import tune_cpu_allocator

        tune_cpu_allocator()

    from benchmarks.baseline import baseline_loader, in_memory_batches, make_baseline

    torch.manual_seed(0)
    cont, disc, lr, cc, dc = PRESETS[size]
    dev = torch.device(device)
    _, trainer = make_baseline((1, size, size), cont, disc, lr, (0.0, *cc), (0.0, *dc), device=dev)
    images = _images(size, max(N_IMAGES, 2 * batch))
    if variant == "baseline-dataloader":
        batches = (b[0] for b in itertools.chain.from_iterable(
            baseline_loader(images, batch, seed=e) for e in itertools.count()))
    else:
        batches = in_memory_batches(images, batch)
    for _ in range(warmup):
        trainer.step(next(batches))
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.step(next(batches))
    _sync(dev)
    return batch * steps / (time.perf_counter() - t0), batch * steps / (time.process_time() - c0), BASELINE_MODE


def fast_runner(size: int, batch: int, device: str, variant: str = "fast", precision: str = "fp32"):
    """(run(first_step, n), TrainStep) of the training loop's path: `run` does n steps from `first_step`.

    variant: "fast" (defaults), or one part off: "fast-no-allocator", "fast-no-channels-last",
    "fast-default-adam", "fast-composite-ops" (JOINTVAE_FAST_BACKEND=composite must be set before import,
    the caller does that), "fast-fused-deconv-bias" (the decoder's transposed convolutions with the bias inside
    the convolution, as nn.ConvTranspose2d), "fast-torch-image-layers" (the decoder's last layer on torch's
    transposed convolution instead of one matrix product + col2im), "eager" (all of them off:
    composite ops, default Adam, no layout/allocator change, fused bias, torch's image-side layers), "fast-no-tc-log" (the objective without the dataset size: no
    total-correlation diagnostics), "fast-tc" (the total-correlation term in the objective, tc_weight 1, MSS).
    precision: "fp32" or "bf16" (TrainStep's precision).
    """
    import torch

    from jointvae_fast.training.batches import TrainImages, epoch_permutation
    from jointvae_fast.layers import torch_layers
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
    if eager or variant == "fast-fused-deconv-bias":
        _fuse_deconv_bias(model)
    if eager or variant == "fast-torch-image-layers":
        torch_layers(model)  # the last layer on torch's transposed convolution
    optimizer = make_optimizer(model, lr, fused=False if (eager or variant == "fast-default-adam") else None)
    data = TrainImages(_images(size, max(N_IMAGES, 2 * batch)), dev)
    objective = Objective(tuple(disc), Capacity(0.0, *cc), Capacity(0.0, *dc),
                          tc_weight=1.0 if variant == "fast-tc" else 0.0,
                          dataset_size=None if variant == "fast-no-tc-log" else len(data))
    gen = torch.Generator(device=dev).manual_seed(0)
    if dev.type == "cpu" and not (eager or variant == "fast-no-allocator"):
        tune_cpu_allocator()  # as the training CLI does at its start
    kw = {"precision": precision}
    if eager or variant == "fast-no-channels-last":
        kw["channels_last"] = False
    if eager:
        kw["cuda_graph"] = False
    step_fn = TrainStep(model, optimizer, objective, generator=gen, **kw)
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

    return run, step_fn


def _fuse_deconv_bias(model) -> None:
    """Give each BiasApartConvTranspose2d of `model` nn.ConvTranspose2d's own forward (bias fused)."""
    import types

    import torch

    from jointvae_fast.layers import BiasApartConvTranspose2d

    for m in model.modules():
        if isinstance(m, BiasApartConvTranspose2d):
            m.forward = types.MethodType(torch.nn.ConvTranspose2d.forward, m)


def worker_fast(size: int, batch: int, device: str, warmup: int, steps: int,
                variant: str = "fast", precision: str = "fp32") -> tuple[float, float, str]:
    """(img per wall second, img per CPU second of this process, TrainStep.step_mode of the last timed step:
    "cuda-graph" or "eager (why)") of `steps` steps of `fast_runner`'s path after `warmup` untimed ones."""
    run, step_fn = fast_runner(size, batch, device, variant, precision)
    dev = step_fn.device
    if step_fn.cuda_graph:  # capture happens on call warmup + 1 of TrainStep: keep it out of the timing
        warmup = max(warmup, step_fn.warmup + 2)
    run(1, warmup)
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    run(warmup + 1, steps)
    _sync(dev)
    return (batch * steps / (time.perf_counter() - t0), batch * steps / (time.process_time() - c0),
            step_fn.step_mode)


def worker(variant: str, size: int, batch: int, device: str, warmup: int, steps: int,
           precision: str = "fp32") -> dict:
    """One measurement in this process: {img_per_s, img_per_cpu_s, step_mode, allocator_tuned (whether this
    process made the allocator setting: False for the baselines but baseline-tuned-allocator)}."""
    from jointvae_fast.training import allocator

    if variant in BASELINES:
        wall, cpu, mode = worker_baseline(size, batch, device, warmup, steps, variant)
    else:
        wall, cpu, mode = worker_fast(size, batch, device, warmup, steps, variant, precision)
    return {"img_per_s": wall, "img_per_cpu_s": cpu, "step_mode": mode,
            "allocator_tuned": bool(allocator._ALLOCATOR_TUNED)}


def measure_in_subprocess(variant: str, size: int, batch: int, device: str, warmup: int, steps: int,
                          threads: int | None = None, timeout: float = 600.0, precision: str = "fp32") -> dict:
    """Run one worker in a fresh Python process; returns its `worker` dict."""
    env = dict(os.environ)
    if variant in ("eager", "fast-composite-ops"):
        env["JOINTVAE_FAST_BACKEND"] = "composite"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.train_suite", "--worker", variant, "--size", str(size),
           "--batch-size", str(batch), "--device", device, "--warmup", str(warmup), "--steps", str(steps),
           "--precision", precision]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"train-suite worker {variant} size={size} batch={batch} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(variant, precision, size, batch, device, warmup, n, threads) -> dict:
    if device != "cpu" and variant in ("baseline", "fast"):  # no process-wide CPU setting involved: in process
        return worker(variant, size, batch, device, warmup, n, precision)
    return measure_in_subprocess(variant, size, batch, device, warmup, n, threads, precision=precision)


def run(sizes=(32, 64), batch_sizes=(64, 256), device: str = "cpu", steps: int | None = None, warmup: int = 3,
        repeats: int = 3, variants=VARIANTS, log=None, threads: int | None = None,
        precisions=("fp32",)) -> list[dict]:
    """Rows {device, size, batch, precision, <variant>_img_s, <variant>_runs, <variant>_img_per_cpu_s,
    <variant>_step_mode (how its steps ran: "cuda-graph" or "eager (why)"), <variant>_allocator_tuned,
    ratio (fast/baseline), ratio_dataloader (fast/baseline-dataloader)}, one per precision; rounds
    alternate the measurements (the baselines, float32, once per round for all precisions)."""
    rows = []
    for size in sizes:
        for batch in batch_sizes:
            if steps is not None:
                n = steps
            elif device == "cpu":
                n = max(5, min(30, 2560 // batch))
            else:
                n = max(50, 25600 // batch)
            units = [(v, "fp32") for v in variants if v in BASELINES]
            units += [(v, p) for p in precisions for v in variants if v not in BASELINES]
            got = {u: [] for u in units}
            for _ in range(repeats):
                for v, p in units:
                    got[(v, p)].append(_measure(v, p, size, batch, device, warmup, n, threads))
            for p in precisions:
                row = {"device": device, "size": size, "batch": batch, "precision": p, "steps": n, "warmup": warmup,
                       "repeats": repeats, "threads": threads}
                for v in variants:
                    res = got[(v, "fp32" if v in BASELINES else p)]
                    row[f"{v}_img_s"] = statistics.median(r["img_per_s"] for r in res)
                    row[f"{v}_runs"] = [r["img_per_s"] for r in res]
                    row[f"{v}_img_per_cpu_s"] = statistics.median(r["img_per_cpu_s"] for r in res)
                    row[f"{v}_step_mode"] = " | ".join(dict.fromkeys(r["step_mode"] for r in res))
                    row[f"{v}_allocator_tuned"] = any(r["allocator_tuned"] for r in res)
                if "fast" in variants:
                    for base, key in (("baseline", "ratio"), ("baseline-dataloader", "ratio_dataloader")):
                        if base in variants:
                            row[key] = row["fast_img_s"] / row[f"{base}_img_s"]
                rows.append(row)
                if log:
                    log(format_table([row], variants, header=False))
    return rows


def format_table(rows: list[dict], variants=VARIANTS, header: bool = True, key: str = "img_s") -> str:
    """One line per row; key "img_s" (wall clock) or "img_per_cpu_s" (per CPU second of the run's process)."""
    unit = " img/s" if key == "img_s" else " img/cpu-s"
    cols = "".join(f" {v + unit:>28}" for v in variants)
    head = f"{'device':6} {'size':>5} {'batch':>6} {'prec':>5}{cols} {'fast/base':>9}"
    lines = [head, "-" * len(head)] if header else []
    for r in rows:
        vals = "".join(f" {r[v + '_' + key]:28.0f}" for v in variants)
        ratio = f"{r[f'fast_{key}'] / r[f'baseline_{key}']:9.2f}" if "ratio" in r else f"{'':9}"
        lines.append(f"{r['device']:6} {r['size']:>5} {r['batch']:>6} {r['precision']:>5}{vals} {ratio}")
    return "\n".join(lines)


def parse_precisions(text: str) -> tuple[str, ...]:
    """"fp32,bf16" -> ("fp32", "bf16"); argparse type (an unknown name is a one-line usage error)."""
    from jointvae_fast.training.precision import PRECISIONS

    out = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in out if p not in PRECISIONS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"precisions must be a comma list of {', '.join(PRECISIONS)}, got {text!r}")
    return tuple(dict.fromkeys(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=("baseline", "baseline-dataloader") + ABLATIONS, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int,
                    help="timed steps per run (default on CPU: min(30, 2560 // batch), at least 5)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads in each run (default: torch's own)")
    ap.add_argument("--precision", type=parse_precisions, default=("fp32",),
                    help="comma list of the fast path's precisions, one row each (default fp32; e.g. fp32,bf16)")
    ap.add_argument("--ablation", action="store_true", help="also time the fast path with each part switched off")
    ap.add_argument("--variants", nargs="+", choices=("baseline", "baseline-dataloader") + ABLATIONS,
                    help="time these variants only (instead of the default set or --ablation's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        steps = args.steps if args.steps is not None else 10
        res = worker(args.worker, args.size[0], args.batch_size[0], args.device, args.warmup, steps,
                     args.precision[0])
        print(json.dumps(res))
        return 0
    variants = ("baseline", "baseline-dataloader") + ABLATIONS if args.ablation else VARIANTS
    if args.variants:
        variants = tuple(args.variants)
    from benchmarks.machine import describe, one_line

    print("#", one_line(describe()))
    print(format_table([], variants))
    rows = run(tuple(args.size), tuple(args.batch_size), args.device, args.steps, args.warmup, args.repeats,
               variants, log=print, threads=args.threads, precisions=args.precision)
    print("# the same runs, images per CPU second of each run's process:")
    print(format_table(rows, variants, key="img_per_cpu_s"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": describe(), "train": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
