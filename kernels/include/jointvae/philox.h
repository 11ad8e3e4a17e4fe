// Philox4x32-10 counter-based RNG and the project's fixed stream mapping
// (the mapping is defined in reference/philox.py).
//
// PyTorch's CUDA layout (curand_init(seed, subsequence, offset)): subsequence s at word offset o reads block
// b = o / 4, counter = (b_lo, b_hi, s_lo, s_hi), key = (seed_lo, seed_hi).
// Stream S(seed, offset), element i >= 0: word (i % 4) of subsequence q = i / 4 at that offset.
// A sample_latent call reads its Gaussian uniforms from S(seed, offset) and its Gumbel uniforms from
// S(seed, offset + kGumbelOffset) (the next block), and reserves kOffsetPerCall words of the generator.
// Uniform from a word x: ((x >> 9) + 0.5) * 2^-23, exactly representable, in [2^-24, 1 - 2^-24].
//
// Compiled for host and device: no torch, no std:: containers.
#pragma once
#include <cstdint>

#include "jointvae/hd.h"

namespace jointvae {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr uint64_t kGumbelOffset = 4;   // words: one 128-bit block after the Gaussian one
constexpr uint64_t kOffsetPerCall = 8;  // words a sample_latent call reserves (2 blocks per subsequence)

struct Words4 {
  uint32_t x, y, z, w;
};

JV_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Random123 philox4x32 with 10 rounds: counter (c0..c3), key (k0, k1) -> 4 words.
JV_HD Words4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const uint32_t hi0 = mulhi32(kPhiloxM0, c0), lo0 = kPhiloxM0 * c0;
    const uint32_t hi1 = mulhi32(kPhiloxM1, c2), lo1 = kPhiloxM1 * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Words4{c0, c1, c2, c3};
}

// Group q of stream S(seed, offset) (subsequence q, block offset / 4): the 4 words for elements 4q .. 4q+3.
JV_HD Words4 philox_block(uint64_t seed, uint64_t offset, uint64_t q) {
  const uint64_t b = offset >> 2;
  return philox4x32_10(static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), static_cast<uint32_t>(q),
                       static_cast<uint32_t>(q >> 32), static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

#if !defined(__CUDACC__)
// Host (CPU twin only): blocks q0 .. q0+3 of stream S(seed, offset) in lane-parallel form (the compiler vectorises the
// lanes); out receives 16 words, block after block. Same values as philox_block.
inline void philox_blocks_x4(uint64_t seed, uint64_t offset, uint64_t q0, uint32_t* out) {
  uint32_t c0[4], c1[4], c2[4], c3[4];
  const uint64_t b = offset >> 2;
  for (int l = 0; l < 4; ++l) {
    const uint64_t q = q0 + static_cast<uint64_t>(l);
    c0[l] = static_cast<uint32_t>(b);
    c1[l] = static_cast<uint32_t>(b >> 32);
    c2[l] = static_cast<uint32_t>(q);
    c3[l] = static_cast<uint32_t>(q >> 32);
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < 10; ++r) {
    for (int l = 0; l < 4; ++l) {
      const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0[l];
      const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2[l];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = static_cast<uint32_t>(p1);
      c3[l] = static_cast<uint32_t>(p0);
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int l = 0; l < 4; ++l) {
    out[4 * l] = c0[l];
    out[4 * l + 1] = c1[l];
    out[4 * l + 2] = c2[l];
    out[4 * l + 3] = c3[l];
  }
}
#endif

JV_HD uint32_t word_at(const Words4& w, uint32_t lane) {
  return lane == 0 ? w.x : lane == 1 ? w.y : lane == 2 ? w.z : w.w;
}

// ((x >> 9) + 0.5) * 2^-23: both steps exact in float32.
JV_HD float uniform_from_word(uint32_t x) {
  return (static_cast<float>(x >> 9) + 0.5f) * 1.1920928955078125e-07f;
}

// Sequential reader of stream S(seed, offset): one philox call per 4 consecutive elements.
struct PhiloxReader {
  uint64_t seed, offset;
  uint64_t q;
  Words4 w;
  JV_HD PhiloxReader(uint64_t seed_, uint64_t offset_) : seed(seed_), offset(offset_), q(~uint64_t(0)), w{0, 0, 0, 0} {}
  JV_HD float uniform(uint64_t i) {
    const uint64_t qi = i >> 2;
    if (qi != q) {
      q = qi;
      w = philox_block(seed, offset, qi);
    }
    return uniform_from_word(word_at(w, static_cast<uint32_t>(i & 3)));
  }
};

// Mirror of at::PhiloxCudaState (graph-safe): plain values, or device pointers read at run time
// (CUDA graph capture) plus an intra-graph offset. No torch types, so .cu files need no torch header.
struct PhiloxArgs {
  uint64_t seed;
  uint64_t offset;
  const int64_t* seed_ptr;
  const int64_t* offset_ptr;
  uint64_t offset_intragraph;
  bool captured;
};

JV_HD void philox_unpack(const PhiloxArgs& a, uint64_t& seed, uint64_t& offset) {
  if (a.captured) {
    seed = static_cast<uint64_t>(*a.seed_ptr);
    offset = static_cast<uint64_t>(*a.offset_ptr) + a.offset_intragraph;
  } else {
    seed = a.seed;
    offset = a.offset;
  }
}

}  // namespace jointvae
