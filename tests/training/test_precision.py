"""bf16 mixed precision (training/precision.py): what runs in bfloat16, what stays float32, and how close
one bf16 step's loss is to the fp32 step's on the same batch and noise.

Tolerance. bfloat16 keeps 8 significant bits: one rounding is off by at most u = 2^-8 (relative). The
bf16 forward rounds the inputs and outputs of each convolution and linear layer (the products accumulate
in float32); the loss is a float32 sum of many per-pixel terms whose rounding errors do not add up in one
direction. We hold the loss and the reconstruction to within u of fp32 (one bf16 rounding of the loss
itself), and the KL sums (differences of nearly equal terms at initialisation) to 2e-2 relative.
"""
from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from jointvae_fast import ops
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective
from jointvae_fast.store import checkpoint, run_layout
from jointvae_fast.training.config import ConfigError, resolve_config
from jointvae_fast.training.precision import autocast, cpu_has_native_bf16, precision_note
from jointvae_fast.training.step import TrainStep, make_optimizer
from jointvae_fast.train import main

U_BF16 = 2.0**-8
DISC = (10,)


def _setup(size=32, cont=10, seed=0, batch=16):
    torch.manual_seed(seed)
    model = JointVAE((1, size, size), cont, list(DISC))
    x = torch.randint(0, 256, (batch, 1, size, size), generator=torch.Generator().manual_seed(seed)).float() / 255
    objective = Objective(DISC, Capacity(0.0, 5.0, 1000, 30.0), Capacity(0.0, 5.0, 1000, 30.0))
    return model, x, objective


def _one_step(model, x, objective, precision, step=500):
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model, 5e-4)
    train_step = TrainStep(model, optimizer, objective, generator=torch.Generator().manual_seed(7), precision=precision)
    return model, optimizer, train_step(x, step)


def test_bf16_step_keeps_weights_adam_state_and_loss_in_float32():
    model, x, objective = _setup()
    model, optimizer, terms = _one_step(model, x, objective, "bf16")
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name
        state = optimizer.state[p]
        assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32, name
    for name in ("total", "recon", "capacity_loss", "kl_cont", "kl_disc"):
        assert getattr(terms, name).dtype == torch.float32, name
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())  # what a checkpoint holds


def test_bf16_forward_runs_the_layers_in_bfloat16():
    """The autocast region is really on: the first convolution and the decoder's inner layers give bfloat16
    (without this, the float32 checks above would pass for a step that never used bf16). The decoder's last
    layer computes in float32 where its patch route runs (layers/patch_deconv.py: the CPU with the compiled
    ops), so the reconstruction's logits are float32 there."""
    model, x, _ = _setup()
    seen = {}
    model.img_to_features[0].register_forward_hook(lambda m, i, o: seen.update(conv=o.dtype))
    model.features_to_img[-3].register_forward_hook(lambda m, i, o: seen.update(deconv=o.dtype))
    model.features_to_img[-1].register_forward_hook(lambda m, i, o: seen.update(last=o.dtype))
    with autocast("bf16", torch.device("cpu")):
        out = model(x)
    last = torch.float32 if ops.patches_available("cpu") else torch.bfloat16
    assert seen == {"conv": torch.bfloat16, "deconv": torch.bfloat16, "last": last}
    assert out.mu.dtype == out.logvar.dtype == out.logits.dtype == out.latent.dtype == torch.float32
    with autocast("fp32", torch.device("cpu")):
        seen.clear()
        model(x)
    assert seen == {"conv": torch.float32, "deconv": torch.float32, "last": torch.float32}


def test_fused_ops_see_float32_inputs_under_bf16(monkeypatch):
    """The latent, KL and aggregate-KL ops are called with float32 mu, logvar, logits (cast after the bf16 head)."""
    seen = []

    def recording(fn):
        def wrapper(mu, logvar, logits, *args, **kwargs):
            seen.append((fn.__name__, mu.dtype, logvar.dtype, logits.dtype))
            return fn(mu, logvar, logits, *args, **kwargs)
        return wrapper

    def recording_aggregate(logits, *args, **kwargs):
        seen.append(("aggregate_kl", logits.dtype))
        return aggregate_kl(logits, *args, **kwargs)

    aggregate_kl = ops.aggregate_kl
    monkeypatch.setattr(ops, "sample_latent", recording(ops.sample_latent))
    monkeypatch.setattr(ops, "kl_capacity_loss", recording(ops.kl_capacity_loss))
    monkeypatch.setattr(ops, "aggregate_kl", recording_aggregate)
    model, x, objective = _setup()
    _one_step(model, x, objective, "bf16")
    assert [s[0] for s in seen] == ["sample_latent", "kl_capacity_loss", "aggregate_kl"]
    assert all(dtype == torch.float32 for s in seen for dtype in s[1:]), seen


