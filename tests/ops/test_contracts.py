"""Op contracts of jointvae_fast.ops: opcheck, gradcheck, torch.compile, bad inputs, backend report."""
import math

import pytest
import torch

from jointvae_fast import ops

fused = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")


def _inputs(B=5, D=3, dims=(2, 4), dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(B, 2 * D + sum(dims), generator=g, dtype=dtype)
    mu, lv, lg = P[:, :D].clone(), P[:, D : 2 * D].clone(), P[:, 2 * D :].clone() * 2
    for t in (mu, lv, lg):
        t.requires_grad_(requires_grad)
    eps = torch.randn(B, D, generator=g, dtype=dtype)
    u = torch.rand(B, sum(dims), generator=g, dtype=dtype).clamp_(1e-6, 1 - 1e-6)
    return mu, lv, lg, list(dims), eps, u


@fused
@pytest.mark.parametrize("D,dims", [(3, (2, 4)), (0, (3,)), (4, ())])
def test_gradcheck_float64(D, dims):
    mu, lv, lg, dims, eps, u = _inputs(D=D, dims=dims)
    assert torch.autograd.gradcheck(
        lambda m, l, g: ops.sample_latent(m, l, g, dims, 0.7, noise=(eps, u)), (mu, lv, lg))
    # c far from the KL sums: |.| is differentiable there
    assert torch.autograd.gradcheck(
        lambda m, l, g: ops.kl_capacity_loss(m, l, g, dims, 50.0, -5.0, 3.0, 2.0), (mu, lv, lg))
    assert torch.autograd.gradcheck(
        lambda m, l, g: ops.kl_capacity_loss(m, l, g, dims, -50.0, 50.0, 3.0, 2.0), (mu, lv, lg))
    assert torch.autograd.gradcheck(
        lambda m, l, g: ops.sample_latent(m, l, g, dims, 0.7, training=False), (mu, lv, lg))


@fused
def test_opcheck_every_op():
    from torch.library import opcheck

    for dtype in (torch.float32, torch.float64):
        mu, lv, lg, dims, eps, u = _inputs(dtype=dtype)
        opcheck(torch.ops.jointvae.sample_latent.default, (mu, lv, lg, dims, 0.7, True, eps, u, None))
        opcheck(torch.ops.jointvae.sample_latent.default, (mu, lv, lg, dims, 0.7, False, None, None, None))
        opcheck(torch.ops.jointvae.kl_capacity_loss.default, (mu, lv, lg, dims, 1.0, 0.5, 3.0, 2.0))
        with torch.no_grad():
            latent, se, _ = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, 0.7, True, eps, u, None)
            loss, kc, kd = torch.ops.jointvae.kl_capacity_loss(mu, lv, lg, dims, 1.0, 0.5, 3.0, 2.0)
        d = [t.detach() for t in (mu, lv, lg)]
        opcheck(torch.ops.jointvae.sample_latent_backward.default,
                (torch.randn_like(latent), latent, se, dims, 0.7, True))
        opcheck(torch.ops.jointvae.kl_capacity_loss_backward.default,
                (torch.ones((), dtype=dtype), torch.randn_like(kc), None, *d, kc, kd, dims, 1.0, 0.5, 3.0, 2.0))
    opcheck(torch.ops.jointvae.philox_uniform_.default, (torch.empty(10), 3, 4))


def _tc_inputs(dtype, B=5, D=3, dims=(2, 4)):
    """(z, mu, logvar, y, logits, dims, log_weights) of tc_pairwise, mu/logvar/logits differentiable."""
    mu, lv, lg, dims, eps, u = _inputs(B=B, D=D, dims=dims, dtype=dtype)
    z = (mu + eps).detach().requires_grad_()
    y = ops.composite_sample_latent(mu, lv, lg, dims, 0.7, noise=(eps, u))[:, D:].detach().requires_grad_()
    return z, mu, lv, y, lg, dims, torch.full((B, B), -math.log(B * 50.0), dtype=dtype)


