"""Throughput report of jointvae_fast: training steps vs the paper-style baseline, the compute floor, the fused ops.

    python benchmarks/run.py                      # every suite that fits this machine (a few minutes), one table
    python benchmarks/run.py --suite train --size 64 --batch-size 64 --precision fp32,bf16 --json out.json
    python benchmarks/run.py --suite profile --size 32 --precision fp32,bf16
    python benchmarks/run.py --suite layers --size 32 64 --precision fp32,bf16 --threads 1
    python benchmarks/run.py --suite explore --clients 1 10 100 --json out.json
    python benchmarks/run.py --suite data --json benchmarks/results/data-....json

Suites: train (benchmarks/train_suite.py: img/s of a full training step, the paper-faithful baseline (and its
DataLoader variant) vs the fast path at each --precision, ratios, and the compute floor of benchmarks/flops.py:
the step's exact FLOP count over the measured matmul rate at that precision), ops (benchmarks/ops_suite.py:
the fused latent ops vs their composites), profile (benchmarks/profile_suite.py: top ops of a CPU step by
self time, at each precision; not part of "all"), layers (benchmarks/layers_suite.py: forward + backward of
each transposed convolution of the decoders, bias fused against added apart, CPU; not part of "all"), explore
(benchmarks/explore_suite.py: latency of the explorer's decode requests with 1, 10 and 100 clients at once, on
loopback, the server in its own process; not part of "all"), tc (benchmarks/tc_suite.py: time and peak memory
of the fused total-correlation op against its composite, B = 64 ... 4096, CPU, one subprocess each; not part of
"all"), data (benchmarks/data_suite.py: images/s of preprocessing your own images, and training img/s from the
memory-mapped cache against the in-memory path at 64x64 batch 64 on the CPU, with their ratio; not part of
"all"). Devices: cpu, plus cuda when a GPU is
visible, unless --device names one. The JSON holds the machine (CPU model, cores, GPU, torch, ops backend,
date) and every row with its raw runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import flops, train_suite  # noqa: E402
from benchmarks.machine import describe, one_line, write_json  # noqa: E402


def floors(sizes, devices, precisions=("fp32",)) -> dict:
    """{device: {precision: {size: floor_report}}}: the step's exact FLOP count (flops.step_flops) over the
    matmul rate at that precision, measured once per device and precision."""
    from benchmarks.train_suite import PRESETS
    from jointvae_fast.model import JointVAE
    from jointvae_fast.objective import Capacity, Objective

    counted = {}
    for size in sizes:
        cont, disc, _, cc, dc = PRESETS[size]
        objective = Objective(tuple(disc), Capacity(0.0, *cc), Capacity(0.0, *dc))
        counted[size] = flops.step_flops(JointVAE((1, size, size), cont, disc), objective, (1, size, size))
    out = {}
    for dev in devices:
        out[dev] = {}
        for p in precisions:
            rates = flops.matmul_rates(dev, precision=p)
            out[dev][p] = {size: flops.floor_report(counted[size], rates, p) for size in sizes}
    return out


def train_table(rows: list[dict], floor: dict) -> str:
    head = (f"{'device':6} {'size':>5} {'batch':>6} {'prec':>5} {'baseline img/s':>15} {'DataLoader img/s':>16} "
            f"{'fast img/s':>11} {'fast/base':>9} {'fast/DL':>8} {'floor img/s':>12} {'fast/floor':>10} "
            f"{'fast/base per CPU s':>19}")
    lines = [head, "-" * len(head)]
    for r in rows:
        f = floor.get(r["device"], {}).get(r["precision"], {}).get(r["size"])
        fl = (f"{f['floor_img_per_s']:12.0f} {r['fast_img_s'] / f['floor_img_per_s']:10.2f}" if f
              else f"{'-':>12} {'-':>10}")
        cpu = r["fast_img_per_cpu_s"] / r["baseline_img_per_cpu_s"] if r["device"] == "cpu" else float("nan")
        lines.append(f"{r['device']:6} {r['size']:>5} {r['batch']:>6} {r['precision']:>5} {r['baseline_img_s']:15.0f} "
                     f"{r['baseline-dataloader_img_s']:16.0f} {r['fast_img_s']:11.0f} {r['ratio']:9.2f} "
                     f"{r['ratio_dataloader']:8.2f} {fl} {cpu:19.2f}")
    return "\n".join(lines)


def _add_floor_ratios(rows: list[dict], floor: dict) -> None:
    """Each row gains floor_img_per_s and fast_over_floor (its precision's floor)."""
    for r in rows:
        f = floor.get(r["device"], {}).get(r["precision"], {}).get(r["size"])
        if f:
            r["floor_img_per_s"] = f["floor_img_per_s"]
            r["fast_over_floor"] = r["fast_img_s"] / f["floor_img_per_s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=["ops", "train", "profile", "layers", "explore", "tc", "data", "all"], default="all")
    ap.add_argument("--json", type=Path, help="write {machine, train, floor, ops} here")
    ap.add_argument("--device", choices=["cpu", "cuda"], action="append",
                    help="repeatable; default: cpu, plus cuda when a GPU is visible")
    ap.add_argument("--steps", type=int,
                    help="timed steps per train-suite run (default on CPU: min(30, 2560 // batch), at least 5)")
    ap.add_argument("--batch-size", type=int, nargs="+", help="train: default 64 256; ops: its defaults")
    ap.add_argument("--size", type=int, nargs="+", choices=[32, 64], default=[32, 64], help="train-suite image sizes")
    ap.add_argument("--repeats", type=int, default=3, help="train-suite rounds (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed train steps per run")
    ap.add_argument("--threads", type=int, help="torch threads in the train-suite runs (default: torch's own)")
    ap.add_argument("--precision", type=train_suite.parse_precisions, default=("fp32",),
                    help="comma list: the fast path's precisions, one train row each (default fp32; e.g. fp32,bf16)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100],
                    help="explore: clients at once, one row each (default 1 10 100)")
    ap.add_argument("--requests", type=int, default=20, help="explore: decode requests per client (default 20)")
    ap.add_argument("--source", default="pretrained:fashion-mnist", help="explore: the model to serve")
    args = ap.parse_args(argv)
    if args.device and "cuda" in args.device and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if args.threads:
        torch.set_num_threads(args.threads)  # the matmul rate of the floor then uses as many threads as the runs

    info = describe()
    print("#", one_line(info))
    result: dict = {"machine": info, "devices": devices}

    if args.suite in ("train", "all"):
        batches = tuple(args.batch_size or (64, 256))
        rows = []
        for dev in devices:
            rows += train_suite.run(tuple(args.size), batches, dev, args.steps, args.warmup, args.repeats,
                                    threads=args.threads, precisions=args.precision)
        floor = floors(tuple(args.size), devices, args.precision)
        _add_floor_ratios(rows, floor)
        result["train"] = rows
        result["floor"] = {dev: {p: {str(s): rep for s, rep in per.items()} for p, per in by_p.items()}
                           for dev, by_p in floor.items()}
        if "cuda" not in devices:
            result["gpu_note"] = "GPU numbers not yet measured (no GPU visible)"
        print(train_table(rows, floor))
        print("# baseline: the paper's step on in-memory batches; DataLoader: the same step fed by a DataLoader over "
              "per-sample tensors; fast/base per CPU s: the ratio from images per CPU second of each run's process "
              "(less sensitive to other jobs on a shared machine)")
        for dev, by_p in floor.items():
            for p, per in by_p.items():
                for size, rep in per.items():
                    print(f"# floor {dev} {p} {size}x{size}: {rep['step_flops_per_image'] / 1e6:.1f} MFLOP per image "
                          f"per step (FlopCounterMode; forward {rep['forward_flops_per_image'] / 1e6:.1f}) / matmul "
                          f"{flops.describe_rates(rep)}")

    if args.suite in ("ops", "all"):
        try:
            from benchmarks import ops_suite
        except ImportError as e:
            result["ops"] = {"error": f"benchmarks/ops_suite.py not importable: {e}"}
            print(f"# ops suite skipped: {e}")
        else:
            kw = {"batch_sizes": tuple(args.batch_size)} if args.batch_size else {}
            ops_rows = ops_suite.run(devices, **kw)
            result["ops"] = ops_rows
            print(ops_suite.format_table(ops_rows))

    if args.suite == "profile":
        from benchmarks import profile_suite

        profiles = profile_suite.run(tuple(args.size), (args.batch_size or [64])[0], args.precision,
                                     args.steps or 20, args.warmup, threads=args.threads)
        result["profile"] = profiles
        print(profile_suite.format_profiles(profiles))

    if args.suite == "layers":
        from benchmarks import layers_suite

        layer_rows = layers_suite.run(tuple(args.size), (args.batch_size or [64])[0], args.precision)
        result["layers"] = layer_rows
        print(layers_suite.format_table(layer_rows))

    if args.suite == "explore":
        from benchmarks import explore_suite

        explore_rows = explore_suite.run(args.source, tuple(args.clients), args.requests)
        result["explore"] = explore_rows
        print(explore_suite.format_table(explore_rows))
        print(f"# {args.source} served by `python -m jointvae_fast.explore` on loopback (its own process); "
              f"asyncio clients in this process, each on one kept-alive connection, all connecting at once")

    if args.suite == "tc":
        from benchmarks import tc_suite

        kw = {"batch_sizes": tuple(args.batch_size)} if args.batch_size else {}
        tc_rows = tc_suite.run(threads=args.threads or 1, **kw)
        result["tc"] = tc_rows
        print(tc_suite.format_table(tc_rows))

    if args.suite == "data":
        from benchmarks import data_suite

        data = data_suite.run(steps=args.steps or 30, warmup=args.warmup, repeats=args.repeats)
        result["data"] = data
        print(data_suite.format_report(data))

    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
