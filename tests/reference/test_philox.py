"""Philox4x32-10 known answers and the project's (seed, offset, index) -> uniform / normal mapping."""
import numpy as np
import pytest
from scipy import stats

import reference as R
from reference.philox import MASK32

U32 = np.uint32


def _hex(words):
    return [f"{int(w):08x}" for w in words]


def test_known_answer_zero():
    out = R.philox4x32_10(np.zeros(4, U32), np.zeros(2, U32))
    assert out.dtype == np.uint32
    assert _hex(out) == ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]


def test_known_answer_all_ones():
    out = R.philox4x32_10(np.full(4, 0xFFFFFFFF, U32), np.full(2, 0xFFFFFFFF, U32))
    assert _hex(out) == ["408f276d", "41c83b0e", "a20bc7c6", "6d5451fd"]


def test_batched_counters_match_single_calls():
    rng = np.random.default_rng(3)
    counters = rng.integers(0, 2**32, (7, 4), dtype=np.uint64).astype(U32)
    keys = rng.integers(0, 2**32, (7, 2), dtype=np.uint64).astype(U32)
    batched = R.philox4x32_10(counters, keys)
    for i in range(7):
        assert np.array_equal(batched[i], R.philox4x32_10(counters[i], keys[i]))
    assert not np.array_equal(batched[0], batched[1])


@pytest.mark.parametrize("seed, offset", [(0, 0), (123, 8), (2**40 + 5, 2**33 + 4), (2**64 - 1, 2**64 - 4)])
@pytest.mark.parametrize("n", [1, 5, 11, 16])
def test_stream_element_mapping(seed, offset, n):
    """Element i of S(seed, offset) is word i % 4 of philox(counter=(o/4 lo, o/4 hi, q lo, q hi), key), q = i // 4."""
    words = R.philox_words(seed, offset, n)
    assert words.shape == (n,) and words.dtype == np.uint32
    key = np.array([seed & MASK32, seed >> 32], U32)
    block = offset // 4
    for i in range(n):
        q = i // 4
        counter = np.array([block & MASK32, block >> 32, q & MASK32, q >> 32], U32)
        assert words[i] == R.philox4x32_10(counter, key)[i % 4]
    # a prefix of a longer stream is the same stream
    assert np.array_equal(R.philox_words(seed, offset, n + 7)[:n], words)