@fused
@pytest.mark.parametrize("D,dims", [(3, (2, 4)), (0, (3,)), (4, ())])
def test_opcheck_tc_pairwise(D, dims):
    from torch.library import opcheck

    for dtype in (torch.float32, torch.float64):
        args = _tc_inputs(dtype, D=D, dims=dims)
        opcheck(torch.ops.jointvae.tc_pairwise.default, args)
        with torch.no_grad():
            joint, marg = torch.ops.jointvae.tc_pairwise(*args)
        d = [t.detach() for t in args[:5]]
        opcheck(torch.ops.jointvae.tc_pairwise_backward.default,
                (torch.randn_like(joint), torch.randn_like(marg), *d, args[5], args[6], joint, marg))


@fused
@pytest.mark.slow
def test_torch_compile_fullgraph_uses_both_ops():
    torch._dynamo.reset()
    mu, lv, lg, dims, eps, u = _inputs(B=8, D=3, dims=(4, 2), dtype=torch.float32)

    def step(mu, lv, lg):
        z = ops.sample_latent(mu, lv, lg, dims, 0.67, noise=(eps, u))
        loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, dims, 1.0, 0.5, 30.0, 30.0)
        return (z * z).sum() + loss, kc, kd

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    want = step(mu, lv, lg)
    got = compiled(mu, lv, lg)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(got[0], (mu, lv, lg))
    gb = torch.autograd.grad(want[0], (mu, lv, lg))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)

    # the total-correlation op in the same graph
    z, mu2, lv2, y, lg2, tdims, w = _tc_inputs(torch.float32)

    def tc(z, mu, lv, y, lg):
        joint, marg = ops.tc_pairwise(z, mu, lv, y, lg, tdims, w)
        return joint.mean() - marg.sum(dim=1).mean()

    leaves = (z, mu2, lv2, y, lg2)
    got, want = torch.compile(tc, fullgraph=True, backend="aot_eager")(*leaves), tc(*leaves)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves)):
        torch.testing.assert_close(a, b)

    # generator mode under compile: fresh noise per call
    def sample(mu, lv, lg):
        return ops.sample_latent(mu, lv, lg, dims, 0.67)

    cs = torch.compile(sample, fullgraph=True, backend="aot_eager")
    a, b = cs(mu, lv, lg), cs(mu, lv, lg)
    assert not torch.equal(a, b)


@fused
def test_float16_and_bfloat16_are_upcast_before_the_op_is_called(monkeypatch):
    """Half inputs never reach the compiled op (no raised-and-caught C++ error per call): they are upcast
    first, and the results equal the float32 computation on the upcast inputs, bit for bit."""
    from jointvae_fast.ops import fused as fused_mod

    def refuse_half(op):
        def call(*args):
            halves = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.dtype in (torch.float16, torch.bfloat16)]
            assert not halves, f"the compiled op was called with {halves}"
            return op(*args)
        return call

    monkeypatch.setattr(fused_mod, "_sample_latent_op", refuse_half(fused_mod._sample_latent_op))
    monkeypatch.setattr(fused_mod, "_kl_op", refuse_half(fused_mod._kl_op))
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    for dt in (torch.float16, torch.bfloat16):
        h = [t.to(dt) for t in (mu, lv, lg)]
        f = [t.float() for t in h]
        for training in (True, False):
            out = ops.sample_latent(*h, dims, 0.5, training=training, generator=torch.Generator().manual_seed(3))
            want = ops.sample_latent(*f, dims, 0.5, training=training, generator=torch.Generator().manual_seed(3))
            assert out.dtype == torch.float32 and torch.equal(out, want)
        for got, want in zip(ops.kl_capacity_loss(*h, dims, 1, 1, 1, 1), ops.kl_capacity_loss(*f, dims, 1, 1, 1, 1)):
            assert got.dtype == torch.float32 and torch.equal(got, want)


@fused
def test_tau_may_be_a_one_element_tensor():
    """tau as a tensor (an annealed temperature a CUDA graph reads at run time) gives what the float gives."""
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    for fn in (ops.sample_latent, ops.composite_sample_latent):
        want = fn(mu, lv, lg, dims, 0.3, noise=(eps, u))
        assert torch.equal(fn(mu, lv, lg, dims, torch.tensor(0.3), noise=(eps, u)), want)
        assert torch.equal(fn(mu, lv, lg, dims, torch.tensor([0.3], dtype=torch.float64), noise=(eps, u)), want)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(ops.sample_latent(mu, lv, lg, dims, torch.tensor(0.3), generator=g1),
                       ops.sample_latent(mu, lv, lg, dims, 0.3, generator=g2))
    with pytest.raises(ValueError, match="one floating-point element"):
        ops.sample_latent(mu, lv, lg, dims, torch.tensor([0.3, 0.3]))
    for fn in (ops.sample_latent, ops.composite_sample_latent):
        with pytest.raises(ValueError, match="tau must be a finite number > 0"):
            fn(mu, lv, lg, dims, torch.tensor(-1.0))


