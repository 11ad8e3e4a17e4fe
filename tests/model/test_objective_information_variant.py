"""The objective's information modes (issue 13) against reference.jointvae_objective(disc_capacity_on=...,
cont_capacity_on=...), their diagnostics (info_disc, agg_kl_disc, class_counts, info_cont, agg_kl_cont) in both
modes, the config keys and the training log."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast.objective import AGGREGATE_WEIGHT_FRACTION, Capacity, Objective, argmax_class_counts, jointvae_loss
from jointvae_fast.train import main
from tests.cli.test_train import args, tiny_dataset


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b, d = draw(st.integers(1, 12)), draw(st.integers(0, 4))
    disc = draw(st.lists(st.integers(2, 8), min_size=1, max_size=3))
    scale = draw(st.sampled_from([0.3, 1.0, 4.0]))
    return dict(
        x=(rng.random((b, 1, 4, 4)) < 0.5).astype(np.float64), x_logits=rng.normal(0, 3, (b, 1, 4, 4)),
        mu=rng.normal(0, 1, (b, d)), logvar=rng.normal(0, 1, (b, d)), logits=rng.normal(0, scale, (b, sum(disc))),
        disc=list(disc), step=draw(st.integers(0, 400)), cont=(0.0, 3.0, 200, 20.0),
        disc_cap=(0.0, draw(st.floats(0.0, 3.0)), 200, draw(st.floats(0.5, 50.0))),
        mode=draw(st.sampled_from(["kl", "information"])), weight=draw(st.none() | st.floats(0.0, 40.0)),
        cont_mode=draw(st.sampled_from(["kl", "information"])), cont_weight=draw(st.none() | st.floats(0.0, 40.0)))


def _ours(p, capacities_as_tensors=False):
    t = {k: torch.tensor(p[k], requires_grad=k != "x") for k in ("x", "x_logits", "mu", "logvar", "logits")}
    objective = Objective(tuple(p["disc"]), Capacity(*p["cont"][:3], p["cont"][3]),
                          Capacity(*p["disc_cap"][:3], p["disc_cap"][3]), 1.0, p["mode"], p["weight"],
                          p.get("cont_mode", "kl"), p.get("cont_weight"))
    out = type("Out", (), {k: t[k] for k in ("x_logits", "mu", "logvar", "logits")})
    if capacities_as_tensors:  # the CUDA-graph form: capacities as device scalars
        c_cont, c_disc = (torch.tensor(c, dtype=torch.float64) for c in objective.capacities(p["step"]))
        terms = objective.at_capacities(t["x"], out, c_cont, c_disc)
    else:
        terms = objective(t["x"], out, p["step"])
    terms.total.backward()
    return terms, (t["x_logits"].grad, t["mu"].grad, t["logvar"].grad, t["logits"].grad)


def _oracle(p):
    a = (p["x"], p["x_logits"], p["mu"], p["logvar"], p["logits"], p["disc"], p["step"], p["cont"], p["disc_cap"])
    kw = dict(disc_capacity_on=p["mode"], disc_aggregate_weight=p["weight"], cont_capacity_on=p.get("cont_mode", "kl"),
              cont_aggregate_weight=p.get("cont_weight"))
    return reference.jointvae_objective(*a, **kw), reference.jointvae_objective_vjp(*a, 1.0, **kw)


def _away_from_kinks(p, ref):
    """The capacity terms' signs are decided (float rounding cannot flip them)."""
    c_cont, c_disc = ref["c_cont"], ref["c_disc"]
    disc_sum = ref["kl_disc"].sum() if p["mode"] == "kl" else ref["info_disc"].sum()
    cont_sum = ref["kl_cont"].sum() if p.get("cont_mode", "kl") == "kl" else ref["info_cont"].sum()
    return abs(cont_sum - c_cont) > 1e-9 and abs(disc_sum - c_disc) > 1e-9


