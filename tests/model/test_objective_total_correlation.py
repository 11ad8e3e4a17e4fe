"""The objective's total-correlation term (issue 25) against reference/total_correlation.py: the term and its
gradients, the diagnostics, tc_weight = 0 bit for bit, the CUDA-graph form (device-scalar capacities), the
config keys, the training log and TensorBoard."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective
from jointvae_fast.total_correlation import batch_tc, log_importance_weights, posterior_sample
from jointvae_fast.train import main
from jointvae_fast.training.step import TrainStep, make_optimizer
from jointvae_fast.progress import Progress
from jointvae_fast.training.batches import RunLength
from jointvae_fast.training.distributed import World
from jointvae_fast.training.tensorboard_log import scalar_items
from jointvae_fast.training.term_log import TermLog
from tests.cli.test_train import args, tiny_dataset

CAPS = (Capacity(0.0, 3.0, 200, 20.0), Capacity(0.0, 1.0, 200, 10.0))


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b, d = draw(st.integers(1, 12)), draw(st.integers(0, 4))
    disc = draw(st.lists(st.integers(2, 6), min_size=0 if d else 1, max_size=2))
    mu, logvar = rng.normal(0, 2, (b, d)), rng.normal(0, 1.5, (b, d))
    logits = rng.normal(0, 2, (b, sum(disc)))
    z = mu + np.exp(logvar / 2) * rng.normal(size=(b, d))
    y = reference.gumbel_softmax(logits, rng.uniform(0.01, 0.99, logits.shape), 0.67, disc)
    return dict(x=(rng.random((b, 1, 4, 4)) < 0.5).astype(np.float64), x_logits=rng.normal(0, 3, (b, 1, 4, 4)),
                mu=mu, logvar=logvar, logits=logits, latent=np.concatenate([z, y], 1), disc=tuple(disc),
                n=b + int(rng.integers(0, 10**4)), weight=draw(st.sampled_from([0.0, 0.5, 6.0])),
                estimator=draw(st.sampled_from(["mss", "mws"])), on=draw(st.sampled_from(["joint", "continuous"])),
                step=draw(st.integers(1, 300)))


def _tensors(p):
    return {k: torch.tensor(p[k], requires_grad=k != "x") for k in ("x", "x_logits", "mu", "logvar", "logits",
                                                                       "latent")}


def _objective(p, **kw):
    return Objective(p["disc"], *CAPS, tc_weight=p["weight"], tc_estimator=p["estimator"], tc_on=p["on"],
                     dataset_size=p["n"], **kw)


def _reference_tc(p):
    """(decomposition dict, (d_z, d_mu, d_logvar, d_y, d_logits) of TC) over the latents tc_on covers."""
    d = p["mu"].shape[1]
    z, y, lg, dims = p["latent"][:, :d], p["latent"][:, d:], p["logits"], list(p["disc"])
    if p["on"] == "continuous":
        y, lg, dims = y[:, :0], lg[:, :0], []
    a = (z, p["mu"], p["logvar"], y, lg, dims, p["n"])
    return (reference.total_correlation(*a, p["estimator"]),
            reference.total_correlation_vjp(*a, 1.0, estimator=p["estimator"]))


@given(problems())
def test_term_and_gradients_match_the_reference(p):
    """total = Eq. 7's total + tc_weight TC / (H W), and its gradient adds tc_weight / (H W) times TC's VJP
    (in mu, logvar, logits directly, in z and y through the latent); the diagnostics are the reference's."""
    t, t0 = _tensors(p), _tensors(p)
    terms = _objective(p)(t["x"], SimpleNamespace(**t), p["step"])
    eq7 = Objective(p["disc"], *CAPS)(t0["x"], SimpleNamespace(**t0), p["step"])
    ref, vjp = _reference_tc(p)
    hw = 16
    assert terms.total.item() == pytest.approx(eq7.total.item() + p["weight"] * ref["tc"] / hw, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(terms.tc_terms.numpy(), [ref["tc"], ref["index_code_mi"], ref["dim_kl"]],
                               rtol=1e-10, atol=1e-10)
    (terms.total.backward(), eq7.total.backward())
    d = p["mu"].shape[1]
    extra = {"mu": vjp[1], "logvar": vjp[2], "logits": np.zeros_like(p["logits"]),
             "latent": np.zeros_like(p["latent"]), "x_logits": 0.0}
    extra["latent"][:, :d] = vjp[0]
    if p["on"] == "joint":
        extra["logits"], extra["latent"][:, d:] = vjp[4], vjp[3]
    for k, add in extra.items():
        want = (t0[k].grad.numpy() if t0[k].grad is not None else 0.0) + p["weight"] / hw * np.asarray(add)
        got = t[k].grad.numpy() if t[k].grad is not None else np.zeros_like(p[k])
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-9, atol=1e-12, err_msg=k)


