"""kernels/cuda executed on the CPU by the emulation of kernels/emulation, against the NumPy reference.

The exact .cu sources, compiled by the host compiler: every CUDA thread a std::thread, __syncthreads a real
barrier, blocks in a seeded random order several at a time, the hardware's launch limits enforced
(docs/emulation.md). NumPy in, NumPy out: no torch in between. Shapes, values and tolerance bounds are
those of the CPU-twin tests (tests/ops_cases.py). Outputs start as NaN, so an entry no thread wrote fails.
Threads are expensive here: launch shapes are lowered (JV_LAUNCH_PARAM) wherever a case allows it.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from tests.emulated_cuda import load
from tests.ops_cases import (
    aggregate_bounds, assert_close, gaussian_aggregate_bounds, gaussian_cases, kl_cont_scale, kl_disc_scale,
    latent_cases, y_atol, z_scale,
)

pytestmark = pytest.mark.emulated_cuda

U64 = st.integers(0, 2**64 - 1)
# launch shapes: the .cu's own, or lowered so that small sizes span many blocks and the grid-stride loops turn
SHAPES = st.sampled_from([
    {},
    {"kThreads": 32, "kMaxBlocks": 3, "kRowsPerBlock": 8, "kRowsY": 2, "kColsPerTile": 32, "kMaxTilesY": 2},
    {"kThreads": 64, "kMaxBlocks": 1, "kRowsPerBlock": 3, "kRowsY": 1, "kColsPerTile": 4, "kMaxTilesY": 3},
])


@pytest.fixture(scope="module")
def emu():
    return load()


@pytest.fixture(autouse=True)
def default_launch(emu):
    emu.reset_launch_params()
    emu.set_options(seed=0, concurrent_blocks=3)
    yield
    emu.reset_launch_params()


def _shape(emu, params):
    emu.reset_launch_params()
    for name, value in params.items():
        emu.set_launch_param(name, value)


def _inputs(case, dtype, strided):
    """(mu, logvar, logits, eps, u) in dtype; strided: column slices of one [B, 3D + 2K] array."""
    parts = [case[k].astype(dtype) for k in ("mu", "logvar", "logits", "eps", "u")]
    if not strided:
        return parts
    packed = np.concatenate(parts, axis=1)
    edges = np.cumsum([0] + [p.shape[1] for p in parts])
    return [packed[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


@given(U64, U64, st.integers(0, 3000), SHAPES)
def test_philox_uniform_bit_identical_to_reference(emu, seed, offset, n, shape):
    _shape(emu, shape)
    got = emu.philox_uniform(seed, offset, n)
    want = reference.philox_uniform(seed, offset, n)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@given(latent_cases(), st.sampled_from([np.float32, np.float64]), st.booleans(), SHAPES)
def test_sample_latent_forward_backward_vs_reference(emu, case, dtype, strided, shape):
    _shape(emu, shape)
    mu, lv, lg, eps, u = _inputs(case, dtype, strided)
    dims, tau, D = case["dims"], case["tau"], case["D"]
    latent, sigma_eps, _ = emu.sample_latent(mu, lv, lg, dims, tau, eps=eps, u=u)
    assert latent.dtype == dtype
    want = reference.sample_latent(mu, lv, lg, dims, tau, eps, u)
    rel = 1.0 if dtype == np.float32 else 1e-8
    assert_close(latent[:, :D], want[:, :D], rel * 1e-6 * z_scale(case) + 1e-30, "z")
    assert_close(latent[:, D:], want[:, D:], rel * y_atol(tau), "y")
    g = np.random.default_rng(case["seed"] + 1).standard_normal(latent.shape).astype(dtype)
    g_view = np.concatenate([g, g], axis=1)[:, : g.shape[1]] if strided else g
    dmu, dlv, dl = emu.sample_latent_backward(g_view, latent, sigma_eps, dims, tau)
    wmu, wlv, wl = reference.sample_latent_vjp(mu, lv, lg, dims, tau, eps, u, g)
    if D:
        sig = np.abs(np.exp(lv.astype(np.float64) / 2) * eps)
        assert_close(dmu, wmu, rel * 1e-7 * np.abs(g[:, :D]), "d mu")
        assert_close(dlv, wlv, rel * 1e-6 * np.abs(g[:, :D]) * sig + 1e-30, "d logvar")
    if dims:
        gmax = np.abs(g[:, D:]).max(axis=1, keepdims=True)
        assert_close(dl, wl, rel * y_atol(tau) * 4 * gmax / tau + 1e-300, "d logits")


@given(st.integers(1, 40), st.integers(0, 12), st.lists(st.integers(2, 12), max_size=3), U64, U64,
       st.sampled_from([None, 0, 4, 2**40]), SHAPES)
def test_sample_latent_draws_the_documented_streams(emu, B, D, dims, seed, offset, intragraph, shape):
    """Drawn noise = reference.sample_latent_noise of the (seed, offset) used; the captured-graph form adds
    its intra-graph offset; the (seed, offset) used is written back."""
    _shape(emu, shape)
    rng = np.random.default_rng(seed % 2**32)
    K = sum(dims)
    mu = rng.standard_normal((B, D)).astype(np.float32)
    lv = rng.uniform(-2, 2, (B, D)).astype(np.float32)
    lg = rng.standard_normal((B, K)).astype(np.float32)
    latent, _, state = emu.sample_latent(mu, lv, lg, dims, 0.5, seed=seed, offset=offset, intragraph=intragraph)
    used = (offset + (intragraph or 0)) % 2**64
    assert [int(v) % 2**64 for v in state] == [seed, used]
    eps, u = reference.sample_latent_noise(seed, used, B, D, dims)
    want = reference.sample_latent(mu, lv, lg, dims, 0.5, eps, u)
    sigma = np.exp(lv.astype(np.float64) / 2)
    # eps from float32 Box-Muller: |err| <= 1e-6 (|eps| + 1), carried through sigma (as in test_ops_random)
    assert_close(latent[:, :D], want[:, :D], 1e-6 * (np.abs(mu) + sigma * np.abs(eps) + sigma), "z")
    assert_close(latent[:, D:], want[:, D:], y_atol(0.5), "y")


@settings(max_examples=10)
@given(latent_cases(), SHAPES)
def test_sample_latent_eval_mode_exact(emu, case, shape):
    _shape(emu, shape)
    mu, lv, lg, _, _ = _inputs(case, np.float32, True)
    latent, sigma_eps, _ = emu.sample_latent(mu, lv, lg, case["dims"], case["tau"], training=False)
    want = reference.sample_latent(mu, lv, lg, case["dims"], case["tau"], None, None, training=False)
    np.testing.assert_array_equal(latent, want.astype(np.float32))
    g = np.ones_like(latent)
    dmu, dlv, dl = emu.sample_latent_backward(g, latent, sigma_eps, case["dims"], case["tau"], training=False)
    assert (dmu == 1).all() and (dlv == 0).all() and (dl == 0).all()


def _ref_kl(mu, lv, lg, dims, c_cont, c_disc, g_cont, g_disc):
    kc = reference.kl_normal(mu, lv) if mu.shape[1] else np.zeros(0)
    kd = reference.kl_categorical(lg, dims) if dims else np.zeros(0)
    return g_cont * abs(kc.sum() - c_cont) + g_disc * abs(kd.sum() - c_disc), kc, kd


def _check_kl(emu, case, mu, lv, lg, consts, rel):
    """Forward vs reference (bounds of tests/ops_cases.py); returns the outputs."""
    loss, kc, kd, counter = emu.kl_forward(mu, lv, lg, case["dims"], *consts)
    assert counter == 0, "the last block resets the completion counter"
    wl, wkc, wkd = _ref_kl(mu, lv, lg, case["dims"], *consts)
    tol_c, tol_d = rel * 2e-6 * kl_cont_scale(case), rel * 2e-6 * kl_disc_scale(case)
    assert_close(kc, wkc, tol_c, "kl_cont")
    assert_close(kd, wkd, tol_d, "kl_disc")
    # + the output's own rounding where it is subnormal (gamma may be as small as 1e-45)
    tol_loss = consts[2] * tol_c.sum() + consts[3] * tol_d.sum() + rel * 1e-6 * abs(wl)
    assert_close(loss, wl, tol_loss + np.finfo(loss.dtype).smallest_subnormal, "loss")
    return (loss, kc, kd), (wkc, wkd, tol_c, tol_d)


@given(latent_cases(), st.floats(0, 50), st.floats(0, 10), st.floats(0, 100), st.floats(0, 100),
       st.sampled_from([np.float32, np.float64]), st.booleans(), SHAPES)
def test_kl_capacity_loss_forward_backward_vs_reference(emu, case, c_cont, c_disc, g_cont, g_disc, dtype, strided,
                                                        shape):
    _shape(emu, shape)
    mu, lv, lg, _, _ = _inputs(case, dtype, strided)
    consts = (c_cont, c_disc, g_cont, g_disc)
    rel = 1.0 if dtype == np.float32 else 1e-6
    (_, kc, kd), (wkc, wkd, tol_c, tol_d) = _check_kl(emu, case, mu, lv, lg, consts, rel)
    # backward of loss + <a, kl_cont> + <b, kl_disc>; near |sum kl - c| = 0 the sign is not determined
    if abs(wkc.sum() - c_cont) <= 2 * tol_c.sum() + 1e-6 or abs(wkd.sum() - c_disc) <= 2 * tol_d.sum() + 1e-6:
        return
    rng = np.random.default_rng(case["seed"] + 2)
    a = rng.standard_normal(case["D"]).astype(dtype)
    b = rng.standard_normal(len(case["dims"])).astype(dtype)
    dmu, dlv, dl = emu.kl_backward(mu, lv, lg, case["dims"], *consts, kc, kd, 1.0, a, b)
    wc, wd = g_cont * np.sign(wkc.sum() - c_cont) + a, g_disc * np.sign(wkd.sum() - c_disc) + b
    B, mag_c, mag_d = case["B"], g_cont + np.abs(a), g_disc + np.abs(b)
    if case["D"]:
        wmu, wlv = reference.kl_normal_vjp(mu, lv, wc)
        assert_close(dmu, wmu, rel * 1e-6 * mag_c / B * np.abs(mu.astype(np.float64)) + 1e-300, "d mu")
        assert_close(dlv, wlv, rel * 1e-6 * mag_c / B * (1 + np.exp(lv.astype(np.float64))), "d logvar")
    if case["dims"]:
        (wlg,) = reference.kl_categorical_vjp(lg, case["dims"], wd)
        per_col = np.concatenate([np.full(k, w) * s for k, w, s in zip(case["dims"], mag_d, kl_disc_scale(case))])
        assert_close(dl, wlg, rel * 1e-5 * per_col / B + 1e-300, "d logits")


def _kl_case(B, D, dims, seed=0):
    rng = np.random.default_rng(seed)
    return dict(B=B, D=D, dims=dims, mu=rng.standard_normal((B, D)).astype(np.float32),
                logvar=rng.uniform(-3, 3, (B, D)).astype(np.float32),
                logits=rng.standard_normal((B, sum(dims))).astype(np.float32))


@pytest.mark.parametrize("B, D, dims", [(1, 3, [2]), (1, 0, [3, 4]), (5, 0, [2]), (5, 4, []), (1, 1, [])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_shapes(emu, B, D, dims, dtype):
    case = _kl_case(B, D, dims)
    mu, lv, lg = (case[k].astype(dtype) for k in ("mu", "logvar", "logits"))
    eps, u = reference.sample_latent_noise(1, 0, B, D, dims)
    latent, se, _ = emu.sample_latent(mu, lv, lg, dims, 0.7, eps=eps.astype(dtype), u=u.astype(dtype))
    want = reference.sample_latent(mu, lv, lg, dims, 0.7, eps.astype(dtype), u)
    assert_close(latent, want, 1e-5 * (1 + np.abs(want)), "latent")
    _check_kl(emu, case, mu, lv, lg, (1.0, 0.5, 2.0, 3.0), 1.0)


@pytest.mark.parametrize("rows_per_block, tile, rows_y", [(256, 256, 8), (16, 256, 8), (16, 8, 2), (3, 3, 1)])
def test_kl_reduction_is_independent_of_block_order_and_concurrency(emu, rows_per_block, tile, rows_y):
    """Row blocks x column tiles: the last block reduces in a fixed order, so results are bit-identical
    whichever block finishes last; the same holds for the backward's grid-stride blocks."""
    emu.set_launch_param("kRowsPerBlock", rows_per_block)
    emu.set_launch_param("kColsPerTile", tile)
    emu.set_launch_param("kRowsY", rows_y)
    case = _kl_case(40, 9, [3, 5], seed=4)
    args = (case["mu"], case["logvar"], case["logits"], case["dims"], 2.0, 0.5, 10.0, 20.0)
    runs = []
    for seed, concurrent in [(0, 1), (1, 3), (2, 8), (3, 2)]:
        emu.set_options(seed=seed, concurrent_blocks=concurrent)
        runs.append(emu.kl_forward(*args))
        grid = emu.last_launch()["grid"]
        assert grid[0] == -(-40 // rows_per_block) and grid[1] == -(-11 // tile)
    for r in runs[1:]:
        for x, y in zip(r, runs[0]):
            np.testing.assert_array_equal(x, y)
    _check_kl(emu, case, *args[:3], args[4:], 1.0)


def test_grid_stride_loops_cover_every_item(emu):
    """More items than threads in the (lowered) grid: each kernel's loop must visit every item once."""
    _shape(emu, {"kThreads": 32, "kMaxBlocks": 2})
    case = _kl_case(37, 5, [3, 4], seed=5)
    B, D, dims = 37, 5, [3, 4]
    eps, u = reference.sample_latent_noise(9, 4, B, D, dims)
    latent, se, _ = emu.sample_latent(case["mu"], case["logvar"], case["logits"], dims, 0.5, seed=9, offset=4)
    rec = emu.last_launch()
    assert rec["grid"][0] * rec["block"][0] == 64 < B * (D + len(dims))
    want = reference.sample_latent(case["mu"], case["logvar"], case["logits"], dims, 0.5, eps, u)
    assert_close(latent, want, 1e-5 * (1 + np.abs(want)), "latent")
    g = np.ones_like(latent)
    for out in emu.sample_latent_backward(g, latent, se, dims, 0.5):
        assert np.isfinite(out).all()
    _, kc, kd, _ = emu.kl_forward(case["mu"], case["logvar"], case["logits"], dims, 1.0, 1.0, 1.0, 1.0)
    for out in emu.kl_backward(case["mu"], case["logvar"], case["logits"], dims, 1.0, 1.0, 1.0, 1.0, kc, kd, 1.0):
        assert np.isfinite(out).all()
    u = emu.philox_uniform(3, 0, 1000)
    np.testing.assert_array_equal(u, reference.philox_uniform(3, 0, 1000))


@pytest.mark.parametrize("J", [768, 1024, 1536, 2048, 3072, 6144, 6145, 20000])
def test_kl_of_wide_latents_fits_the_shared_memory_limit(emu, J):
    """D + V in {768, ..., 6144} once asked for exactly 48 KiB of dynamic shared memory on top of a static
    one (kl_forward), and 6144 float64 weights plus two scalars (kl_backward): the GPU refuses such a launch.
    Any D + V a CPU model accepts must launch."""
    for dtype in (np.float32, np.float64):
        case = _kl_case(3, J - 2, [2, 3], seed=J)
        mu, lv, lg = (case[k].astype(dtype) for k in ("mu", "logvar", "logits"))
        (_, kc, kd), _ = _check_kl(emu, case, mu, lv, lg, (1.0, 0.5, 1.0, 1.0), 1.0 if dtype == np.float32 else 1e-6)
        assert emu.last_launch()["dynamic_shared"] + emu.last_launch()["static_shared"] <= 48 * 1024
        dmu, dlv, dl = emu.kl_backward(mu, lv, lg, case["dims"], 1.0, 0.5, 1.0, 1.0, kc, kd, 1.0)
        assert np.isfinite(dmu).all() and np.isfinite(dlv).all() and np.isfinite(dl).all()


def test_over_limit_launches_fail_like_the_gpu(emu):
    case = _kl_case(1, 767, [2])
    args = (case["mu"], case["logvar"], case["logits"], [2])
    emu.set_launch_param("kThreads", 1025)  # > 1024 threads per block
    with pytest.raises(emu.LaunchError, match="invalid configuration"):
        emu.sample_latent(*args, 1.0)
    assert emu.last_launch()["error"] == 9  # cudaErrorInvalidConfiguration
    emu.reset_launch_params()
    emu.set_launch_param("kColsPerTile", 768)  # 8 rows x 768 doubles = 48 KiB dynamic + the static flag
    with pytest.raises(emu.LaunchError, match="invalid argument"):
        emu.kl_forward(*args, 1.0, 1.0, 1.0, 1.0)
    assert emu.last_launch()["error"] == 1  # cudaErrorInvalidValue
    emu.set_launch_param("kColsPerTile", 767)
    assert np.isfinite(emu.kl_forward(*args, 1.0, 1.0, 1.0, 1.0)[0])


# --- aggregate KL (the information mode's batch reduction over classes) ---------------------------------------

@given(latent_cases(max_d=0), st.sampled_from([np.float32, np.float64]), st.booleans(), SHAPES)
def test_aggregate_kl_forward_backward_vs_reference(emu, case, dtype, strided, shape):
    if not case["dims"]:
        return
    _shape(emu, shape)
    dims = case["dims"]
    lg = _inputs(case, dtype, strided)[2]
    lg64 = lg.astype(np.float64)
    rel, tiny = (1.0 if dtype == np.float32 else 1e-8), np.finfo(dtype).tiny  # + the outputs' own underflow
    agg, qbar, counter = emu.aggregate_kl_forward(lg, dims)
    assert counter == 0, "the last block resets the completion counter"
    w = np.random.default_rng(case["seed"] + 3).standard_normal(len(dims)).astype(dtype)
    tol_q, tol_a, tol_d = aggregate_bounds(lg64, dims, w)
    assert_close(qbar, reference.aggregate_posterior(lg64, dims), rel * tol_q + tiny, "qbar")
    assert_close(agg, reference.kl_aggregate(lg64, dims), rel * tol_a + tiny, "agg_kl")
    (dl,) = emu.aggregate_kl_backward(lg, dims, qbar, w)
    (want,) = reference.kl_aggregate_vjp(lg64, dims, w.astype(np.float64))
    assert_close(dl, want, rel * tol_d + tiny, "d logits")


@pytest.mark.parametrize("rows_per_block, tile, rows_y", [(256, 256, 8), (16, 256, 8), (16, 4, 2), (3, 3, 1)])
def test_aggregate_reduction_over_blocks_is_deterministic(emu, rows_per_block, tile, rows_y):
    """Multi-block batches and class tiles: bit-identical over block orders and concurrency, and equal to the
    reference (a reduction that divided by a block's rows instead of B, or lost a block, would not be)."""
    emu.set_launch_param("kRowsPerBlock", rows_per_block)
    emu.set_launch_param("kColsPerTile", tile)
    emu.set_launch_param("kRowsY", rows_y)
    emu.set_launch_param("kThreads", 32)  # the softmax and backward launches: grid-stride loops turn
    emu.set_launch_param("kMaxBlocks", 2)
    dims = [3, 5, 2]
    lg = (np.random.default_rng(6).standard_normal((41, 10)) * 3).astype(np.float32)
    runs = []
    for seed, concurrent in [(0, 1), (1, 3), (2, 8)]:
        emu.set_options(seed=seed, concurrent_blocks=concurrent)
        runs.append(emu.aggregate_kl_forward(lg, dims))
        grid = emu.last_launch()["grid"]
        assert grid[0] == -(-41 // rows_per_block) and grid[1] == -(-10 // tile)
    for r in runs[1:]:
        for x, y in zip(r, runs[0]):
            np.testing.assert_array_equal(x, y)
    lg64 = lg.astype(np.float64)
    tol_q, tol_a, tol_d = aggregate_bounds(lg64, dims, np.ones(3))
    assert_close(runs[0][1], reference.aggregate_posterior(lg64, dims), tol_q, "qbar")
    assert_close(runs[0][0], reference.kl_aggregate(lg64, dims), tol_a, "agg_kl")
    (dl,) = emu.aggregate_kl_backward(lg, dims, runs[0][1], np.ones(3, np.float32))
    assert_close(dl, reference.kl_aggregate_vjp(lg64, dims, np.ones(3))[0], tol_d, "d logits")


def test_aggregate_kl_one_row_and_wide_blocks(emu):
    """B = 1 (A = the row's KL), and sum K = 5000 classes (tiles stride past the grid-y limit when lowered)."""
    lg = np.random.default_rng(1).standard_normal((1, 7)).astype(np.float64)
    agg, qbar, _ = emu.aggregate_kl_forward(lg, [3, 4])
    np.testing.assert_allclose(agg, reference.kl_categorical(lg, [3, 4]), rtol=1e-12)
    emu.set_launch_param("kMaxTilesY", 3)
    dims = [2500, 2500]
    lg = np.random.default_rng(2).standard_normal((5, 5000)).astype(np.float32)
    agg, qbar, _ = emu.aggregate_kl_forward(lg, dims)
    assert emu.last_launch()["dynamic_shared"] + emu.last_launch()["static_shared"] <= 48 * 1024
    tol_q, tol_a, _ = aggregate_bounds(lg.astype(np.float64), dims, np.ones(2))
    assert_close(qbar, reference.aggregate_posterior(lg.astype(np.float64), dims), tol_q, "qbar")
    assert_close(agg, reference.kl_aggregate(lg.astype(np.float64), dims), tol_a, "agg_kl")


# --- continuous aggregate KL (the information mode's batch moments per unit) -------------------------------------

def _gaussian_inputs(case, dtype, strided):
    """(mu, logvar) in dtype; strided: column slices of one [B, 3D] array (a row stride wider than D)."""
    mu, lv = case["mu"].astype(dtype), case["logvar"].astype(dtype)
    if not strided:
        return mu, lv
    D = mu.shape[1]
    packed = np.concatenate([mu, lv, mu], axis=1)
    return packed[:, :D], packed[:, D : 2 * D]


def _check_gaussian(emu, mu, lv, w, rel, tiny):
    mu64, lv64 = mu.astype(np.float64), lv.astype(np.float64)
    agg, moments, counter = emu.gaussian_aggregate_kl_forward(mu, lv)
    assert counter == 0, "the last block resets the completion counter"
    assert agg.dtype == mu.dtype and moments.dtype == np.float64 and moments.shape == (2, mu.shape[1])
    err_m, err_s2, tol_a, tol_dmu, tol_dlv = gaussian_aggregate_bounds(mu64, lv64, w, rel)
    want_m, want_s2 = reference.gaussian_aggregate_moments(mu64, lv64)
    assert_close(moments[0], want_m, err_m + tiny, "m")
    assert_close(moments[1], want_s2, err_s2 + tiny, "s2")
    assert_close(agg, reference.kl_gaussian_aggregate(mu64, lv64), tol_a + tiny, "A")
    dmu, dlv = emu.gaussian_aggregate_kl_backward(mu, lv, moments, w)
    want_mu, want_lv = reference.kl_gaussian_aggregate_vjp(mu64, lv64, w.astype(np.float64))
    assert_close(dmu, want_mu, tol_dmu + tiny, "d mu")
    assert_close(dlv, want_lv, tol_dlv + tiny, "d logvar")
    return agg, moments


@given(gaussian_cases(max_b=80, max_d=24), st.sampled_from([np.float32, np.float64]), st.booleans(), SHAPES)
def test_gaussian_aggregate_kl_forward_backward_vs_reference(emu, case, dtype, strided, shape):
    _shape(emu, shape)
    mu, lv = _gaussian_inputs(case, dtype, strided)
    rel, tiny = (2e-6 if dtype == np.float32 else 2e-14), float(np.finfo(dtype).tiny)  # + the outputs' underflow
    w = np.random.default_rng(case["seed"] + 5).standard_normal(case["D"]).astype(dtype)
    _check_gaussian(emu, mu, lv, w, rel, tiny)


@pytest.mark.parametrize("rows_per_block, tile, rows_y", [(256, 256, 8), (16, 256, 8), (16, 4, 2), (3, 3, 1)])
def test_gaussian_reduction_over_blocks_is_deterministic(emu, rows_per_block, tile, rows_y):
    """Multi-block batches and column tiles over the 3D columns (mu - c, (mu - c)^2, exp(logvar)): bit-identical
    over block orders and concurrency, and equal to the reference (a reduction that shifted by a block's own first
    row, divided by a block's rows instead of B, or lost a block, would not be)."""
    emu.set_launch_param("kRowsPerBlock", rows_per_block)
    emu.set_launch_param("kColsPerTile", tile)
    emu.set_launch_param("kRowsY", rows_y)
    emu.set_launch_param("kThreads", 32)  # the backward launch: grid-stride loops turn
    emu.set_launch_param("kMaxBlocks", 2)
    rng = np.random.default_rng(7)
    mu = (rng.standard_normal((41, 5)) * 3 + 10).astype(np.float32)
    lv = rng.uniform(-5, 5, (41, 5)).astype(np.float32)
    runs = []
    for seed, concurrent in [(0, 1), (1, 3), (2, 8)]:
        emu.set_options(seed=seed, concurrent_blocks=concurrent)
        runs.append(emu.gaussian_aggregate_kl_forward(mu, lv))
        grid = emu.last_launch()["grid"]
        assert grid[0] == -(-41 // rows_per_block) and grid[1] == -(-15 // tile)
    for r in runs[1:]:
        for x, y in zip(r, runs[0]):
            np.testing.assert_array_equal(x, y)
    _check_gaussian(emu, mu, lv, np.array([1.0, -2.0, 0.5, 0.0, 3.0], np.float32), 2e-6, 0.0)


def test_gaussian_aggregate_kl_one_row_and_wide(emu):
    """B = 1 (A = the row's KL), and D = 2000 units (6000 columns: tiles stride past the grid-y limit)."""
    rng = np.random.default_rng(1)
    mu, lv = rng.standard_normal((1, 7)), rng.uniform(-20, 20, (1, 7))
    agg, moments, _ = emu.gaussian_aggregate_kl_forward(mu, lv)
    np.testing.assert_allclose(agg, reference.kl_normal(mu, lv), rtol=1e-12)
    np.testing.assert_array_equal(moments[0], mu[0])
    emu.set_launch_param("kMaxTilesY", 3)
    mu = (rng.standard_normal((5, 2000)) * 3).astype(np.float32)
    lv = rng.uniform(-5, 5, (5, 2000)).astype(np.float32)
    emu.gaussian_aggregate_kl_forward(mu, lv)
    launch = emu.last_launch()
    assert launch["grid"][1] == 3 and launch["dynamic_shared"] + launch["static_shared"] <= 48 * 1024
    _check_gaussian(emu, mu, lv, rng.standard_normal(2000).astype(np.float32), 2e-6, 0.0)