@settings(max_examples=40)
@given(problems(), st.booleans())
def test_matches_the_reference_float64(p, as_tensors):
    terms, grads = _ours(p, as_tensors)
    ref, ref_grads = _oracle(p)
    torch.testing.assert_close(terms.total, torch.tensor(float(ref["total"]), dtype=torch.float64), rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(terms.capacity_loss.double(),
                               torch.tensor(float(ref["cap_loss_cont"] + ref["cap_loss_disc"]), dtype=torch.float64),
                               rtol=1e-10, atol=1e-12)
    for name in ("info_disc", "agg_kl_disc", "kl_disc", "info_cont", "agg_kl_cont", "kl_cont"):
        got = getattr(terms, name).detach().numpy()
        np.testing.assert_allclose(got, ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    if not _away_from_kinks(p, ref):
        return
    for got, want, name in zip(grads, ref_grads, ("x_logits", "mu", "logvar", "logits")):
        got = np.zeros_like(want) if got is None else got.numpy()  # an empty block may get no gradient
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12, err_msg=name)


def test_information_mode_equals_eq7_above_capacity_and_differs_below():
    """lambda_agg = gamma_c (given: the default is gamma_c / 10): gamma |I - C| + gamma A = gamma (KL - C) when
    I >= C; below C, A is penalised."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 3, (32, 10)))
    x = torch.zeros(32, 1, 2, 2)
    out = type("Out", (), dict(x_logits=torch.zeros(32, 1, 2, 2, dtype=torch.float64), mu=torch.zeros(32, 0,
                               dtype=torch.float64), logvar=torch.zeros(32, 0, dtype=torch.float64), logits=logits))
    kl, info = (Objective((10,), None, Capacity(0.0, 5.0, 100, 30.0), 1.0, mode, 30.0)
                for mode in ("kl", "information"))
    low = kl.at_capacities(x.double(), out, 0.0, 0.01)  # I > C
    assert low.info_disc.sum() > 0.01
    assert info.at_capacities(x.double(), out, 0.0, 0.01).capacity_loss.item() == pytest.approx(
        low.capacity_loss.item(), rel=1e-12)
    high_kl, high_info = kl.at_capacities(x.double(), out, 0.0, 2.3), info.at_capacities(x.double(), out, 0.0, 2.3)
    a, i = high_kl.agg_kl_disc.sum().item(), high_kl.info_disc.sum().item()
    assert high_kl.capacity_loss.item() == pytest.approx(30 * (2.3 - i - a))
    assert high_info.capacity_loss.item() == pytest.approx(30 * (2.3 - i) + 30 * a)


def test_kl_mode_keeps_the_aggregate_out_of_the_graph():
    """In the kl mode A is only a diagnostic: the logits' gradient is Eq. 7's alone."""
    rng = np.random.default_rng(1)
    p = dict(x=(rng.random((6, 1, 4, 4)) < 0.5).astype(np.float64), x_logits=rng.normal(0, 1, (6, 1, 4, 4)),
             mu=rng.normal(0, 1, (6, 2)), logvar=rng.normal(0, 1, (6, 2)), logits=rng.normal(0, 2, (6, 7)),
             disc=[3, 4], step=50, cont=(0.0, 3.0, 200, 20.0), disc_cap=(0.0, 3.0, 200, 20.0), mode="kl", weight=None)
    terms, grads = _ours(p)
    assert not terms.agg_kl_disc.requires_grad and not terms.info_disc.requires_grad
    np.testing.assert_allclose(grads[3].numpy(), _oracle(p)[1][3], rtol=1e-9, atol=1e-13)


def test_argmax_class_counts():
    logits = torch.tensor([[0.0, 2.0, 1.0, 5.0, 0.0], [3.0, 2.0, 1.0, 0.0, 1.0], [0.0, 2.0, 3.0, 0.0, 0.5]])
    assert argmax_class_counts(logits, (3, 2)).tolist() == [1.0, 1.0, 1.0, 1.0, 2.0]
    assert argmax_class_counts(logits[:, :0], ()).shape == (0,)


def test_objective_and_loss_function_validate_the_mode():
    with pytest.raises(ValueError, match="disc_capacity_on"):
        Objective((3,), None, Capacity(0.0, 1.0, 10, 1.0), 1.0, "entropy")
    with pytest.raises(ValueError, match="disc_aggregate_weight"):
        Objective((3,), None, Capacity(0.0, 1.0, 10, 1.0), 1.0, "information", -1.0)
    assert Objective((3,), None, Capacity(0.0, 1.0, 10, 7.0), 1.0, "information", 7.0).aggregate_weight == 7.0
    z = torch.zeros(2, 1, 2, 2)
    terms = jointvae_loss(z, z, torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, 3), (3,), 5, None,
                          Capacity(0.0, 1.0, 10, 7.0), disc_capacity_on="information", disc_aggregate_weight=2.0)
    assert terms.capacity_loss.item() == pytest.approx(7.0 * 0.5)  # uniform rows: I = A = 0, C = 0.5


def test_default_aggregate_weight_is_a_tenth_of_gamma_c():
    """disc_aggregate_weight None: lambda_agg = gamma_c / 10, in the property and in the loss (against the oracle
    given that weight explicitly)."""
    assert AGGREGATE_WEIGHT_FRACTION == 0.1
    objective = Objective((3,), None, Capacity(0.0, 1.0, 10, 300.0), 1.0, "information")
    assert objective.aggregate_weight == pytest.approx(30.0, rel=1e-15)
    assert Objective((3,), None, None, 1.0, "information").aggregate_weight == 0.0
    rng = np.random.default_rng(2)
    p = dict(x=(rng.random((8, 1, 4, 4)) < 0.5).astype(np.float64), x_logits=rng.normal(0, 1, (8, 1, 4, 4)),
             mu=rng.normal(0, 1, (8, 2)), logvar=rng.normal(0, 1, (8, 2)), logits=rng.normal(0, 2, (8, 7)),
             disc=[3, 4], step=50, cont=(0.0, 3.0, 200, 20.0), disc_cap=(0.0, 3.0, 200, 300.0), mode="information",
             weight=None)
    terms, _ = _ours(p)
    ref = _oracle({**p, "weight": 30.0})[0]
    assert float(ref["agg_kl_disc"].sum()) > 0.01  # A matters
    assert terms.total.item() == pytest.approx(float(ref["total"]), rel=1e-12)


def _train(out, *flags) -> tuple[dict, list[dict]]:
    """(config.json, the log.jsonl records) of a tiny training run with these flags."""
    assert main(args(out, *flags), dataset=tiny_dataset()) == 0
    return (json.loads((out / "config.json").read_text()),
            [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()])


def test_flags_reach_the_config_and_the_log(tmp_path):
    cfg, log = _train(tmp_path / "run", "--disc-capacity-on", "information", "--disc-aggregate-weight", "3")
    assert cfg["disc_capacity_on"] == "information" and cfg["disc_aggregate_weight"] == 3.0
    for line in log:
        assert len(line["info_disc"]) == len(line["agg_kl_disc"]) == len(line["classes_in_use"]) == 1
        assert line["kl_disc"][0] == pytest.approx(line["info_disc"][0] + line["agg_kl_disc"][0], abs=1e-5)
        assert 1 <= line["classes_in_use"][0] <= 3


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(args(tmp_path / "a", "--disc-capacity-on", "entropy"), dataset=tiny_dataset())
    assert "invalid choice" in capsys.readouterr().err
    assert main(args(tmp_path / "b", "--disc-aggregate-weight", "-1"), dataset=tiny_dataset()) != 0
    assert "disc_aggregate_weight must be a finite number >= 0" in capsys.readouterr().err
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"disc_capacity_on": "entropy"}))
    assert main(args(tmp_path / "c", "--config", str(config)), dataset=tiny_dataset()) != 0
    assert "disc_capacity_on must be kl or information" in capsys.readouterr().err


def test_cont_information_mode_closes_the_loophole():
    """Every image with the same posterior, KL_z = C_z: Eq. 7's continuous term is 0, the information mode's is
    gamma_z * C_z + lambda_z * A (I = 0)."""
    b, d = 16, 3
    mu, logvar = torch.full((b, d), 0.8, dtype=torch.float64), torch.full((b, d), -0.5, dtype=torch.float64)
    out = type("Out", (), dict(x_logits=torch.zeros(b, 1, 2, 2, dtype=torch.float64), mu=mu, logvar=logvar,
                               logits=torch.zeros(b, 0, dtype=torch.float64)))
    x = torch.zeros(b, 1, 2, 2, dtype=torch.float64)
    kl_sum = float(0.5 * (0.8**2 + np.exp(-0.5) - 1 + 0.5)) * d
    kl, info = (Objective((), Capacity(0.0, 5.0, 100, 30.0), None, 1.0, "kl", None, mode) for mode in
                ("kl", "information"))
    eq7, variant = kl.at_capacities(x, out, kl_sum, 0.0), info.at_capacities(x, out, kl_sum, 0.0)
    assert eq7.capacity_loss.item() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(variant.info_cont.numpy(), 0.0, atol=1e-12)
    assert variant.capacity_loss.item() == pytest.approx(30.0 * kl_sum + 3.0 * kl_sum, rel=1e-12)


def test_cont_mode_validation_and_default_weight():
    with pytest.raises(ValueError, match="cont_capacity_on"):
        Objective((3,), Capacity(0.0, 1.0, 10, 1.0), None, 1.0, "kl", None, "tc")
    with pytest.raises(ValueError, match="cont_aggregate_weight"):
        Objective((3,), Capacity(0.0, 1.0, 10, 1.0), None, 1.0, "kl", None, "information", -1.0)
    assert Objective((), Capacity(0.0, 1.0, 10, 300.0), None, 1.0, "kl", None, "information").cont_weight == 30.0
    assert Objective((), Capacity(0.0, 1.0, 10, 300.0), None, 1.0, "kl", None, "information", 2.0).cont_weight == 2.0
    assert Objective((), None, None, 1.0, "kl", None, "information").cont_weight == 0.0


def test_cont_flags_reach_the_config_and_the_log(tmp_path, capsys):
    cfg, log = _train(tmp_path / "run", "--cont-capacity-on", "information", "--cont-aggregate-weight", "3")
    assert cfg["cont_capacity_on"] == "information" and cfg["cont_aggregate_weight"] == 3.0
    for line in log:
        assert len(line["info_cont"]) == len(line["agg_kl_cont"]) == len(line["kl_cont"])
        np.testing.assert_allclose(np.add(line["info_cont"], line["agg_kl_cont"]), line["kl_cont"], atol=1e-5)
        assert line["info_cont_sum"] == pytest.approx(sum(line["info_cont"]))
        assert min(line["info_cont"]) >= -1e-5
    assert main(args(tmp_path / "b", "--cont-aggregate-weight", "-1"), dataset=tiny_dataset()) != 0
    assert "cont_aggregate_weight must be a finite number >= 0" in capsys.readouterr().err
