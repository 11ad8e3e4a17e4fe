"""The fused ops on CUDA: the same properties as on CPU, CUDA == CPU twin, CUDA graph capture.

Marked `cuda`: skipped where no GPU is visible (tests/conftest.py); run by benchmarks/gpu_check.sh.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from jointvae_fast import ops
from tests.ops_cases import (
    aggregate_bounds, assert_close, as_torch, gaussian_aggregate_bounds, gaussian_cases, kl_cont_scale,
    kl_disc_scale, latent_cases, y_atol, z_scale,
)
from tests.ops.test_tc_pairwise import NAMES, _reference, _run
from tests.tc_cases import EPS32, tc_cases, tc_pairwise_bounds

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ops.backend() != "cuda+cpu", reason=f"CUDA ops not built ({ops.backend_info()['reason']})"),
]
DEV = "cuda"


LAYOUTS = ("slices", "padded", "transposed")


def _padded(a, dtype):
    """a [B, n] as a view with row stride n + 3 inside a NaN-filled buffer built on the device."""
    buf = torch.full((a.shape[0], a.shape[1] + 3), float("nan"), dtype=dtype, device=DEV)
    buf[:, 1 : a.shape[1] + 1] = torch.tensor(a, dtype=dtype, device=DEV)
    return buf[:, 1 : a.shape[1] + 1]


def _cuda(case, dtype=torch.float32, layout="slices"):
    """(mu, logvar, logits) built on the device as the strided views the op meets (`.to(DEV)` of a CPU view
    would make them contiguous): column slices of one [B, 2D + K] encoder output, rows padded to a wider
    stride inside NaNs (a read outside the view shows), or column-major (column stride != 1: the op copies)."""
    arrs = [case[k] for k in ("mu", "logvar", "logits")]
    if layout == "slices":
        D = case["D"]
        P = torch.tensor(np.concatenate(arrs, axis=1), dtype=dtype, device=DEV)
        return P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]
    if layout == "padded":
        return tuple(_padded(a, dtype) for a in arrs)
    return tuple(torch.tensor(np.ascontiguousarray(a.T), dtype=dtype, device=DEV).t() for a in arrs)


def _state(st_):
    """rng_state int64 [2] -> (seed, offset) as uint64."""
    return tuple(int(v) & (2**64 - 1) for v in st_.cpu().tolist())


def test_strided_views_are_really_strided_on_the_device():
    case = dict(D=3, mu=np.ones((4, 3), np.float32), logvar=np.ones((4, 3), np.float32),
                logits=np.ones((4, 5), np.float32))
    for layout in LAYOUTS:
        ts = _cuda(case, layout=layout)
        assert all(t.is_cuda and not t.is_contiguous() for t in ts), layout
        assert all(torch.equal(t.cpu(), torch.ones(t.shape)) for t in ts), layout


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 5000))
def test_philox_uniform_cuda_bit_identical_to_reference_and_cpu(seed, offset, n):
    got = ops.philox_uniform(seed, offset, n, device=DEV).cpu().numpy()
    np.testing.assert_array_equal(got.view(np.uint32), reference.philox_uniform(seed, offset, n).view(np.uint32))
    np.testing.assert_array_equal(got.view(np.uint32), ops.philox_uniform(seed, offset, n).numpy().view(np.uint32))


@given(latent_cases(), st.sampled_from(LAYOUTS))
def test_sample_latent_cuda_vs_reference_and_cpu(case, layout):
    mu, lv, lg = _cuda(case, layout=layout)
    mu, lv, lg = (t.detach().requires_grad_() for t in (mu, lv, lg))  # leaves that keep the strides
    noise = (_padded(case["eps"], torch.float32), _padded(case["u"], torch.float32))
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
@given(latent_cases(), st.floats(0, 50), st.floats(0, 10), st.sampled_from(LAYOUTS))
def test_kl_capacity_loss_cuda_vs_reference(case, c_cont, c_disc, layout):
    mu, lv, lg = _cuda(case, layout=layout)
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
        seed, offset = _state(st_)
        states.append((seed, offset))
        eps, u = reference.sample_latent_noise(seed, offset, B, D, dims)
        want = reference.sample_latent(mu.cpu().numpy(), lv.cpu().numpy(), lg.cpu().numpy(), dims, 0.5, eps, u)
        e = np.exp(lv.cpu().numpy().astype(np.float64) / 2)
        assert_close(latent[:, :D], want[:, :D], 1e-6 * (np.abs(mu.cpu().numpy()) + e * (np.abs(eps) + 1)), "z")
        assert_close(latent[:, D:], want[:, D:], y_atol(0.5), "y")
    step = reference.OFFSET_PER_CALL
    assert states[1][1] == states[0][1] + step and states[2][1] == states[1][1] + step
    assert len({s for s, _ in states}) == 1
    torch.cuda.manual_seed(99)
    again = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, 0.5, True, None, None, None)[2]
    assert _state(again) == states[0]


def _check_sample(latent, mu, lv, lg, dims, tau, seed, offset):
    """latent equals the reference driven by the documented noise of (seed, offset)."""
    mu, lv, lg = (t.detach().cpu().numpy() for t in (mu, lv, lg))
    eps, u = reference.sample_latent_noise(seed, offset, mu.shape[0], mu.shape[1], dims)
    want = reference.sample_latent(mu, lv, lg, dims, tau, eps, u)
    e = np.exp(lv.astype(np.float64) / 2)
    D = mu.shape[1]
    assert_close(latent[:, :D], want[:, :D], 1e-6 * (np.abs(mu) + e * (np.abs(eps) + 1)), f"z at offset {offset}")
    assert_close(latent[:, D:], want[:, D:], y_atol(tau), f"y at offset {offset}")


def test_cuda_graph_replay_k_draws_at_offset0_plus_reservation_times_k():
    """Two sample_latent calls in one captured step: replay k reads offsets o0 + 16k and o0 + 16k + 8 from the
    generator (o0 its offset before the first replay), each replay's sample is the documented one of its
    (seed, offset), and the KL part replays unchanged."""
    B, D, dims, tau = 64, 10, [10], 0.67
    torch.cuda.manual_seed(7)
    P = torch.randn(B, 2 * D + 10, device=DEV, requires_grad=True)
    step_words = 2 * reference.OFFSET_PER_CALL

    def step():
        mu, lv, lg = P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]
        z1, _, st1 = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, tau, True, None, None, None)
        z2, _, st2 = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, tau, True, None, None, None)
        loss, kc, kd = ops.kl_capacity_loss(mu, lv, lg, dims, 1.0, 1.0, 30.0, 30.0)
        (grad,) = torch.autograd.grad((z1 * z1).sum() + (z2 * z2).sum() + loss, P)
        return z1, z2, st1, st2, loss, grad

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = step()
    gen = torch.cuda.default_generators[torch.cuda.current_device()]
    seed, o0 = gen.initial_seed(), gen.get_offset()
    losses = []
    for k in range(3):
        g.replay()
        torch.cuda.synchronize()
        z1, z2, st1, st2, loss, grad = (t.clone() for t in out)
        assert _state(st1) == (seed, o0 + step_words * k), (k, _state(st1))
        assert _state(st2) == (seed, o0 + step_words * k + reference.OFFSET_PER_CALL), (k, _state(st2))
        mu, lv, lg = P[:, :D], P[:, D : 2 * D], P[:, 2 * D :]
        _check_sample(z1, mu, lv, lg, dims, tau, *_state(st1))
        _check_sample(z2, mu, lv, lg, dims, tau, *_state(st2))
        losses.append(loss)
    assert gen.get_offset() == o0 + 3 * step_words
    assert torch.equal(losses[0], losses[2])  # the KL part is deterministic
    eager = ops.kl_capacity_loss(P[:, :D], P[:, D : 2 * D], P[:, 2 * D :], dims, 1.0, 1.0, 30.0, 30.0)[0]
    torch.testing.assert_close(losses[0], eager)


def test_counter_layout_is_pytorchs_own():
    """PyTorch's CUDA generator (curand_init(seed, subsequence = thread i, offset)): torch.rand(n) for n <= 256
    puts curand_uniform of word 0 of subsequence i at the generator's offset o into element i, which is word
    4i of our stream S(seed, o). (Assumes torch's uniform kernel layout: one thread per element, 4 words per
    thread; a failure here names which of the two changed.)"""
    g = torch.Generator(device=DEV).manual_seed(2**40 + 17)
    torch.rand(1000, device=DEV, generator=g)  # move the offset off 0
    seed, o = g.initial_seed(), g.get_offset()
    assert o > 0 and o % 4 == 0
    got = torch.rand(64, device=DEV, generator=g).cpu().numpy().astype(np.float64)
    words = reference.philox_words(seed, o, 4 * 64)[0::4].astype(np.float64)
    np.testing.assert_allclose(got, words * 2.0**-32, rtol=0, atol=2.0**-23)


def test_each_call_reserves_offset_per_call_and_never_overlaps_other_draws():
    """The op reads the generator's offset o and advances it by OFFSET_PER_CALL (its blocks o/4, o/4 + 1);
    torch's own ops drawn in between get disjoint offsets; eval mode and explicit noise reserve nothing."""
    mu, lv, lg = (torch.zeros(32, 4, device=DEV) for _ in range(3))
    g = torch.Generator(device=DEV).manual_seed(3)
    o0 = g.get_offset()
    _, _, st1 = torch.ops.jointvae.sample_latent(mu, lv, lg, [4], 1.0, True, None, None, g)
    assert _state(st1)[1] == o0 and g.get_offset() == o0 + reference.OFFSET_PER_CALL
    torch.rand(10, device=DEV, generator=g)  # torch reserves [o0 + 8, o0 + 12)
    o_torch_end = g.get_offset()
    _, _, st2 = torch.ops.jointvae.sample_latent(mu, lv, lg, [4], 1.0, True, None, None, g)
    assert _state(st2)[1] == o_torch_end > o0 + reference.OFFSET_PER_CALL
    torch.ops.jointvae.sample_latent(mu, lv, lg, [4], 1.0, False, None, None, g)
    torch.ops.jointvae.sample_latent(mu, lv, lg, [4], 1.0, True, mu, lg, g)
    assert g.get_offset() == o_torch_end + reference.OFFSET_PER_CALL