@given(problems())
def test_device_scalar_capacities_include_the_term(p):
    """The CUDA-graph form (capacities as 0-d tensors) gives the same total and gradients."""
    p = {**p, "weight": 2.0}
    objective = _objective(p)
    t, t0 = _tensors(p), _tensors(p)
    eager = objective(t0["x"], SimpleNamespace(**t0), p["step"])
    caps = [torch.tensor(c, dtype=torch.float64) for c in objective.capacities(p["step"])]
    graph = objective.at_capacities(t["x"], SimpleNamespace(**t), *caps)
    assert graph.total.item() == pytest.approx(eager.total.item(), rel=1e-12, abs=1e-13)
    torch.testing.assert_close(graph.tc_terms, eager.tc_terms, rtol=1e-12, atol=1e-12)
    (graph.total.backward(), eager.total.backward())
    for k in ("mu", "logvar", "logits", "latent"):
        torch.testing.assert_close(t[k].grad, t0[k].grad, rtol=1e-9, atol=1e-12)


@given(problems(), st.sampled_from([torch.float32, torch.float64]))
def test_weight_zero_is_eq7_bit_for_bit(p, dtype):
    """tc_weight = 0: total and gradients identical to the objective without the term, diagnostics or not."""
    grads, totals = [], []
    for kw in ({}, dict(tc_weight=0.0, dataset_size=p["n"], tc_estimator=p["estimator"], tc_on=p["on"])):
        t = {k: v.detach().to(dtype).requires_grad_(k != "x") for k, v in _tensors(p).items()}
        terms = Objective(p["disc"], *CAPS, **kw)(t["x"], SimpleNamespace(**t), p["step"])
        terms.total.backward()
        totals.append(terms.total)
        grads.append([t[k].grad for k in ("x_logits", "mu", "logvar", "logits", "latent")])
        assert terms.tc_terms.shape == ((3,) if kw else (0,))
    assert torch.equal(totals[0], totals[1])
    for a, b in zip(*grads):
        assert (a is None and b is None) or torch.equal(a, b)


def test_training_with_weight_zero_is_unchanged_bit_for_bit():
    """Three steps of a real model: with the TC diagnostics (tc_weight 0) the losses and weights are those of the
    objective without them (no randomness drawn, nothing added to the graph)."""
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    runs = []
    for kw in ({}, dict(dataset_size=64)):
        torch.manual_seed(0)
        model = JointVAE((1, 32, 32), 3, [3])
        step = TrainStep(model, make_optimizer(model, 1e-3), Objective((3,), *CAPS, **kw),
                         generator=torch.Generator().manual_seed(5))
        losses = [step(x, s).total.detach().clone() for s in (1, 2, 3)]
        runs.append((losses, [q.detach().clone() for q in model.parameters()]))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
        assert torch.equal(a, b)


def test_term_reaches_the_encoder_through_the_sampled_latent():
    torch.manual_seed(0)
    model = JointVAE((1, 32, 32), 4, [3])
    x = torch.rand(8, 1, 32, 32)
    grads = []
    for weight in (0.0, 10.0):
        model.zero_grad()
        out = model(x, torch.Generator().manual_seed(3))
        terms = Objective((3,), *CAPS, tc_weight=weight, dataset_size=100)(x, out, 5)
        terms.total.backward()
        grads.append(model.to_posterior.weight.grad.clone())
        assert torch.isfinite(terms.tc_terms).all()
    assert not torch.allclose(grads[0], grads[1])


def test_objective_validates_the_settings():
    with pytest.raises(ValueError, match="tc_weight must be a finite number >= 0, got -1"):
        Objective((3,), *CAPS, tc_weight=-1.0, dataset_size=10)
    with pytest.raises(ValueError, match="tc_weight > 0 needs dataset_size"):
        Objective((3,), *CAPS, tc_weight=1.0)
    with pytest.raises(ValueError, match="tc_estimator must be one of"):
        Objective((3,), *CAPS, tc_estimator="iwae")
    with pytest.raises(ValueError, match="tc_on must be one of"):
        Objective((3,), *CAPS, tc_on="discrete")
    with pytest.raises(ValueError, match="dataset_size must be an int >= 1"):
        Objective((3,), *CAPS, dataset_size=0)


@pytest.mark.parametrize("b,n,estimator", [(1, 7, "mss"), (2, 2, "mss"), (5, 60000, "mss"), (4, 9, "mws"),
                                           (64, 60000, "mss")])
def test_log_importance_weights_equal_the_reference(b, n, estimator):
    got = log_importance_weights(b, n, estimator, torch.float64)
    np.testing.assert_allclose(got.numpy(), reference.log_importance_weights(b, n, estimator), rtol=1e-15)
    with pytest.raises(ValueError, match="batch <= dataset_size"):
        log_importance_weights(n + 1, n, estimator)