def test_backend_reports_a_reason():
    info = ops.backend_info()
    assert info["backend"] == ops.backend() in ("cuda+cpu", "cpu", "composite")
    assert isinstance(info["reason"], str) and info["reason"]


@pytest.mark.parametrize("fn", [ops.sample_latent, ops.composite_sample_latent])
def test_sample_latent_bad_inputs(fn):
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    with pytest.raises(ValueError, match="tau"):
        fn(mu, lv, lg, dims, 0.0)
    with pytest.raises(ValueError, match="tau"):
        fn(mu, lv, lg, dims, float("nan"))
    with pytest.raises(ValueError, match="disc_dims"):
        fn(mu, lv, lg, [2, 3], 1.0)
    with pytest.raises(ValueError, match=r"disc_dims\[0\]"):
        fn(mu, lv, lg[:, :5], [1, 4], 1.0)
    with pytest.raises(TypeError, match="disc_dims"):
        fn(mu, lv, lg, [2.5, 3.5], 1.0)
    with pytest.raises(ValueError, match="logvar"):
        fn(mu, lv[:, :2], lg, dims, 1.0)
    with pytest.raises(ValueError, match="rows"):
        fn(mu, lv, lg[:3], dims, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        fn(mu[0], lv, lg, dims, 1.0)
    with pytest.raises(TypeError, match="dtype"):
        fn(mu, lv.double(), lg, dims, 1.0)
    with pytest.raises(TypeError, match="floating"):
        fn(mu.long(), lv.long(), lg.long(), dims, 1.0)
    with pytest.raises(TypeError, match="mu"):
        fn(mu.numpy(), lv, lg, dims, 1.0)
    with pytest.raises(ValueError, match="noise eps"):
        fn(mu, lv, lg, dims, 1.0, noise=(eps[:2].float(), u.float()))
    with pytest.raises(TypeError, match="noise"):
        fn(mu, lv, lg, dims, 1.0, noise=eps)
    if torch.device("meta") != mu.device:
        with pytest.raises(ValueError, match="device"):
            fn(mu, lv.to("meta"), lg, dims, 1.0)


@pytest.mark.parametrize("fn", [ops.kl_capacity_loss, ops.composite_kl_capacity_loss])
def test_kl_capacity_loss_bad_inputs(fn):
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    with pytest.raises(ValueError, match="disc_dims"):
        fn(mu, lv, lg, [7], 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"disc_dims\[1\]"):
        fn(mu, lv, lg, [5, 1], 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="logvar"):
        fn(mu, lv.t(), lg, dims, 1.0, 1.0, 1.0, 1.0)
    if fn is ops.kl_capacity_loss:
        with pytest.raises(TypeError, match="c_cont"):
            fn(mu, lv, lg, dims, "a", 1.0, 1.0, 1.0)


@fused
def test_torch_check_guards_the_raw_ops():
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    op = torch.ops.jointvae.sample_latent.default
    with pytest.raises(RuntimeError, match="sum\\(disc_dims\\)"):
        op(mu, lv, lg, [2, 3], 0.5, True, None, None, None)
    with pytest.raises(RuntimeError, match="tau"):
        op(mu, lv, lg, dims, -1.0, True, None, None, None)
    with pytest.raises(RuntimeError, match=">= 2"):
        op(mu, lv, lg, [1, 5], 0.5, True, None, None, None)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(mu.half(), lv.half(), lg.half(), dims, 0.5, True, None, None, None)
    with pytest.raises(RuntimeError, match="eps"):
        op(mu, lv, lg, dims, 0.5, True, eps[:, :2].float(), u.float(), None)
    with pytest.raises(RuntimeError, match="both eps and u"):
        op(mu, lv, lg, dims, 0.5, True, eps.float(), None, None)
    with pytest.raises(RuntimeError, match="at most 64"):
        op(mu, lv, torch.zeros(5, 130), [2] * 65, 0.5, True, None, None, None)
    with pytest.raises(RuntimeError, match="B = 0"):
        torch.ops.jointvae.kl_capacity_loss(mu[:0], lv[:0], lg[:0], dims, 1.0, 1.0, 1.0, 1.0)


def test_optional_parts_and_empty_batch():
    mu, lv, lg, dims, eps, u = _inputs(dtype=torch.float32, requires_grad=False)
    y = ops.sample_latent(None, None, lg, dims, 0.5)
    assert y.shape == lg.shape and torch.allclose(y[:, :2].sum(1), torch.ones(5))
    z = ops.sample_latent(mu, lv, None, [], 0.5, training=False)
    assert torch.equal(z, mu)
    loss, kc, kd = ops.kl_capacity_loss(None, None, lg, dims, 0.0, 0.0, 1.0, 1.0)
    assert kc.shape == (0,) and kd.shape == (2,)
    loss, kc, kd = ops.kl_capacity_loss(mu, lv, None, [], 1.0, 2.0, 1.0, 1.0)
    assert kd.shape == (0,) and math.isclose(loss.item(), abs(kc.sum().item() - 1.0) + 2.0, rel_tol=1e-6)
    empty = ops.sample_latent(mu[:0], lv[:0], lg[:0], dims, 0.5)
    assert empty.shape == (0, 3 + 6)
    with pytest.raises(ValueError, match="B = 0"):
        ops.kl_capacity_loss(mu[:0], lv[:0], lg[:0], dims, 1.0, 1.0, 1.0, 1.0)


@fused
def test_composite_equals_fused_with_explicit_noise():
    mu, lv, lg, dims, eps, u = _inputs(B=64, D=10, dims=(10,), dtype=torch.float64)
    a = ops.sample_latent(mu, lv, lg, dims, 0.67, noise=(eps, u))
    b = ops.composite_sample_latent(mu, lv, lg, dims, 0.67, noise=(eps, u))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ka = ops.kl_capacity_loss(mu, lv, lg, dims, 1.0, 2.0, 30.0, 40.0)
    kb = ops.composite_kl_capacity_loss(mu, lv, lg, dims, 1.0, 2.0, 30.0, 40.0)
    for x, y in zip(ka, kb):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(a.sum() + ka[0], (mu, lv, lg))
    gb = torch.autograd.grad(b.sum() + kb[0], (mu, lv, lg))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@fused
@pytest.mark.slow
def test_torch_compile_inductor_matches_eager_under_the_same_seed():
    """Default backend (inductor, ~10-20 s to compile here): same seed -> same sample and gradients."""
    torch._dynamo.reset()
    dims = [4, 2]
    P = torch.randn(8, 12, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def step(P):
        mu, lv, lg = P[:, :3], P[:, 3:6], P[:, 6:]
        z = ops.sample_latent(mu, lv, lg, dims, 0.67)
        loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, dims, 1.0, 0.5, 30.0, 30.0)
        return (z * z).sum() + loss

    compiled = torch.compile(step, fullgraph=True)
    compiled(P)
    torch.manual_seed(0)
    a = compiled(P)
    (ga,) = torch.autograd.grad(a, P)
    torch.manual_seed(0)
    b = step(P)
    (gb,) = torch.autograd.grad(b, P)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


def test_forced_composite_backend_in_a_fresh_process():
    """JOINTVAE_FAST_BACKEND=composite: import works, backend() says so, the API still computes."""
    import os
    import subprocess
    import sys

    code = (
        "import torch; from jointvae_fast import ops; assert ops.backend() == 'composite', ops.backend_info();"
        "z = ops.sample_latent(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 4), [4], 0.5);"
        "l = ops.kl_capacity_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 4), [4], 0., 0., 1., 1.)[0];"
        "assert z.shape == (3, 6) and abs(l.item()) < 1e-6; print(ops.backend_info()['reason'])"
    )
    env = dict(os.environ, JOINTVAE_FAST_BACKEND="composite")
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "JOINTVAE_FAST_BACKEND=composite" in out.stdout
