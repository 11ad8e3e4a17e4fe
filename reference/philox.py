"""Philox4x32-10 and the project's mapping from (seed, offset, element index) to random bits.

This module is the project's definition of its randomness; the CPU twin and the CUDA
kernels reproduce it bit for bit.

Generator
    philox4x32_10(counter, key): the Random123 Philox4x32 bijection with 10 rounds.
    Round: (hi0, lo0) = mulhilo32(0xD2511F53, c0), (hi1, lo1) = mulhilo32(0xCD9E8D57, c2),
    c <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); between rounds the key is bumped by
    (0x9E3779B9, 0xBB67AE85) modulo 2**32. Known answers: counter 0, key 0 ->
    6627e8d5 e169c58d bc57ac4c 9b00dbd8; counter and key all ones ->
    408f276d 41c83b0e a20bc7c6 6d5451fd.

Keying and counter: PyTorch's CUDA layout (curand_init(seed, subsequence, offset))
    key = (seed & 0xffffffff, seed >> 32); offset counts 32-bit words, so a subsequence s
    at offset o uses block o // 4: counter = (b lo, b hi, s lo, s hi) with b = o // 4.
    philox_counter(s, o) is that counter. PyTorch's generator hands out offsets in multiples
    of 4; o % 4 is ignored (floor), as in PyTorch's own device-side Philox.

Stream S(seed, offset)
    Element i >= 0 is word (i % 4) of philox4x32_10(philox_counter(i // 4, offset), key):
    the 4-word group q = i // 4 is subsequence q, read at block offset // 4.

Uniforms
    From a word x: u = float32((x >> 9) + 0.5) * 2**-23, an exactly representable float32 in
    [2**-24, 1 - 2**-24]; never 0 or 1, so -log(-log(u)) and sqrt(-2 log u) are always finite.
    philox_uniform(seed, offset, n) is the first n uniforms of S(seed, offset).

Gaussian noise eps [B, D] (flat index j = b*D + d)
    eps[j] = sqrt(-2 ln U(2j)) * cos(2 pi U(2j+1)) with U the uniforms of S(seed, offset),
    evaluated in float64 here (kernels evaluate it in their own precision). One Philox call
    (subsequence q) yields the two uniform pairs of j = 2q and j = 2q + 1.

Gumbel uniforms u [B, sum K] (flat index i = b*sumK + k)
    u[i] = U'(i), U' the uniforms of S(seed, offset + GUMBEL_OFFSET) (offset + 4 modulo 2**64):
    the next block of the same subsequences, so Gaussian and Gumbel draws never share a counter.

Reservation
    One sample_latent call reads blocks offset // 4 and offset // 4 + 1 of every subsequence, so
    the caller's generator advances its offset by OFFSET_PER_CALL = 8 words per call (as PyTorch
    reserves 4 words per 128-bit block a subsequence consumes); consecutive calls, and any other
    torch random op on the same generator, then read disjoint counters.
    On CUDA (seed, offset) is the device generator's philox state; on CPU each call draws a
    fresh 64-bit seed from the CPU generator and uses offset 0.
"""
import numpy as np

from .array_namespace import array_namespace
from .validation import check_count, check_uint64

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
GUMBEL_OFFSET = 4  # words: the Gumbel uniforms of a call read the block after its Gaussian block
OFFSET_PER_CALL = 8  # words one sample_latent call reserves on the generator (2 blocks per subsequence)


def philox4x32_10(counter, key):
    """Philox4x32-10: counter uint32[..., 4], key uint32[..., 2] -> uint32[..., 4] (broadcast)."""
    xp = array_namespace(counter, key)
    counter = xp.asarray(counter)
    key = xp.asarray(key)
    if counter.ndim < 1 or counter.shape[-1] != 4:
        raise ValueError(f"counter must have shape [..., 4], got shape {tuple(counter.shape)}")
    if key.ndim < 1 or key.shape[-1] != 2:
        raise ValueError(f"key must have shape [..., 2], got shape {tuple(key.shape)}")
    for name, a in (("counter", counter), ("key", key)):
        if a.dtype.kind not in "ui" or (a.size and (bool(xp.any(a < 0)) or bool(xp.any(a > MASK32)))):
            raise ValueError(f"{name} must hold uint32 values, got dtype {a.dtype}")
    c = [counter[..., i].astype(xp.uint64) for i in range(4)]
    k0 = key[..., 0].astype(xp.uint64)
    k1 = key[..., 1].astype(xp.uint64)
    m0 = xp.uint64(PHILOX_M0)
    m1 = xp.uint64(PHILOX_M1)
    mask = xp.uint64(MASK32)
    s32 = xp.uint64(32)
    for r in range(10):
        if r:
            k0 = (k0 + xp.uint64(PHILOX_W0)) & mask
            k1 = (k1 + xp.uint64(PHILOX_W1)) & mask
        p0 = c[0] * m0  # < 2**64: exact in uint64
        p1 = c[2] * m1
        hi0, lo0 = p0 >> s32, p0 & mask
        hi1, lo1 = p1 >> s32, p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return xp.stack(c, axis=-1).astype(xp.uint32)


def philox_counter(subsequence, offset, xp=np):
    """Counter uint32[..., 4] of subsequence(s) s at word offset o: (o//4 lo, o//4 hi, s lo, s hi)."""
    offset = check_uint64("offset", offset)
    s = xp.asarray(subsequence, dtype=xp.uint64)
    block = offset >> 2
    lo = xp.full(s.shape, block & MASK32, dtype=xp.uint64)
    hi = xp.full(s.shape, block >> 32, dtype=xp.uint64)
    return xp.stack([lo, hi, s & xp.uint64(MASK32), s >> xp.uint64(32)], axis=-1).astype(xp.uint32)


def philox_words(seed, offset, n, xp=np):
    """The first n uint32 words of stream S(seed, offset) -> uint32[n]."""
    seed = check_uint64("seed", seed)
    offset = check_uint64("offset", offset)
    n = check_count("n", n)
    counter = philox_counter(xp.arange((n + 3) // 4, dtype=xp.uint64), offset, xp=xp)
    key = xp.asarray([seed & MASK32, seed >> 32], dtype=xp.uint32)
    return philox4x32_10(counter, key).reshape(-1)[:n]


def uniform_from_words(words, xp=None):
    """uint32 words -> float32 uniforms float32((x >> 9) + 0.5) * 2**-23, in [2**-24, 1 - 2**-24]."""
    xp = xp or array_namespace(words)
    w = xp.asarray(words).astype(xp.uint32)
    top23 = (w >> xp.uint32(9)).astype(xp.float64)
    return ((top23 + 0.5) * 2.0**-23).astype(xp.float32)  # exact: < 24 significant bits


def philox_uniform(seed, offset, n, xp=np):
    """First n uniforms of stream S(seed, offset) -> float32[n], strictly inside (0, 1)."""
    return uniform_from_words(philox_words(seed, offset, n, xp=xp), xp=xp)