def _cuda_kernels(fn):
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def test_each_op_is_one_kernel_launch_no_per_call_zero_fill():
    """Eager, after a warm-up: sample_latent (the kernel writes rng_state itself) and kl_capacity_loss (its
    counter is persistent per stream and reset by the kernel) launch exactly one kernel each, no fill/memset."""
    mu, lv, lg = (torch.randn(64, 10, device=DEV) for _ in range(3))
    for _ in range(2):
        torch.ops.jointvae.sample_latent(mu, lv, lg, [10], 0.5, True, None, None, None)
        torch.ops.jointvae.sample_latent(mu, lv, lg, [10], 0.5, False, None, None, None)
        ops.kl_capacity_loss(mu, lv, lg, [10], 1.0, 1.0, 3.0, 3.0)
    for training in (True, False):
        names = _cuda_kernels(lambda: torch.ops.jointvae.sample_latent(mu, lv, lg, [10], 0.5, training, None,
                                                                         None, None))
        assert len(names) == 1 and "sample_latent_kernel" in names[0], names
    _, _, st_ = torch.ops.jointvae.sample_latent(mu, lv, lg, [10], 0.5, False, None, None, None)
    assert _state(st_) == (0, 0)  # written by the kernel, not by a fill
    names = _cuda_kernels(lambda: ops.kl_capacity_loss(mu, lv, lg, [10], 1.0, 1.0, 3.0, 3.0))
    assert len(names) == 1 and "kl_forward_kernel" in names[0], names
    # the persistent counter is back at zero after every launch: repeated results stay identical
    a = [ops.kl_capacity_loss(mu, lv, lg, [10], 1.0, 1.0, 3.0, 3.0)[0] for _ in range(3)]
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])


