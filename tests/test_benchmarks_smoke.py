"""Seconds-long smoke run of benchmarks/run.py: it runs, prints the table and writes valid JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import flops
from jointvae_fast.model import JointVAE

ROOT = Path(__file__).resolve().parents[1]


def test_run_py_train_suite_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/run.py", "--suite", "train", "--device", "cpu", "--size", "32",
           "--batch-size", "4", "--steps", "1", "--warmup", "1", "--repeats", "1", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fast/base" in proc.stdout
    data = json.loads(out.read_text())
    m = data["machine"]
    for key in ("cpu", "cores", "gpu", "torch", "backend", "date"):
        assert key in m, key
    assert m["torch"] == torch.__version__ and m["cores"] >= 1
    (row,) = data["train"]
    assert (row["device"], row["size"], row["batch"]) == ("cpu", 32, 4)
    assert row["baseline_img_s"] > 0 and row["fast_img_s"] > 0
    assert abs(row["ratio"] - row["fast_img_s"] / row["baseline_img_s"]) < 1e-9
    assert (row["baseline_step_mode"], row["fast_step_mode"]) == ("eager (paper-style baseline)", "eager (cpu)")
    floor = data["floor"]["cpu"]["32"]
    assert floor["floor_img_per_s"] > 0 and floor["matmul_gflops"] > 0


def test_flop_count_of_the_32px_model():
    """Hand count (Appendix B, mnist latent 10 + [10]), MACs per image:
    convs 32x16x16x(1x16) + 64x8x8x(32x16) + 64x4x4x(64x16) = 131072 + 2097152 + 1048576;
    linears 1024x256 + 256x30 + 20x256 + 256x1024; transposed convs: inputs 64x4x4, 32x8x8, 32x16x16
    times Cout x 16 = 1024x32x16 + 2048x32x16 + 8192x1x16."""
    model = JointVAE((1, 32, 32), 10, [10])
    convs = 131072 + 2097152 + 1048576
    linears = 1024 * 256 + 256 * 30 + 20 * 256 + 256 * 1024
    tconvs = 1024 * 32 * 16 + 2048 * 32 * 16 + 8192 * 1 * 16
    assert sum(m for _, m in flops.layer_macs(model, (1, 32, 32))) == convs + linears + tconvs
    assert flops.step_flops_per_image(model, (1, 32, 32)) == 6 * (convs + linears + tconvs)
