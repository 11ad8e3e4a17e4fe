"""Randomness of the fused ops: Philox uniforms bit-identical to the reference, generator handling,
sampling statistics."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import reference
from jointvae_fast import ops
from tests.ops_cases import assert_close, y_atol

pytestmark = pytest.mark.skipif(ops.backend() == "composite", reason="compiled ops unavailable")

U64 = st.integers(0, 2**64 - 1)


@given(U64, U64, st.integers(0, 4099))
def test_philox_uniform_bit_identical_to_reference(seed, offset, n):
    got = ops.philox_uniform(seed, offset, n).numpy()
    want = reference.philox_uniform(seed, offset, n)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_philox_known_answers_through_the_op():
    # Random123 known answers: counter 0, key 0 (seed 0, offset 0, block 0) -> words; uniform = ((w >> 9) + .5) 2^-23
    words = np.array([0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8], dtype=np.uint64)
    want = (((words >> 9).astype(np.float64) + 0.5) * 2.0**-23).astype(np.float32)
    np.testing.assert_array_equal(ops.philox_uniform(0, 0, 4).numpy(), want)


def _state(mu, lv, lg, dims, tau, generator=None):
    latent, _, state = torch.ops.jointvae.sample_latent(mu, lv, lg, dims, tau, True, None, None, generator)
    seed, offset = (int(v) & (2**64 - 1) for v in state.tolist())
    return latent, seed, offset


@given(st.integers(1, 40), st.integers(0, 12), st.lists(st.integers(2, 12), max_size=3), st.integers(0, 2**31))
def test_generator_mode_uses_the_documented_streams(B, D, dims, torch_seed):
    """The sample equals the reference driven by sample_latent_noise(seed, offset) of the (seed, offset) used."""
    rng = np.random.default_rng(torch_seed)
    K = sum(dims)
    mu = torch.from_numpy(rng.standard_normal((B, D)).astype(np.float32))
    lv = torch.from_numpy(rng.uniform(-2, 2, (B, D)).astype(np.float32))
    lg = torch.from_numpy(rng.standard_normal((B, K)).astype(np.float32))
    g = torch.Generator().manual_seed(torch_seed)
    latent, seed, offset = _state(mu, lv, lg, dims, 0.5, g)
    assert offset == 0  # CPU: fresh seed per call, offset 0
    eps, u = reference.sample_latent_noise(seed, offset, B, D, dims)
    want = reference.sample_latent(mu.numpy(), lv.numpy(), lg.numpy(), dims, 0.5, eps, u)
    zs = np.abs(mu.numpy()) + np.abs(np.exp(lv.numpy().astype(np.float64) / 2) * eps)
    # eps from float32 Box-Muller: |err| <= 1e-6 (|eps| + 1) (log, sqrt, cos(2 pi u) to a few ulp)
    assert_close(latent[:, :D], want[:, :D], 1e-6 * (zs + np.exp(lv.numpy().astype(np.float64) / 2)), "z")
    assert_close(latent[:, D:], want[:, D:], y_atol(0.5), "y")


def test_standard_normal_part_is_box_muller_of_the_stream():
    B, D = 256, 16
    z = torch.zeros(B, D)
    latent, seed, offset = _state(z, z, torch.zeros(B, 0), [], 1.0)
    eps, _ = reference.sample_latent_noise(seed, offset, B, D, [])
    assert_close(latent, eps, 1e-6 * (1 + np.abs(eps)), "eps")


def test_successive_calls_draw_fresh_noise_and_manual_seed_repeats():
    mu, lv, lg = torch.zeros(8, 4), torch.zeros(8, 4), torch.zeros(8, 6)
    torch.manual_seed(123)
    a = ops.sample_latent(mu, lv, lg, [3, 3], 1.0)
    b = ops.sample_latent(mu, lv, lg, [3, 3], 1.0)
    assert not torch.equal(a, b)
    torch.manual_seed(123)
    a2 = ops.sample_latent(mu, lv, lg, [3, 3], 1.0)
    b2 = ops.sample_latent(mu, lv, lg, [3, 3], 1.0)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(ops.sample_latent(mu, lv, lg, [3, 3], 1.0, generator=g1),
                       ops.sample_latent(mu, lv, lg, [3, 3], 1.0, generator=g2))
    # eval mode draws nothing: the generator does not advance
    g3 = torch.Generator().manual_seed(5)
    ops.sample_latent(mu, lv, lg, [3, 3], 1.0, training=False, generator=g3)
    assert torch.equal(ops.sample_latent(mu, lv, lg, [3, 3], 1.0, generator=g3),
                       ops.sample_latent(mu, lv, lg, [3, 3], 1.0, generator=torch.Generator().manual_seed(5)))


def test_gumbel_argmax_frequencies_match_softmax():
    """argmax of Gumbel-softmax samples ~ Categorical(softmax(logits)): chi-square at a fixed seed."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, -3.0])
    p = torch.softmax(logits.double(), 0).numpy()
    n = 20000
    g = torch.Generator().manual_seed(2024)
    lat = ops.sample_latent(None, None, logits.expand(n, 6), [6], 0.5, generator=g)
    counts = np.bincount(lat.argmax(1).numpy(), minlength=6)
    chi2, pval = stats.chisquare(counts, n * p)
    assert pval > 1e-3, (counts, n * p, chi2)


def test_gaussian_moments():
    g = torch.Generator().manual_seed(7)
    B, D = 4096, 8
    mu = torch.full((B, D), 1.5)
    lv = torch.full((B, D), np.log(4.0), dtype=torch.float32)  # std 2
    z = ops.sample_latent(mu, lv, torch.zeros(B, 0), [], 1.0, generator=g).double()
    n = B * D
    assert abs(z.mean().item() - 1.5) < 5 * 2 / np.sqrt(n)
    assert abs(z.var().item() - 4.0) < 5 * 4 * np.sqrt(2 / n)
    assert stats.kstest(((z - 1.5) / 2).flatten().numpy(), "norm").pvalue > 1e-3


def test_composite_is_the_same_distribution():
    torch.manual_seed(0)
    logits = torch.tensor([[1.0, 0.0, -1.0]]).expand(20000, 3)
    y = ops.composite_sample_latent(None, None, logits, [3], 0.5)
    counts = np.bincount(y.argmax(1).numpy(), minlength=3)
    assert stats.chisquare(counts, 20000 * torch.softmax(logits[0].double(), 0).numpy()).pvalue > 1e-3