def test_posterior_sample_is_one_hot_with_the_posterior_frequencies():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, -0.5]], dtype=torch.float64).expand(20000, 5)
    mu, logvar = torch.full((20000, 1), 3.0, dtype=torch.float64), torch.full((20000, 1), math.log(0.25),
                                                                                dtype=torch.float64)
    z, y = posterior_sample(mu, logvar, logits, (3, 2), g)
    assert torch.equal(y.sum(1), torch.full((20000,), 2.0, dtype=torch.float64))
    assert set(y.unique().tolist()) == {0.0, 1.0}
    freq = y.mean(0).numpy()
    want = np.concatenate([reference.softmax_blocks(logits[:1].numpy(), [3, 2], np)[0]])
    np.testing.assert_allclose(freq, want, atol=0.015)
    assert z.mean().item() == pytest.approx(3.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.02)


def test_batch_tc_drops_the_discrete_part_when_continuous():
    rng = np.random.default_rng(0)
    z, mu, lv = (torch.tensor(rng.normal(size=(6, 2))) for _ in range(3))
    lg = torch.tensor(rng.normal(size=(6, 3)))
    y = torch.softmax(lg, 1)
    got = batch_tc(z, y, mu, lv, lg, (3,), 50, "mss", "continuous")
    want = reference.total_correlation(z.numpy(), mu.numpy(), lv.numpy(), y.numpy()[:, :0], lg.numpy()[:, :0], [], 50)
    assert got.tc.item() == pytest.approx(want["tc"], rel=1e-12)
    with pytest.raises(ValueError, match="tc_on must be one of"):
        batch_tc(z, y, mu, lv, lg, (3,), 50, "mss", "both")


# ------------------------------------------------------------------------------------------------ the training CLI


def test_term_log_puts_each_value_in_its_field(tmp_path):
    """The log record's tc, index_code_mi and dim_kl are the means of the steps' tc_terms, field by field (a
    misaligned column would swap them); without the dataset size the record has none of them."""
    model = JointVAE((1, 32, 32), 2, [3])
    world = World(0, 1, 0, torch.device("cpu"))
    for size, want in ((100, {"tc": 1.5, "index_code_mi": -2.0, "dim_kl": 7.0}), (None, {})):
        objective = Objective((3,), *CAPS, dataset_size=size)
        log = TermLog(model, objective, world, RunLength(8, 8, 10, 10), 4, tmp_path / "log.jsonl",
                      Progress(10, "t", enable=False))
        x = torch.rand(8, 1, 32, 32)
        terms = objective(x, model(x, torch.Generator().manual_seed(0)), 1)
        for tc in ((1.0, -1.0, 6.0), (2.0, -3.0, 8.0)):
            log.append(terms._replace(tc_terms=torch.tensor(tc) if size else terms.tc_terms))
        assert log.flush(2) is None
        assert {k: log.last_record[k] for k in want} == want
        assert ("tc" in log.last_record) == bool(size)




def _train(out, *flags) -> tuple[dict, list[dict]]:
    """(config.json, the log.jsonl records) of a tiny training run with these flags."""
    assert main(args(out, *flags), dataset=tiny_dataset()) == 0
    return (json.loads((out / "config.json").read_text()),
            [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()])


def test_flags_reach_the_config_and_the_log(tmp_path):
    cfg, log = _train(tmp_path / "run", "--tc-weight", "2", "--tc-estimator", "mws", "--tc-on", "continuous")
    assert (cfg["tc_weight"], cfg["tc_estimator"], cfg["tc_on"]) == (2.0, "mws", "continuous")
    for line in log:
        assert all(math.isfinite(line[k]) for k in ("tc", "index_code_mi", "dim_kl"))
    items = dict(scalar_items(log[-1]))
    assert items["tc/tc"] == pytest.approx(log[-1]["tc"])
    assert {"tc/index_code_mi", "tc/dim_kl"} <= set(items)


def test_the_log_has_the_diagnostics_with_the_term_off(tmp_path):
    cfg, log = _train(tmp_path / "run")
    assert cfg["tc_weight"] == 0.0 and cfg["tc_estimator"] == "mss" and cfg["tc_on"] == "joint"
    assert all({"tc", "index_code_mi", "dim_kl"} <= set(line) for line in log)


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(args(tmp_path / "a", "--tc-estimator", "iwae"), dataset=tiny_dataset())
    assert "invalid choice" in capsys.readouterr().err
    assert main(args(tmp_path / "b", "--tc-weight", "-1"), dataset=tiny_dataset()) == 2
    assert "tc_weight must be a finite number >= 0" in capsys.readouterr().err
    assert main(args(tmp_path / "c", "--tc-weight", "1", "--tc-on", "continuous", "--cont", "0"),
                dataset=tiny_dataset()) == 2
    assert "tc_on continuous needs continuous units" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
