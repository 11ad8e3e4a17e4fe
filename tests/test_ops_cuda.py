"""The fused ops on CUDA: the same properties as on CPU, CUDA == CPU twin, CUDA graph capture.

Marked `cuda`: skipped where no GPU is visible (tests/conftest.py); run by benchmarks/gpu_check.sh.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast import ops
from tests.ops_cases import assert_close, as_torch, kl_cont_scale, kl_disc_scale, latent_cases, y_atol, z_scale

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ops.backend() != "cuda+cpu", reason=f"CUDA ops not built ({ops.backend_info()['reason']})"),
]
DEV = "cuda"


def _cuda(case, dtype=torch.float32):
    return tuple(t.to(DEV) for t in as_torch(case, dtype=dtype))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 5000))
def test_philox_uniform_cuda_bit_identical_to_reference_and_cpu(seed, offset, n):
    got = ops.philox_uniform(seed, offset, n, device=DEV).cpu().numpy()
    np.testing.assert_array_equal(got.view(np.uint32), reference.philox_uniform(seed, offset, n).view(np.uint32))
    np.testing.assert_array_equal(got.view(np.uint32), ops.philox_uniform(seed, offset, n).numpy().view(np.uint32))


@given(latent_cases())
def test_sample_latent_cuda_vs_reference_and_cpu(case):
    mu, lv, lg = (t.requires_grad_() for t in _cuda(case))
    noise = (torch.from_numpy(case["eps"]).to(DEV), torch.from_numpy(case["u"]).to(DEV))
    latent = ops.sample_latent(mu, lv, lg, case["dims"], case["tau"], noise=noise)
    want = reference.sample_latent(case["mu"], case["logvar"], case["logits"], case["dims"], case["tau"],
                                   case["eps"], case["u"])
    D = case["D"]
    assert_close(latent[:, :D], want[:, :D], 1e-6 * z_scale(case) + 1e-30, "z")
    assert_close(latent[:, D:], want[:, D:], y_atol(case["tau"]), "y")
    cpu = ops.sample_latent(*as_torch(case), case["dims"], case["tau"],
                            noise=(torch.from_numpy(case["eps"]), torch.from_numpy(case["u"])))
    assert_close(latent[:, :D], cpu[:, :D].numpy(), 2e-6 * z_scale(case) + 1e-30, "z: CUDA vs CPU")
    assert_close(latent[:, D:], cpu[:, D:].numpy(), 2 * y_atol(case["tau"]), "y: CUDA vs CPU")
    g = np.random.default_rng(case["seed"]).standard_normal(tuple(latent.shape)).astype(np.float32)
    got = torch.autograd.grad(latent, (mu, lv, lg), torch.from_numpy(g).to(DEV), allow_unused=True)
    wmu, wlv, wl = reference.sample_latent_vjp(case["mu"], case["logvar"], case["logits"], case["dims"], case["tau"],
                                               case["eps"], case["u"], g)
    if D:
        assert_close(got[0], wmu, 1e-7 * np.abs(g[:, :D]), "d mu")
        sig = np.abs(np.exp(case["logvar"].astype(np.float64) / 2) * case["eps"])
        assert_close(got[1], wlv, 1e-6 * np.abs(g[:, :D]) * sig + 1e-30, "d logvar")
    if case["dims"]:
        gmax = np.abs(g[:, D:]).max(axis=1, keepdims=True)
        assert_close(got[2], wl, y_atol(case["tau"]) * 4 * gmax / case["tau"], "d logits")


@settings(max_examples=20)
@given(latent_cases(), st.floats(0, 50), st.floats(0, 10))
def test_kl_capacity_loss_cuda_vs_reference(case, c_cont, c_disc):
    mu, lv, lg = _cuda(case)
    loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, case["dims"], c_cont, c_disc, 30.0, 20.0)
    wkc = reference.kl_normal(case["mu"], case["logvar"]) if case["D"] else np.zeros(0)
    wkd = reference.kl_categorical(case["logits"], case["dims"]) if case["dims"] else np.zeros(0)
    tc, td = 2e-6 * kl_cont_scale(case), 2e-6 * kl_disc_scale(case)
    assert_close(kc, wkc, tc, "kl_cont")
    assert_close(kd, wkd, td, "kl_disc")
    wl = 30 * abs(wkc.sum() - c_cont) + 20 * abs(wkd.sum() - c_disc)
    assert_close(loss, wl, 30 * tc.sum() + 20 * td.sum() + 1e-6 * wl, "loss")
    cpu = ops.kl_capacity_loss(*as_torch(case), case["dims"], c_cont, c_disc, 30.0, 20.0)
    for a, b, t in zip((loss, kc, kd), cpu, (30 * tc.sum() + 20 * td.sum() + 1e-6 * wl, tc, td)):
        assert_close(a, b.numpy(), 2 * t + 1e-30, "CUDA vs CPU")


def test_kl_large_batch_multi_block_reduction_is_deterministic():
    rng = np.random.default_rng(0)
    B, D, dims = 65536, 32, [10]
    case = dict(B=B, D=D, dims=dims, mu=rng.standard_normal((B, D)).astype(np.float32),
                logvar=rng.uniform(-3, 3, (B, D)).astype(np.float32),
                logits=rng.standard_normal((B, 10)).astype(np.float32))
    mu, lv, lg = _cuda(case)
    a = ops.kl_capacity_loss(mu, lv, lg, dims, 3.0, 1.0, 30.0, 30.0)
    b = ops.kl_capacity_loss(mu, lv, lg, dims, 3.0, 1.0, 30.0, 30.0)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert_close(a[1], reference.kl_normal(case["mu"], case["logvar"]), 2e-6 * kl_cont_scale(case), "kl_cont")
    assert_close(a[2], reference.kl_categorical(case["logits"], dims), 2e-6 * kl_disc_scale(case), "kl_disc")


@pytest.mark.parametrize("J", [768, 6144, 7000])
def test_kl_capacity_loss_cuda_any_latent_width(J):
    """D + V in {768, ..., 6144} once asked for more than 48 KiB of shared memory and D + V > 6144 was refused:
    every width the CPU accepts must run on CUDA, float32 and float64, forward and backward."""
    rng = np.random.default_rng(J)
    for dtype in (torch.float32, torch.float64):
        mu, lv = (torch.tensor(rng.standard_normal((3, J - 2)), dtype=dtype) for _ in range(2))
        lg = torch.tensor(rng.standard_normal((3, 5)), dtype=dtype)
        want = ops.kl_capacity_loss(mu, lv, lg, [2, 3], 1.0, 0.5, 2.0, 3.0)
        cuda_in = [t.to(DEV).requires_grad_() for t in (mu, lv, lg)]
        got = ops.kl_capacity_loss(*cuda_in, [2, 3], 1.0, 0.5, 2.0, 3.0)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.cpu(), w)
        grads = torch.autograd.grad(got[0], cuda_in)
        assert all(torch.isfinite(g).all() for g in grads)


def test_generator_mode_cuda_uses_the_documented_streams_and_advances():
    B, D, dims = 300, 7, [5, 3]
    rng = np.random.default_rng(1)
    mu = torch.from_numpy(rng.standard_normal((B, D)).astype(np.float32)).to(DEV)
    lv = torch.from_numpy(rng.uniform(-2, 2, (B, D)).astype(np.float32)).to(DEV)
    lg = torch.from_numpy(rng.standard_normal((B, 8)).astype(np.float32)).to(DEV)
    torch.cuda.manual_seed(99)
    states = []
    for _ in range(3):
        latent, _, st_ = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, 0.5, True, None, None, None)
        seed, offset = (int(v) & (2**64 - 1) for v in st_.cpu().tolist())
        states.append((seed, offset))
        eps, u = reference.sample_latent_noise(seed, offset, B, D, dims)
        want = reference.sample_latent(mu.cpu().numpy(), lv.cpu().numpy(), lg.cpu().numpy(), dims, 0.5, eps, u)
        e = np.exp(lv.cpu().numpy().astype(np.float64) / 2)
        assert_close(latent[:, :D], want[:, :D], 1e-6 * (np.abs(mu.cpu().numpy()) + e * (np.abs(eps) + 1)), "z")
        assert_close(latent[:, D:], want[:, D:], y_atol(0.5), "y")
    assert states[1][1] == states[0][1] + 4 and states[2][1] == states[1][1] + 4
    assert len({s for s, _ in states}) == 1
    torch.cuda.manual_seed(99)
    again = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, 0.5, True, None, None, None)[2]
    assert tuple(int(v) & (2**64 - 1) for v in again.cpu().tolist()) == states[0]


def test_cuda_graph_capture_replays_draw_fresh_noise():
    B, D, dims = 64, 10, [10]
    P = torch.randn(B, 2 * D + 10, device=DEV, requires_grad=True)
    static_out = {}

    def step():
        mu, lv, lg = P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]
        z = ops.sample_latent(mu, lv, lg, dims, 0.67)
        loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, dims, 1.0, 1.0, 30.0, 30.0)
        total = (z * z).sum() + loss
        (grad,) = torch.autograd.grad(total, P)
        return z, loss, grad

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out["z"], static_out["loss"], static_out["grad"] = step()
    zs, losses, grads = [], [], []
    for _ in range(3):
        g.replay()
        torch.cuda.synchronize()
        zs.append(static_out["z"].clone())
        losses.append(static_out["loss"].clone())
        grads.append(static_out["grad"].clone())
    assert not torch.equal(zs[0], zs[1]) and not torch.equal(zs[1], zs[2])
    assert torch.equal(losses[0], losses[1])  # the KL part is deterministic
    # each replay's latent is a valid sample: rows of the discrete block sum to 1
    torch.testing.assert_close(zs[2][:, D:].sum(1), torch.ones(B, device=DEV))
    eager = ops.kl_capacity_loss(P[:, :D], P[:, D : 2 * D], P[:, 2 * D :], dims, 1.0, 1.0, 30.0, 30.0)[0]
    torch.testing.assert_close(losses[0], eager)


def test_opcheck_and_gradcheck_on_cuda():
    from torch.library import opcheck

    g = torch.Generator(device=DEV).manual_seed(0)
    B, D, dims = 6, 3, [2, 4]
    mu = torch.randn(B, D, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    lv = torch.randn(B, D, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    lg = torch.randn(B, 6, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    eps = torch.randn(B, D, device=DEV, dtype=torch.float64, generator=g)
    u = torch.rand(B, 6, device=DEV, dtype=torch.float64, generator=g).clamp_(1e-6, 1 - 1e-6)
    opcheck(torch.ops.jointvae.sample_latent.default, (mu, lv, lg, dims, 0.7, True, eps, u, None))
    opcheck(torch.ops.jointvae.kl_capacity_loss.default, (mu, lv, lg, dims, 1.0, 0.5, 3.0, 2.0))
    opcheck(torch.ops.jointvae.philox_uniform_.default, (torch.empty(10, device=DEV), 3, 4))
    assert torch.autograd.gradcheck(lambda m, l, x: ops.sample_latent(m, l, x, dims, 0.7, noise=(eps, u)),
                                    (mu, lv, lg))
    assert torch.autograd.gradcheck(lambda m, l, x: ops.kl_capacity_loss(m, l, x, dims, 50.0, -5.0, 3.0, 2.0),
                                    (mu, lv, lg))


def test_gumbel_argmax_frequencies_cuda():
    from scipy import stats

    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, -3.0], device=DEV)
    n = 20000
    g = torch.Generator(device=DEV).manual_seed(2024)
    lat = ops.sample_latent(None, None, logits.expand(n, 6), [6], 0.5, generator=g)
    counts = np.bincount(lat.argmax(1).cpu().numpy(), minlength=6)
    p = torch.softmax(logits.double().cpu(), 0).numpy()
    assert stats.chisquare(counts, n * p).pvalue > 1e-3


def test_bad_inputs_cuda():
    mu = torch.zeros(4, 2, device=DEV)
    with pytest.raises(ValueError, match="device"):
        ops.sample_latent(mu, mu.cpu(), torch.zeros(4, 2, device=DEV), [2], 0.5)
    with pytest.raises(RuntimeError, match="device"):
        torch.ops.jointvae.sample_latent(mu, mu.cpu(), torch.zeros(4, 2, device=DEV), [2], 0.5, True, None, None,
                                         None)
    out = ops.sample_latent(mu.fill_(float("nan")), torch.zeros(4, 2, device=DEV), torch.zeros(4, 2, device=DEV),
                            [2], 0.5)
    assert torch.isnan(out[:, :2]).all() and not torch.isnan(out[:, 2:]).any()