def test_kl_counter_is_per_stream():
    """Two streams running kl_capacity_loss concurrently on a multi-block batch each get the right answer."""
    B, D = 4096, 16
    mu, lv, lg = torch.randn(B, D, device=DEV), torch.randn(B, D, device=DEV), torch.randn(B, 6, device=DEV)
    want = ops.kl_capacity_loss(mu, lv, lg, [3, 3], 1.0, 1.0, 3.0, 3.0)
    streams = [torch.cuda.Stream() for _ in range(2)]
    results = [[] for _ in streams]
    for s in streams:
        s.wait_stream(torch.cuda.current_stream())
    for _ in range(20):
        for s, res in zip(streams, results):
            with torch.cuda.stream(s):
                res.append(ops.kl_capacity_loss(mu, lv, lg, [3, 3], 1.0, 1.0, 3.0, 3.0))
    torch.cuda.synchronize()
    for res in results:
        for got in res:
            for x, y in zip(got, want):
                assert torch.equal(x, y)


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


# --- aggregate_kl (the information variant's batch reduction over classes) --------------------------------------

TINY32 = float(np.finfo(np.float32).tiny)


@settings(max_examples=20)
@given(latent_cases(max_d=0), st.sampled_from(LAYOUTS))
def test_aggregate_kl_cuda_vs_reference_and_cpu(case, layout):
    dims = case["dims"]
    if not dims:
        return
    lg = _cuda(case, layout=layout)[2]
    lg64 = case["logits"].astype(np.float64)
    w = np.random.default_rng(case["seed"]).standard_normal(len(dims)).astype(np.float32)
    agg, qbar = ops.aggregate_kl(lg, dims)
    dl = torch.ops.jointvae.aggregate_kl_backward(torch.tensor(w, device=DEV), lg, qbar, dims)
    tq, ta, td = aggregate_bounds(lg64, dims, w)
    assert_close(qbar, reference.aggregate_posterior(lg64, dims), tq + TINY32, "qbar")
    assert_close(agg, reference.kl_aggregate(lg64, dims), ta + TINY32, "agg_kl")
    assert_close(dl, reference.kl_aggregate_vjp(lg64, dims, w.astype(np.float64))[0], td + TINY32, "d logits")
    cpu_agg, _ = ops.aggregate_kl(torch.from_numpy(case["logits"]), dims)
    assert_close(agg, cpu_agg.numpy(), 2 * ta + TINY32, "CUDA vs CPU")