@pytest.mark.parametrize("s, o", [(0, 0), (5, 4), (2**32 + 3, 8 * 2**32 + 12), (2**64 - 1, 2**64 - 4), (7, 7)])
def test_counter_is_pytorch_curand_layout(s, o):
    """PyTorch's curand_init(seed, subsequence s, offset o): counter = (o/4 lo, o/4 hi, s lo, s hi)."""
    want = [(o // 4) & MASK32, (o // 4) >> 32, s & MASK32, s >> 32]
    assert R.philox_counter(s, o).tolist() == want
    # Random123 counter (1, 0, 0, 0), key 0 is subsequence 0 of seed 0 at offset 4 (block 1)
    assert _hex(R.philox_words(0, 4, 4)) == _hex(R.philox4x32_10(np.array([1, 0, 0, 0], U32), np.zeros(2, U32)))


def test_offset_counts_words_and_its_low_two_bits_are_ignored():
    """Offsets are in 32-bit words as in PyTorch (which hands out multiples of 4): o and o + 3 share a block."""
    assert np.array_equal(R.philox_words(9, 12, 40), R.philox_words(9, 15, 40))
    assert not np.array_equal(R.philox_words(9, 12, 40), R.philox_words(9, 16, 40))


def _counters_read(monkeypatch, fn):
    """Every Philox counter (as 4-tuples) that fn() passes to philox4x32_10."""
    seen = []
    real = R.philox.philox4x32_10

    def spy(counter, key):
        seen.extend(map(tuple, np.asarray(counter).reshape(-1, 4).tolist()))
        return real(counter, key)

    monkeypatch.setattr(R.philox, "philox4x32_10", spy)
    fn()
    monkeypatch.setattr(R.philox, "philox4x32_10", real)
    return set(seen)


@pytest.mark.parametrize("offset", [0, 8, 2**40, 2**64 - 16])
def test_one_call_reads_only_its_reserved_blocks_and_calls_never_overlap(monkeypatch, offset):
    """A call at offset o reads blocks o/4 (Gaussian) and o/4 + 1 (Gumbel), disjoint from each other and from
    the call at o + OFFSET_PER_CALL, so consecutive calls and other ops on the same generator never share a counter."""
    B, D, dims = 5, 3, [4, 7]
    blocks = lambda cs: {c[0] | (c[1] << 32) for c in cs}  # noqa: E731
    gauss = _counters_read(monkeypatch, lambda: R.philox_uniform(1, offset, 2 * B * D))
    gumbel = _counters_read(monkeypatch, lambda: R.philox_uniform(1, (offset + R.GUMBEL_OFFSET) % 2**64, B * 11))
    call = _counters_read(monkeypatch, lambda: R.sample_latent_noise(1, offset, B, D, dims))
    assert call == gauss | gumbel and not gauss & gumbel
    assert blocks(gauss) == {offset // 4} and blocks(gumbel) == {offset // 4 + 1}
    assert R.OFFSET_PER_CALL == 8 and blocks(call) == set(range(offset // 4, (offset + R.OFFSET_PER_CALL) // 4))
    nxt = _counters_read(monkeypatch, lambda: R.sample_latent_noise(1, offset + R.OFFSET_PER_CALL, B, D, dims))
    assert not call & nxt
    # the subsequence is the 4-word group: Gaussian pairs 2q, 2q+1 and Gumbel uniforms 4q..4q+3 use subsequence q
    assert {c[2] for c in gauss} == set(range((2 * B * D + 3) // 4)) and {c[2] for c in gumbel} == set(range(14))


def test_uniform_from_extreme_words():
    u = R.uniform_from_words(np.array([0, 511, 512, 0xFFFFFFFF], U32))
    assert u.dtype == np.float32
    assert u[0] == np.float32(2.0**-24) and u[1] == u[0]
    assert u[2] == np.float32(1.5 * 2.0**-23)
    assert u[3] == np.float32(1 - 2.0**-24)
    assert np.all((u > 0) & (u < 1))


def test_philox_uniform_values_on_the_grid_and_inside_open_interval():
    words = R.philox_words(42, 12, 100_000)
    u = R.philox_uniform(42, 12, 100_000)
    assert u.dtype == np.float32 and u.shape == (100_000,)
    assert np.all(u > 0) and np.all(u < 1)
    # exact: u * 2**23 - 0.5 equals the top 23 bits of the word
    assert np.array_equal((u.astype(np.float64) * 2**23 - 0.5).astype(np.int64), (words >> 9).astype(np.int64))


@pytest.mark.parametrize("seed, offset", [(0, 0), (7, 4), (2**63 + 11, 2**40)])
def test_philox_uniform_is_uniform(seed, offset):
    u = R.philox_uniform(seed, offset, 200_000)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_streams_differ_between_seeds_and_offsets():
    a = R.philox_uniform(1, 0, 64)
    assert not np.array_equal(a, R.philox_uniform(2, 0, 64))
    assert not np.array_equal(a, R.philox_uniform(1, 4, 64))
    assert not np.array_equal(a, R.philox_uniform(1 + 2**32, 0, 64))  # high seed word matters


@pytest.mark.parametrize("seed, offset", [(5, 0), (2**50 + 3, 2**64 - 4)])
def test_sample_latent_noise_layout(seed, offset):
    b, d, dims = 3, 5, [2, 7]
    eps, u = R.sample_latent_noise(seed, offset, b, d, dims)
    assert eps.dtype == np.float64 and eps.shape == (b, d)
    assert u.dtype == np.float32 and u.shape == (b, 9)
    pairs = R.philox_uniform(seed, offset, 2 * b * d).astype(np.float64)
    for bi in range(b):
        for di in range(d):
            j = bi * d + di
            expected = np.sqrt(-2 * np.log(pairs[2 * j])) * np.cos(2 * np.pi * pairs[2 * j + 1])
            assert eps[bi, di] == expected
    gumbel_offset = (offset + 4) % 2**64
    assert np.array_equal(u.ravel(), R.philox_uniform(seed, gumbel_offset, b * 9))


def test_sample_latent_noise_empty_parts():
    eps, u = R.sample_latent_noise(1, 0, 4, 0, [])
    assert eps.shape == (4, 0) and u.shape == (4, 0)


def test_box_muller_eps_is_standard_normal():
    eps, _ = R.sample_latent_noise(2024, 8, 1000, 200, [])
    e = eps.ravel()
    n = e.size
    assert abs(e.mean()) < 4 / np.sqrt(n)
    assert abs(e.var() - 1) < 4 * np.sqrt(2 / n)
    assert stats.kstest(e, "norm").pvalue > 1e-3
    assert np.all(np.isfinite(e))
