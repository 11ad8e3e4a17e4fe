"""Seconds-long smoke run of benchmarks/run.py: it runs, prints the table and writes valid JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import flops
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective

ROOT = Path(__file__).resolve().parents[2]


def test_run_py_train_suite_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/run.py", "--suite", "train", "--device", "cpu", "--size", "32",
           "--batch-size", "4", "--steps", "1", "--warmup", "1", "--repeats", "1", "--precision", "fp32,bf16",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fast/base" in proc.stdout
    data = json.loads(out.read_text())
    m = data["machine"]
    for key in ("cpu", "cores", "gpu", "torch", "backend", "date"):
        assert key in m, key
    assert m["torch"] == torch.__version__ and m["cores"] >= 1
    rows = data["train"]
    assert [(r["device"], r["size"], r["batch"], r["precision"]) for r in rows] == [
        ("cpu", 32, 4, "fp32"), ("cpu", 32, 4, "bf16")]
    for row in rows:
        assert row["baseline_img_s"] > 0 and row["baseline-dataloader_img_s"] > 0 and row["fast_img_s"] > 0
        assert abs(row["ratio"] - row["fast_img_s"] / row["baseline_img_s"]) < 1e-9
        assert abs(row["ratio_dataloader"] - row["fast_img_s"] / row["baseline-dataloader_img_s"]) < 1e-9
        assert (row["baseline_step_mode"], row["fast_step_mode"]) == ("eager (paper-style baseline)", "eager (cpu)")
        # each measurement is its own process: the fast path's allocator setting never reaches a baseline
        assert row["fast_allocator_tuned"] and not row["baseline_allocator_tuned"]
        assert not row["baseline-dataloader_allocator_tuned"]
        floor = data["floor"]["cpu"][row["precision"]]["32"]
        assert floor["precision"] == row["precision"] and floor["matmul_gflops"] > 0
        # the floor divides by the fastest library's rate (oneDNN's, on an AMD CPU where MKL's sgemm lags)
        assert floor["matmul_gflops"] == max(floor["matmul_gflops_by_library"].values())
        assert row["fast_over_floor"] == pytest.approx(row["fast_img_s"] / floor["floor_img_per_s"])
    assert rows[0]["baseline_runs"] == rows[1]["baseline_runs"]  # the float32 baseline is shared by both rows


def test_run_py_data_suite_smoke(tmp_path, monkeypatch):
    from benchmarks import data_suite

    monkeypatch.setattr(data_suite, "TRAIN_IMAGES", 256)
    monkeypatch.setattr(data_suite, "GATHER_REPEATS", 3)
    result = data_suite.run(images=8, steps=2, warmup=1, repeats=1, workers=[1], log=lambda line: None)
    assert [(r["format"], r["workers"], r["images"]) for r in result["decode"]] == [("jpg", 1, 8), ("png", 1, 8)]
    assert all(r["img_per_s"] > 0 for r in result["decode"])
    t = result["train"]
    assert t["resident_img_s"] > 0 and t["streamed_img_s"] > 0
    assert t["ratio"] == pytest.approx(t["streamed_img_s"] / t["resident_img_s"])
    assert t["ratio_per_cpu_s"] == pytest.approx(t["streamed_img_per_cpu_s"] / t["resident_img_per_cpu_s"])
    assert t["gather_ms"]["mapped_ms"] > 0 and t["gather_ms"]["resident_ms"] > 0
    assert set(t["batch_wait_ms"]) == {"resident", "streamed"} and min(t["batch_wait_ms"].values()) > 0
    assert "streamed/resident" in data_suite.format_report(result)


def _model_and_objective(size, cont):
    return JointVAE((1, size, size), cont, [10]), Objective((10,), Capacity(0.0, 5.0, 100, 30.0),
                                                           Capacity(0.0, 5.0, 100, 30.0))


# Hand count of the forward MACs per image (Appendix B, latent cont + [10]), the cross-check of FlopCounterMode:
# a conv: output elements x Cin x 16; a transposed conv: input elements x Cout x 16; a linear: in x out.
HAND_MACS = {
    # convs 32x16x16x(1x16) + 64x8x8x(32x16) + 64x4x4x(64x16); linears 1024x256 + 256x30 + 20x256 + 256x1024;
    # transposed convs: inputs 64x4x4, 32x8x8, 32x16x16 times Cout x 16
    (32, 10): (131072 + 2097152 + 1048576) + (1024 * 256 + 256 * 30 + 20 * 256 + 256 * 1024)
    + (1024 * 32 * 16 + 2048 * 32 * 16 + 8192 * 1 * 16),
    # convs 32x32x32x(1x16) + 32x16x16x(32x16) + 64x8x8x(32x16) + 64x4x4x(64x16); linears 1024x256 + 256x74
    # + 42x256 + 256x1024; transposed convs: inputs 64x4x4, 64x8x8, 32x16x16, 32x32x32 times Cout x 16
    (64, 32): (524288 + 4194304 + 2097152 + 1048576) + (1024 * 256 + 256 * 74 + 42 * 256 + 256 * 1024)
    + (1024 * 64 * 16 + 4096 * 32 * 16 + 8192 * 32 * 16 + 32768 * 1 * 16),
}


@pytest.mark.parametrize("size,cont", sorted(HAND_MACS))
def test_flop_counter_forward_is_twice_the_hand_macs(size, cont):
    """FlopCounterMode's forward count (convolutions and linear layers only: the loss and latent ops have no
    FLOP formula) equals 2 x the hand-counted MACs; the backward skips the first convolution's input gradient,
    so a step is a little less than 3 x forward."""
    model, objective = _model_and_objective(size, cont)
    counted = flops.step_flops(model, objective, (1, size, size))
    assert counted["forward"] == 2 * HAND_MACS[(size, cont)]
    assert 2 * counted["forward"] < counted["step"] < 3 * counted["forward"]
    assert all(p.grad is None for p in model.parameters())


def test_matmul_rate_is_measured_at_the_precision():
    assert all(r > 0 for r in flops.matmul_rates("cpu", n=64, repeats=1, precision="bf16").values())


def test_the_floor_rate_is_the_fastest_library_and_every_library_computes_the_product():
    """The floor divides by the fastest product (on this CPU oneDNN's, about twice MKL's sgemm): both are
    measured, the max is taken, and the oneDNN call computes a @ b.T (what mkldnn_linear does)."""
    import torch

    rates = flops.matmul_rates("cpu", n=64, repeats=1)
    assert set(rates) >= {"torch.mm"} and all(r > 0 for r in rates.values())
    if torch.backends.mkldnn.is_available():
        assert "onednn" in rates
        a, b = torch.randn(64, 64), torch.randn(64, 64)
        got = torch._C._nn.mkldnn_linear(a.to_mkldnn(), b.to_mkldnn(), None).to_dense()
        torch.testing.assert_close(got, a @ b.T, rtol=1e-4, atol=1e-4)
    rep = flops.floor_report({"step": 1e6, "forward": 4e5}, {"torch.mm": 1e11, "onednn": 2.5e11}, "fp32")
    assert rep["matmul_gflops"] == 250.0 and rep["floor_img_per_s"] == 2.5e5
    assert flops.describe_rates(rep) == "250 GFLOP/s (the fastest of: torch.mm 100, onednn 250)"


def test_the_fused_deconv_bias_ablation_puts_the_bias_back_into_the_convolution():
    """train_suite's "fast-fused-deconv-bias" (and "eager") run the decoder's transposed convolutions as
    nn.ConvTranspose2d does, bias inside; "fast" keeps each layer's own forward (BiasApartConvTranspose2d's, and
    PatchConvTranspose2d's for the last layer with its patch route on); "fast-torch-image-layers" switches the
    last layer's patch route off."""
    from benchmarks import train_suite
    from jointvae_fast.layers import BiasApartConvTranspose2d, PatchConvTranspose2d

    def layers(variant):
        run, step = train_suite.fast_runner(32, 4, "cpu", variant)
        run(1, 1)
        mods = [m for m in step.model.modules() if isinstance(m, BiasApartConvTranspose2d)]
        assert len(mods) == 3 and isinstance(mods[-1], PatchConvTranspose2d)
        return [getattr(m.forward, "__func__", None) for m in mods], mods[-1].patches

    assert layers("fast") == ([BiasApartConvTranspose2d.forward] * 2 + [PatchConvTranspose2d.forward], True)
    assert layers("fast-fused-deconv-bias")[0] == [torch.nn.ConvTranspose2d.forward] * 3
    assert layers("fast-torch-image-layers") == ([BiasApartConvTranspose2d.forward] * 2
                                                 + [PatchConvTranspose2d.forward], False)