def test_posterior_head_is_float32_under_bf16():
    """The last encoder layer (to_posterior) runs in float32 on the bf16 features: its output equals the float32
    layer applied to them exactly. (In bf16 its rounding, ~3e-4 on logits near 0, was as large as their spread
    over images at initialisation, ~1e-3, and one chairs seed's discrete code never left the uniform point.)"""
    model, x, _ = _setup(size=64, cont=32)
    seen = {}
    model.features_to_hidden.register_forward_hook(lambda m, i, o: seen.update(h=o))
    with autocast("bf16", torch.device("cpu")), torch.no_grad():
        mu, logvar, logits = model.encode(x)
    assert seen["h"].dtype == torch.bfloat16  # the features before the head are bf16
    with torch.no_grad():
        expected = model.to_posterior(seen["h"].float())
    assert torch.equal(torch.cat([mu, logvar, logits], 1), expected)


@pytest.mark.parametrize("size,cont,seed", [(32, 10, 0), (32, 10, 1), (64, 32, 2)])
def test_bf16_step_loss_is_close_to_fp32(size, cont, seed):
    """Same weights, batch and noise (same generator seed): the bf16 loss within u = 2^-8 of the fp32 loss."""
    model, x, objective = _setup(size, cont, seed)
    _, _, a = _one_step(model, x, objective, "fp32")
    _, _, b = _one_step(model, x, objective, "bf16")
    assert abs(b.total.item() - a.total.item()) <= U_BF16 * abs(a.total.item())
    assert abs(b.recon.item() - a.recon.item()) <= U_BF16 * abs(a.recon.item())
    assert b.kl_cont.sum().item() == pytest.approx(a.kl_cont.sum().item(), rel=2e-2)
    assert b.kl_disc.sum().item() == pytest.approx(a.kl_disc.sum().item(), rel=2e-2, abs=1e-6)
    assert a.recon.item() != b.recon.item()  # the bf16 step did compute differently (the total can round equal)


def test_bad_precision_is_rejected():
    with pytest.raises(ConfigError, match="precision must be fp32 or bf16, got 'fp16'"):
        resolve_config(("config file c.json", {"dataset": "mnist", "precision": "fp16"}))
    model, _, objective = _setup()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainStep(model, make_optimizer(model, 1e-3), objective, precision="half")


def test_precision_note_names_missing_native_bf16():
    cpu = torch.device("cpu")
    assert precision_note("fp32", cpu, set()) is None
    assert "without native bf16" in precision_note("bf16", cpu, {"avx2", "avx512f"})
    if torch.backends.mkldnn.is_available():
        assert precision_note("bf16", cpu, {"avx512f", "avx512_bf16"}) is None
        assert cpu_has_native_bf16({"amx_bf16"}) and not cpu_has_native_bf16({"avx512f"})


def _tiny(n=32):
    g = torch.Generator().manual_seed(3)
    return SimpleNamespace(train=torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8, generator=g),
                           image_size=(1, 32, 32))


def test_cli_bf16_run_records_precision(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--dataset", "mnist", "--cont", "2", "--disc", "3", "--batch-size", "8", "--steps", "4",
            "--log-every", "2", "--save-every", "4", "--no-images", "--out", str(out), "--precision", "bf16"]
    assert main(argv, dataset=_tiny()) == 0
    assert "precision bf16" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    saved = checkpoint.read(run_layout.list_checkpoints(out)[-1][1])["model"]
    assert all(v.dtype == torch.float32 for v in saved.values())  # checkpoints stay float32


def test_cli_bad_precision_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": "mnist", "precision": "fp16"}))
    assert main(["--config", str(cfg), "--out", str(tmp_path / "r")], dataset=_tiny()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: precision must be fp32 or bf16, got 'fp16'"]
    with pytest.raises(SystemExit) as e:
        main(["--dataset", "mnist", "--precision", "fp16"])
    assert e.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
