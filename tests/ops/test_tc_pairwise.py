"""ops.tc_pairwise (the fused op where compiled, else the composite twin) and the composite twin against
reference/total_correlation.py: values and gradients, float32 within the bounds of tests/tc_cases.py and float64
tightly; argument errors.

Measured worst err/bound over 300 random cases each (development CPU; the bounds are worst-case, not fitted):
float32 joint 0.12, marginals 0.14, d z 0.06, d mu 0.08, d logvar 0.05, d y 0.17, d logits 0.17; float64 at most
0.23. Without the flush-to-zero allowance (`tiny` in tests/tc_cases.py) responsibilities below 1e-38 failed.
The large-batch test (B 200-400) found the fused op's log-softmax rows computed as l - (max + log S), which
rounds at the scale of the largest logit (logits of 1e4: d y 15x its float32 bound, the float64 values 4x);
(l - max) - log S keeps them within 0.11 of the bounds (float32) over 40 such cases.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings

import reference
from jointvae_fast import ops
from tests.ops_cases import assert_close
from tests.tc_cases import EPS32, EPS64, tc_cases, tc_pairwise_bounds

NAMES = ("log_q_joint", "log_q_marginals", "d z", "d mu", "d logvar", "d y", "d logits")
INPUTS = ("z", "mu", "logvar", "y", "logits")


def _run(fn, case, dtype):
    """(log_q_joint, log_q_marginals, d z, d mu, d logvar, d y, d logits) of fn on the case in dtype."""
    leaves = [torch.tensor(case[k], dtype=dtype, requires_grad=True) for k in INPUTS]
    joint, marg = fn(*leaves[:5], case["dims"], torch.tensor(case["log_weights"], dtype=dtype))
    loss = (joint * torch.tensor(case["grad_joint"], dtype=dtype)).sum() \
        + (marg * torch.tensor(case["grad_marginals"], dtype=dtype)).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return (joint, marg, *[torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)])


def _reference(case):
    args = [case[k].astype(np.float64) for k in INPUTS]
    w = case["log_weights"].astype(np.float64)
    values = reference.tc_pairwise(*args, case["dims"], w)
    grads = reference.tc_pairwise_vjp(*args, case["dims"], w, case["grad_joint"].astype(np.float64),
                                      case["grad_marginals"].astype(np.float64))
    return (*values, *grads)


TWINS = pytest.mark.parametrize("fn", [ops.tc_pairwise, ops.composite_tc_pairwise], ids=["dispatch", "composite"])


@TWINS
@given(case=tc_cases())
def test_float32_within_bounds(fn, case):
    got = _run(fn, case, torch.float32)
    assert got[0].dtype == torch.float32 and got[1].shape == (case["B"], case["D"] + len(case["dims"]))
    for g, want, tol, name in zip(got, _reference(case), tc_pairwise_bounds(case, EPS32), NAMES):
        assert_close(g, want, tol + 1e-30, name)


@TWINS
@settings(max_examples=25)
@given(case=tc_cases())
def test_float64_matches_reference_tightly(fn, case):
    got = _run(fn, case, torch.float64)
    assert got[0].dtype == torch.float64
    for g, want, tol, name in zip(got, _reference(case), tc_pairwise_bounds(case, EPS64), NAMES):
        assert_close(g, want, tol + 1e-300, name)


@TWINS
def test_gradcheck_float64(fn):
    rng = np.random.default_rng(0)
    B, D, dims = 4, 3, [3, 2]
    leaves = [torch.tensor(rng.standard_normal(s), dtype=torch.float64, requires_grad=True)
              for s in ((B, D), (B, D), (B, D), (B, 5), (B, 5))]
    w = torch.tensor(reference.log_importance_weights(B, 50), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *t: fn(*t, dims, w), leaves)


def test_exported_lazily_with_the_other_ops():
    assert {"tc_pairwise", "composite_tc_pairwise"} <= set(ops.__all__)
    assert ops.tc_pairwise.__module__ == "jointvae_fast.ops.fused"


def _inputs(B=3, D=2, K=(3,)):
    t = lambda *s: torch.zeros(*s)  # noqa: E731
    return dict(z=t(B, D), mu=t(B, D), logvar=t(B, D), y=t(B, sum(K)), logits=t(B, sum(K)), disc_dims=list(K),
                log_weights=t(B, B))


@pytest.mark.parametrize("change, match", [
    (dict(z=torch.zeros(3, 1)), r"z must have the shape of mu \(3, 2\), got \(3, 1\)"),
    (dict(y=torch.zeros(3, 2)), r"y must have the shape of logits \(3, 3\), got \(3, 2\)"),
    (dict(log_weights=torch.zeros(3)), r"log_weights must have shape \(3, 3\), got \(3,\)"),
    (dict(z=np.zeros((3, 2))), "z must be a torch.Tensor"),
    (dict(disc_dims=[4]), "disc_dims"),
    (dict(logvar=torch.zeros(3, 3)), "logvar"),
])
def test_bad_arguments_are_named(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ops.tc_pairwise(**{**_inputs(), **change})


@TWINS
def test_empty_latent_parts(fn):
    """D = 0 (discrete only) and V = 0 (continuous only) give [B, V] and [B, D] marginals; B = 0 gives empties."""
    joint, marg = fn(**_inputs(D=0))
    assert marg.shape == (3, 1) and torch.isfinite(joint).all()
    joint, marg = fn(**_inputs(K=()))
    assert marg.shape == (3, 2) and torch.isfinite(joint).all()
    joint, marg = fn(**_inputs(B=0))
    assert joint.shape == (0,) and marg.shape == (0, 3)


def test_dispatch_takes_the_compiled_op_on_cpu():
    """With the compiled ops, the CPU dispatch never builds the composite's B x B x D tensor."""
    if ops.backend() == "composite":
        pytest.skip("no compiled ops")
    from jointvae_fast.ops import fused
    called = []
    orig = fused.composite_tc_pairwise
    fused.composite_tc_pairwise = lambda *a: called.append(1) or orig(*a)
    try:
        ops.tc_pairwise(**_inputs())
    finally:
        fused.composite_tc_pairwise = orig
    assert not called