def test_layers_suite_times_every_transposed_convolution_both_ways():
    from benchmarks import layers_suite

    rows = layers_suite.run((32, 64), batch=2, precisions=("fp32", "bf16"), iters=1, repeats=1)
    assert [(r["size"], r["layer"].split()[1]) for r in rows[::2]] == [
        (32, "64->32"), (32, "32->32"), (32, "32->1"), (64, "64->64"), (64, "64->32"), (64, "32->32"), (64, "32->1")]
    assert all(r["fused_ms"] > 0 and r["apart_ms"] > 0 for r in rows)
    assert "fused/apart" in layers_suite.format_table(rows)


def test_run_py_explore_suite_smoke(tmp_path):
    """The explore suite starts the explorer's CLI, every decode is answered, and the rows are complete."""
    out = tmp_path / "explore.json"
    cmd = [sys.executable, "benchmarks/run.py", "--suite", "explore", "--clients", "1", "3", "--requests", "2",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "p95 ms" in proc.stdout
    rows = json.loads(out.read_text())["explore"]
    assert [(r["clients"], r["requests"], r["answered"], r["failed"]) for r in rows] == [(1, 2, 2, 0), (3, 6, 6, 0)]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"] and r["source"] == "pretrained:fashion-mnist"


def test_explore_latency_stats_known_answer():
    from benchmarks.explore_suite import latency_stats

    got = latency_stats([i / 1000 for i in range(100, 0, -1)])  # 1 ms .. 100 ms, shuffled order
    assert got == pytest.approx({"p50_ms": 50.5, "p95_ms": 95.0, "max_ms": 100.0})
    assert latency_stats([0.002]) == pytest.approx({"p50_ms": 2.0, "p95_ms": 2.0, "max_ms": 2.0})