def test_aggregate_kl_large_batch_is_deterministic():
    g = torch.Generator(device=DEV).manual_seed(0)
    lg = torch.randn(65536, 13, device=DEV, generator=g) * 3
    a, b = ops.aggregate_kl(lg, [10, 3]), ops.aggregate_kl(lg, [10, 3])
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    lg64 = lg.double().cpu().numpy()
    tq, ta, _ = aggregate_bounds(lg64, [10, 3], np.ones(2))
    assert_close(a[1], reference.aggregate_posterior(lg64, [10, 3]), tq + TINY32, "qbar")
    assert_close(a[0], reference.kl_aggregate(lg64, [10, 3]), ta + TINY32, "agg_kl")


def test_aggregate_kl_opcheck_and_gradcheck_on_cuda():
    from torch.library import opcheck

    g = torch.Generator(device=DEV).manual_seed(1)
    lg = torch.randn(6, 6, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    opcheck(torch.ops.jointvae.aggregate_kl.default, (lg, [2, 4]))
    assert torch.autograd.gradcheck(lambda x: ops.aggregate_kl(x, [2, 4])[0], (lg,))


def _objective_captured_and_eager(obj, seed):
    """Replay of `obj` captured with device-scalar capacities (set to 0.5, 0.3 after capture) and the eager call
    at those capacities, on the same inputs: (captured terms, eager terms, (x_logits, mu, logvar, logits))."""
    g = torch.Generator(device=DEV).manual_seed(seed)
    B = 64
    x = torch.rand(B, 1, 8, 8, device=DEV, generator=g)
    params = tuple(torch.randn(*shape, device=DEV, generator=g).requires_grad_()
                   for shape in ((B, 1, 8, 8), (B, 4), (B, 4), (B, 10)))
    out = SimpleNamespace(**dict(zip(("x_logits", "mu", "logvar", "logits"), params)))
    c_cont, c_disc = torch.zeros((), device=DEV), torch.zeros((), device=DEV)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream
        for _ in range(2):
            obj.at_capacities(x, out, c_cont, c_disc).total.backward()
    torch.cuda.current_stream().wait_stream(side)
    for p in params:
        p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        terms = obj.at_capacities(x, out, c_cont, c_disc)
        terms.total.backward()
    c_cont.fill_(0.5)
    c_disc.fill_(0.3)
    graph.replay()
    torch.cuda.synchronize()
    return terms, obj.at_capacities(x, out, 0.5, 0.3), params


def test_information_objective_in_a_cuda_graph_matches_eager():
    """Objective(disc_capacity_on="information") with device-scalar capacities, captured and replayed, equals
    the eager call with float capacities (loss, diagnostics, gradient)."""
    from jointvae_fast.objective import Capacity, Objective

    obj = Objective((10,), Capacity(0.0, 5.0, 1000, 30.0), Capacity(0.0, 2.0, 1000, 30.0), 1.0, "information")
    terms, want, (_, _, _, lg) = _objective_captured_and_eager(obj, seed=2)
    (want_grad,) = torch.autograd.grad(want.total, lg)
    torch.testing.assert_close(terms.total, want.total.detach(), rtol=1e-5, atol=1e-6)
    for name in ("info_disc", "agg_kl_disc", "class_counts"):
        torch.testing.assert_close(getattr(terms, name), getattr(want, name), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lg.grad, want_grad, rtol=1e-4, atol=1e-7)


# --- gaussian_aggregate_kl (the continuous information variant's batch moments per unit) ---------------------------

@settings(max_examples=20)
@given(gaussian_cases(), st.sampled_from(LAYOUTS), st.sampled_from([torch.float32, torch.float64]))
def test_gaussian_aggregate_kl_cuda_vs_reference_and_cpu(case, layout, dtype):
    mu, lv, _ = _cuda(case, dtype=dtype, layout=layout)
    mu64, lv64 = case["mu"].astype(np.float64), case["logvar"].astype(np.float64)
    rel, tiny = (2e-6, TINY32) if dtype == torch.float32 else (2e-14, 1e-300)
    w = np.random.default_rng(case["seed"]).standard_normal(case["D"])
    m, l = mu.detach().requires_grad_(), lv.detach().requires_grad_()
    agg = ops.gaussian_aggregate_kl(m, l)
    dmu, dlv = torch.autograd.grad((agg * torch.tensor(w, dtype=dtype, device=DEV)).sum(), (m, l), allow_unused=True)
    if case["D"] == 0:
        return
    _, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu, lv)
    err_m, err_s2, ta, tdm, tdl = gaussian_aggregate_bounds(mu64, lv64, w, rel)
    want_m, want_s2 = reference.gaussian_aggregate_moments(mu64, lv64)
    assert_close(moments[0], want_m, err_m + tiny, "m")
    assert_close(moments[1], want_s2, err_s2 + tiny, "s2")
    assert_close(agg, reference.kl_gaussian_aggregate(mu64, lv64), ta + tiny, "A")
    want_mu, want_lv = reference.kl_gaussian_aggregate_vjp(mu64, lv64, w)
    assert_close(dmu, want_mu, tdm + tiny, "d mu")
    assert_close(dlv, want_lv, tdl + tiny, "d logvar")
    cpu = ops.gaussian_aggregate_kl(torch.tensor(case["mu"], dtype=dtype), torch.tensor(case["logvar"], dtype=dtype))
    assert_close(agg, cpu.numpy(), 2 * ta + tiny, "CUDA vs CPU")


