"""objective.jointvae_loss / Objective against the NumPy oracle reference.jointvae_objective (+ its VJP)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import reference
from jointvae_fast.model import JointVAE
from jointvae_fast.objective import Capacity, Objective, jointvae_loss, max_discrete_capacity


capacities = st.one_of(
    st.none(),
    st.tuples(
        st.floats(0, 5), st.floats(0, 60), st.integers(1, 300), st.floats(0, 300),
    ),
)


@st.composite
def problems(draw):
    b = draw(st.integers(1, 12))
    c = draw(st.sampled_from([1, 3]))
    hw = draw(st.sampled_from([2, 4, 8]))
    d = draw(st.integers(0, 8))
    disc = draw(st.lists(st.integers(2, 8), min_size=0 if d else 1, max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    binary = draw(st.booleans())
    x = (rng.random((b, c, hw, hw)) < 0.5).astype(np.float64) if binary else rng.random((b, c, hw, hw))
    arrays = dict(
        x=x,
        x_logits=rng.normal(0, 3, (b, c, hw, hw)),
        mu=rng.normal(0, scale, (b, d)),
        logvar=rng.normal(0, scale, (b, d)),
        logits=rng.normal(0, 3 * scale, (b, sum(disc))),
    )
    return dict(arrays=arrays, disc=tuple(disc), step=draw(st.integers(0, 400)), cont=draw(capacities),
                disc_cap=draw(capacities), recon_weight=draw(st.sampled_from([1.0, 1.0 / 3.0])))


def ours(p, dtype):
    t = {k: torch.tensor(v, dtype=dtype, requires_grad=k != "x") for k, v in p["arrays"].items()}
    cont = Capacity(*p["cont"][:3], gamma=p["cont"][3]) if p["cont"] else None
    disc = Capacity(*p["disc_cap"][:3], gamma=p["disc_cap"][3]) if p["disc_cap"] else None
    terms = jointvae_loss(t["x"], t["x_logits"], t["mu"], t["logvar"], t["logits"], p["disc"], p["step"], cont, disc,
                          p["recon_weight"])
    terms.total.backward()
    grads = tuple(t[k].grad for k in ("x_logits", "mu", "logvar", "logits"))
    return terms, grads


def oracle(p):
    a = p["arrays"]
    args = (a["x"], a["x_logits"], a["mu"], a["logvar"], a["logits"], list(p["disc"]), p["step"], p["cont"], p["disc_cap"])
    ref = reference.jointvae_objective(*args, recon_weight=p["recon_weight"])
    grads = reference.jointvae_objective_vjp(*args, 1.0, recon_weight=p["recon_weight"])
    return ref, grads


def near_kink(p, ref):
    """|KL - C| within rounding of 0 (and not exactly 0): the sign, hence the gradient, is ill-conditioned."""
    for spec, kl, c in ((p["cont"], ref["kl_cont"], ref["c_cont"]), (p["disc_cap"], ref["kl_disc"], ref["c_disc"])):
        if spec and spec[3] > 0:
            gap = abs(float(np.sum(kl)) - c)
            if 0 < gap < 1e-4 * (1 + abs(c)):
                return True
    return False


def close(actual, expected, rtol, atol):
    np.testing.assert_allclose(np.asarray(actual.detach() if torch.is_tensor(actual) else actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


@given(problems())
def test_float64_equals_reference_forward_and_gradient(p):
    ref, ref_grads = oracle(p)
    assume(not near_kink(p, ref))
    terms, grads = ours(p, torch.float64)
    close(terms.total, ref["total"], 1e-10, 1e-12)
    close(terms.recon, ref["recon"], 1e-10, 1e-12)
    close(terms.kl_cont, ref["kl_cont"], 1e-9, 1e-12)
    close(terms.kl_disc, ref["kl_disc"], 1e-9, 1e-12)
    close(terms.capacity_loss, ref["cap_loss_cont"] + ref["cap_loss_disc"], 1e-9, 1e-10)
    assert terms.c_cont == pytest.approx(ref["c_cont"], abs=1e-12)
    assert terms.c_disc == pytest.approx(ref["c_disc"], abs=1e-12)
    for g, rg in zip(grads, ref_grads):
        if rg is not None:
            close(g if g is not None else torch.zeros(rg.shape), rg, 1e-8, 1e-12)


@given(problems())
def test_float32_equals_reference_within_float32_rounding(p):
    ref, ref_grads = oracle(p)
    assume(not near_kink(p, ref))
    terms, grads = ours(p, torch.float32)
    # float32 sums of up to B*C*H*W ~ 2e3 terms: relative error ~ 1e-6; absolute floor for values near 0
    close(terms.total, ref["total"], 1e-5, 1e-5)
    close(terms.recon, ref["recon"], 1e-5, 1e-4)
    close(terms.kl_cont, ref["kl_cont"], 1e-4, 1e-5)
    close(terms.kl_disc, ref["kl_disc"], 1e-4, 1e-5)
    for g, rg in zip(grads, ref_grads):
        if rg is not None:
            scale = float(np.abs(rg).max()) if rg.size else 0.0
            close(g if g is not None else torch.zeros(rg.shape), rg, 1e-4, 1e-5 * max(scale, 1e-3))


def test_objective_class_binds_the_settings():
    g = torch.Generator().manual_seed(0)
    model = JointVAE((1, 32, 32), 3, [4])
    x = torch.rand(5, 1, 32, 32, generator=g)
    out = model(x, torch.Generator().manual_seed(1))
    cont, disc = Capacity(0.0, 5.0, 100, 30.0), Capacity(0.0, 50.0, 100, 30.0)
    obj = Objective((4,), cont, disc, 1.0 / 3.0)
    a = obj(x, out, 7)
    b = jointvae_loss(x, out.x_logits, out.mu, out.logvar, out.logits, (4,), 7, cont, disc, 1.0 / 3.0)
    assert torch.equal(a.total, b.total) and a.c_cont == pytest.approx(0.35)
    assert a.c_disc == pytest.approx(math.log(4))  # 50*7/100 = 3.5, capped at sum log K = log 4
    ref = reference.jointvae_objective(x.double().numpy(), out.x_logits.detach().double().numpy(),
                                       out.mu.detach().double().numpy(), out.logvar.detach().double().numpy(),
                                       out.logits.detach().double().numpy(), [4], 7, (0.0, 5.0, 100, 30.0),
                                       (0.0, 50.0, 100, 30.0), recon_weight=1.0 / 3.0)
    close(a.total, ref["total"], 1e-5, 1e-6)


def test_capacity_schedule_known_values():
    c = Capacity(0.0, 5.0, 25000, 30.0)
    assert c.at(0) == 0.0 and c.at(1) == 5.0 / 25000 and c.at(12500) == 2.5 and c.at(10**6) == 5.0
    assert Capacity(1.0, 3.0, 4, 1.0).at(2) == 2.0
    assert Capacity(0.0, 5.0, 10, 1.0).at(10, cap=math.log(3)) == math.log(3)
    assert max_discrete_capacity([10]) == pytest.approx(math.log(10))
    assert max_discrete_capacity([2, 2, 2]) == pytest.approx(3 * math.log(2))
    for step in (0, 1, 17, 25000, 30000):
        assert c.at(step) == pytest.approx(reference.capacity(step, 0.0, 5.0, 25000))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(c_min=0.0, c_max=5.0, num_iters=0, gamma=1.0), "num_iters"),
        (dict(c_min=0.0, c_max=float("inf"), num_iters=10, gamma=1.0), "c_max"),
        (dict(c_min=0.0, c_max=5.0, num_iters=10, gamma=-1.0), "gamma"),
    ],
)
def test_capacity_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Capacity(**kwargs)


def test_shape_mismatch_is_rejected():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="x_logits"):
        jointvae_loss(x, torch.zeros(2, 1, 4, 5), torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 2), (2,), 1,
                      None, None)
