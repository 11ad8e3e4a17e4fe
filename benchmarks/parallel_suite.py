"""Two CPU cores for one training run: one process with 2 threads against two data-parallel processes
(torchrun, gloo) with 1 thread each, at the same global batch; one process with 1 thread as the reference.

Each arm is the training CLI itself (`python -m jointvae_fast.train`, or `torchrun --standalone
--nproc_per_node 2 -m jointvae_fast.train`) on an array of random images written to a temporary folder, the
paper's 32x32 (preset fashion-mnist) or 64x64 (preset chairs) network, fp32, batch 64. Throughput is read
from the run's log.jsonl: images between the first and the last log line over the time between them (the
start-up, the first steps and the final checkpoint and images are outside). Arms alternate round by round;
a row is the median of the rounds.

    python benchmarks/parallel_suite.py --size 32 64 --steps 600 --repeats 3 [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, one_line, write_json  # noqa: E402

PRESET = {32: "fashion-mnist", 64: "chairs"}
ARMS = ("1 process x 1 thread", "1 process x 2 threads", "2 processes x 1 thread")


def write_images(folder: Path, size: int, n: int = 4096, seed: int = 0) -> Path:
    """n random uint8 images [n, size, size] in folder/random{size}.npy (content does not matter for speed)."""
    path = folder / f"random{size}.npy"
    np.save(path, np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8))
    return path


def arm_command(arm: str, data: Path, size: int, steps: int, batch: int, out: Path, log_every: int) -> list[str]:
    threads = "2" if arm == ARMS[1] else "1"
    train = ["-m", "jointvae_fast.train", "--dataset", str(data), "--img-size", str(size), "--preset", PRESET[size],
             "--threads", threads, "--steps", str(steps), "--batch-size", str(batch), "--log-every", str(log_every),
             "--out", str(out), "--no-progress", "--seed", "0"]
    if arm == ARMS[2]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train]
    return [sys.executable, *train]


def rate_from_log(log: Path, batch: int) -> float:
    """Images per second between the first and the last line of a run's log.jsonl."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    lines = [r for r in lines if "elapsed_s" in r and "step" in r]
    if len(lines) < 2:
        raise RuntimeError(f"{log}: need two log lines with step and elapsed_s, got {len(lines)}")
    first, last = lines[0], lines[-1]
    return (last["step"] - first["step"]) * batch / (last["elapsed_s"] - first["elapsed_s"])


def run(sizes=(32, 64), steps: int = 600, batch: int = 64, repeats: int = 3, arms=ARMS, log=print) -> list[dict]:
    """One row per size: {size, batch, steps, <arm>: median img/s, <arm>_runs: [img/s per round]}."""
    rows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory(prefix="jointvae-parallel-") as tmp:
        tmp = Path(tmp)
        for size in sizes:
            data = write_images(tmp, size)
            runs = {arm: [] for arm in arms}
            for r in range(repeats):
                for arm in arms:
                    out = tmp / f"run-{size}-{r}-{ARMS.index(arm)}"
                    cmd = arm_command(arm, data, size, steps, batch, out, max(1, steps // 6))
                    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
                    if proc.returncode != 0:
                        raise RuntimeError(f"{arm} at {size}x{size} failed:\n{proc.stderr[-3000:]}")
                    runs[arm].append(rate_from_log(out / "log.jsonl", batch))
                    log(f"{size}x{size} round {r + 1}: {arm}: {runs[arm][-1]:.0f} img/s")
            row = {"size": size, "batch": batch, "steps": steps}
            for arm in arms:
                row[arm], row[f"{arm}_runs"] = statistics.median(runs[arm]), runs[arm]
            rows.append(row)
    return rows


def format_table(rows: list[dict], arms=ARMS) -> str:
    head = "size  batch " + " ".join(f"{a + ' img/s':>30}" for a in arms) + "   2 procs / 2 threads"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r[ARMS[2]] / r[ARMS[1]] if ARMS[1] in r and ARMS[2] in r else float("nan")
        lines.append(f"{r['size']:>4}  {r['batch']:>5} " + " ".join(f"{r[a]:>30.0f}" for a in arms)
                     + f"   {ratio:>20.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[32, 64], choices=[32, 64])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.steps < 12:
        ap.error("--steps must be at least 12 (the rate is read between log lines)")
    machine = describe()
    print(f"# {one_line(machine)}")
    rows = run(tuple(args.size), args.steps, args.batch_size, args.repeats)
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"machine": machine, "parallel": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