def test_gaussian_aggregate_kl_large_batch_is_deterministic():
    """65536 rows: many row blocks and the last-block reduction; bit-identical on repeat, equal to the reference."""
    g = torch.Generator(device=DEV).manual_seed(0)
    mu = torch.randn(65536, 10, device=DEV, generator=g) * 3 + 100
    lv = torch.rand(65536, 10, device=DEV, generator=g) * 10 - 5
    a, b = torch.ops.jointvae.gaussian_aggregate_kl(mu, lv), torch.ops.jointvae.gaussian_aggregate_kl(mu, lv)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    mu64, lv64 = mu.double().cpu().numpy(), lv.double().cpu().numpy()
    err_m, err_s2, ta, _, _ = gaussian_aggregate_bounds(mu64, lv64, np.ones(10))
    want_m, want_s2 = reference.gaussian_aggregate_moments(mu64, lv64)
    assert_close(a[1][0], want_m, err_m, "m")
    assert_close(a[1][1], want_s2, err_s2, "s2")
    assert_close(a[0], reference.kl_gaussian_aggregate(mu64, lv64), ta + TINY32, "A")


def test_gaussian_aggregate_kl_floor_matches_the_composite_on_cuda():
    """logvar < -87 with one mu per unit (s2 floored at finfo(float32).tiny): the CUDA kernels, the CPU twin and
    the composite agree, finite."""
    mu = torch.tensor([[2.0, -1.0, 0.5]], device=DEV).expand(5, 3)
    lv = torch.tensor([[-90.0, -120.0, 0.0]], device=DEV).expand(5, 3)
    outs = []
    for fn, dev in ((ops.gaussian_aggregate_kl, DEV), (ops.gaussian_aggregate_kl, "cpu"),
                    (ops.composite_gaussian_aggregate_kl, DEV)):
        m, l = mu.to(dev).requires_grad_(), lv.to(dev).requires_grad_()
        a = fn(m, l)
        outs.append([t.detach().cpu() for t in (a, *torch.autograd.grad(a.sum(), (m, l)))])
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            assert torch.isfinite(x).all()
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_gaussian_aggregate_kl_opcheck_and_gradcheck_on_cuda():
    from torch.library import opcheck

    g = torch.Generator(device=DEV).manual_seed(1)
    mu = torch.randn(6, 4, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    lv = torch.randn(6, 4, device=DEV, dtype=torch.float64, generator=g, requires_grad=True)
    opcheck(torch.ops.jointvae.gaussian_aggregate_kl.default, (mu, lv))
    agg, moments = torch.ops.jointvae.gaussian_aggregate_kl(mu.detach(), lv.detach())
    opcheck(torch.ops.jointvae.gaussian_aggregate_kl_backward.default,
            (torch.randn_like(agg), mu.detach(), lv.detach(), moments))
    assert torch.autograd.gradcheck(ops.gaussian_aggregate_kl, (mu, lv))


def test_continuous_information_objective_in_a_cuda_graph_matches_eager():
    """Objective(cont_capacity_on="information") (gaussian_aggregate_kl forward and backward, its completion
    counter from the graph's pool) captured and replayed equals the eager call (loss, diagnostics, gradients)."""
    from jointvae_fast.objective import Capacity, Objective

    obj = Objective((10,), Capacity(0.0, 5.0, 1000, 30.0), Capacity(0.0, 2.0, 1000, 30.0), 1.0, "information",
                    None, "information")
    terms, want, (_, mu, lv, _) = _objective_captured_and_eager(obj, seed=3)
    want_mu, want_lv = torch.autograd.grad(want.total, (mu, lv))
    torch.testing.assert_close(terms.total, want.total.detach(), rtol=1e-5, atol=1e-6)
    for name in ("info_cont", "agg_kl_cont"):
        torch.testing.assert_close(getattr(terms, name), getattr(want, name), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mu.grad, want_mu, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(lv.grad, want_lv, rtol=1e-4, atol=1e-7)


@settings(max_examples=20)
@given(tc_cases())
def test_tc_pairwise_cuda_within_bounds_and_like_the_cpu_twin(case):
    """The fused tc_pairwise on CUDA: float32 values and gradients within tests/tc_cases.py's bounds of the
    reference, and close to the CPU twin; a captured CUDA graph replays it."""
    def on(dev):
        def fn(*args):
            *t, dims, w = args
            return ops.tc_pairwise(*[x.to(dev) for x in t], dims, w.to(dev))
        return fn

    got = [t.cpu() for t in _run(on(DEV), case, torch.float32)]
    cpu = _run(ops.tc_pairwise, case, torch.float32)
    for g, c, want, tol, name in zip(got, cpu, _reference(case), tc_pairwise_bounds(case, EPS32), NAMES):
        assert_close(g, want, tol + 1e-30, name)
        assert_close(g, c.detach().numpy().astype(np.float64), 2 * tol + 1e-30, name + " vs CPU")


def test_tc_pairwise_cuda_graph_and_opcheck():
    from torch.library import opcheck

    g = torch.Generator(device=DEV).manual_seed(0)
    B, D, dims = 33, 4, [3, 2]
    z, mu, lv = (torch.randn(B, D, device=DEV, generator=g) for _ in range(3))
    lg = torch.randn(B, 5, device=DEV, generator=g)
    y = torch.softmax(torch.randn(B, 5, device=DEV, generator=g), 1)
    w = torch.full((B, B), -6.0, device=DEV)
    opcheck(torch.ops.jointvae.tc_pairwise.default, (z, mu, lv, y, lg, dims, w))
    want = torch.ops.jointvae.tc_pairwise(z, mu, lv, y, lg, dims, w)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        out = torch.ops.jointvae.tc_pairwise(z, mu, lv, y, lg, dims, w)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(out, want):
        torch.testing.assert_close(a, b)