def test_all_minus_inf_terms_give_minus_inf_and_zero_gradients():
    """A row whose weights are all -inf: log q = -inf and no NaN in the gradients (responsibilities 0)."""
    t = {k: v.clone().requires_grad_(k in INPUTS) for k, v in _inputs().items() if isinstance(v, torch.Tensor)}
    t["log_weights"][0] = -float("inf")
    joint, marg = ops.tc_pairwise(**t, disc_dims=[3])
    assert joint[0] == -float("inf") and (marg[0] == -float("inf")).all() and torch.isfinite(joint[1:]).all()
    (joint[1:].sum() + marg[1:].sum()).backward()
    assert all(torch.isfinite(t[k].grad).all() for k in INPUTS)


@settings(max_examples=6, deadline=None)
@given(case=tc_cases(min_b=200, max_b=400, max_d=6, max_vars=2))
def test_large_batches_within_bounds_and_independent_of_threads(case):
    """B of 200-400: the CPU twin's many row chunks (their column partials summed in order) and padded column
    tiles, within the float32 bounds; 1 and 2 torch threads give bit-identical values and gradients."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(ops.tc_pairwise, case, torch.float32)
        torch.set_num_threads(2)
        two = _run(ops.tc_pairwise, case, torch.float32)
    finally:
        torch.set_num_threads(threads)
    for a, b, name in zip(one, two, NAMES):
        assert torch.equal(a, b), name
    for g, want, tol, name in zip(one, _reference(case), tc_pairwise_bounds(case, EPS32), NAMES):
        assert_close(g, want, tol + 1e-30, name)
