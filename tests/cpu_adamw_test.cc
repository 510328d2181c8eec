// The streaming AdamW must compute what the plain AdamW kernel computes, for aligned tensors of any
// length, and decline misaligned ones; over parameters held as fp32 halves, exactly what it
// computes over the fp32 values, at any alignment.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_adamw.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/fp32_halves.h"
#include "core/rng.h"

namespace switchyard::backend::cpu {
namespace {

// 64-byte-aligned copies live inside over-allocated vectors.
float* align64(std::vector<float>& storage) {
  auto address = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((64 - address % 64) % 64) / sizeof(float);
}

// AdamW's four arrays of n values, 64-byte aligned: a[0] parameters, a[1] gradients, a[2] m (all
// normal), a[3] v (uniform, positive).
struct AlignedState {
  std::vector<float> storage[4];
  float* a[4];
  AlignedState(size_t n, Rng& rng) {
    for (int k = 0; k < 4; ++k) {
      storage[k].resize(n + 16);
      a[k] = align64(storage[k]);
      for (size_t i = 0; i < n; ++i) a[k][i] = k == 3 ? rng.uniform() * 0.01f : rng.normal() * 0.1f;
    }
  }
};

TEST(CpuAdamW, StreamingMatchesThePlainKernel) {
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{1003}, size_t{100000}}) {
    Rng rng(n);
    AlignedState state(n, rng);
    float** a = state.a;
    std::vector<float> r[4];
    for (int k = 0; k < 4; ++k) r[k].assign(a[k], a[k] + n);
    for (int step = 1; step <= 3; ++step) {
      bool used = adamw_update_streaming(a[0], a[1], a[2], a[3], n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
      adamw_update<float>(r[0].data(), r[1].data(), r[2].data(), r[3].data(), n, 1e-3f, 0.9f, 0.95f,
                          1e-8f, 0.1f, step, 0.5f);
      if (!used) GTEST_SKIP() << "built without AVX2";
      for (int k : {0, 2, 3}) {
        for (size_t i = 0; i < n; ++i) {
          // Both round in float but the plain kernel's compiler may fuse multiply-adds and the
          // rounding differences compound over the steps: compare against the size of the terms
          // (the value and its ~1e-3 update), not against a result that may cancel towards zero.
          ASSERT_NEAR(a[k][i], r[k][i], 1e-5f * (std::abs(r[k][i]) + 1e-3f)) << "array " << k << " index " << i;
        }
      }
    }
  }
}

// The bf16 weight copy written in the same pass: the updated parameters rounded as float_to_bf16
// rounds them (ties to even, NaN kept a NaN), vector lanes and the scalar tail alike.
TEST(CpuAdamW, WritesTheBf16CopyOfTheUpdatedParameters) {
  const size_t n = 1003;
  Rng rng(11);
  AlignedState state(n, rng);
  float** a = state.a;
  a[0][5] = NAN;  // a NaN parameter in a vector lane
  std::vector<uint16_t> copy(n + 8);
  uint16_t* c = copy.data() + (16 - reinterpret_cast<uintptr_t>(copy.data()) % 16) % 16 / 2;
  if (!adamw_update_streaming(a[0], a[1], a[2], a[3], n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f, c)) {
    GTEST_SKIP() << "built without AVX2";
  }
  for (size_t i = 0; i < n; ++i) {
    if (i == 5) {
      EXPECT_TRUE(std::isnan(bf16_to_float(c[i])));
      continue;
    }
    ASSERT_EQ(c[i], float_to_bf16(a[0][i])) << "index " << i;
  }
}

TEST(CpuAdamW, DeclinesMisalignedArrays) {
  std::vector<float> s(64, 0.5f);
  float* base = align64(s);
  EXPECT_FALSE(adamw_update_streaming(base + 1, base, base, base, 8, 1e-3f, 0.9f, 0.95f, 1e-8f, 0, 1, 1));
}

// The halves joined after each step are the fp32 update's parameters bit for bit (the same
// arithmetic on the same values: splitting loses nothing), and m and v are the same too; the
// high halves are the parameters rounded to nearest bf16. Offsets 0 and 3 take the streaming
// and the unaligned vector loops; lengths off a multiple of 8 the scalar tail.
TEST(CpuAdamW, HalvesUpdateAsTheFp32ValuesDo) {
  for (size_t offset : {size_t{0}, size_t{3}}) {
    for (size_t n : {size_t{5}, size_t{1003}, size_t{100000}}) {
      Rng rng(n + offset);
      AlignedState state(n, rng);
      float** a = state.a;
      std::vector<uint16_t> high(n + offset + 32), low(n + offset + 32);
      uint16_t* h = high.data() + (32 - reinterpret_cast<uintptr_t>(high.data()) % 32) % 32 / 2 + offset;
      uint16_t* l = low.data() + (32 - reinterpret_cast<uintptr_t>(low.data()) % 32) % 32 / 2 + offset;
      split_fp32(a[0], h, l, n);
      std::vector<float> m(a[2], a[2] + n), v(a[3], a[3] + n);
      for (int step = 1; step <= 3; ++step) {
        adamw_update_halves(h, l, a[1], m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
        if (!adamw_update_streaming(a[0], a[1], a[2], a[3], n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f)) {
          GTEST_SKIP() << "built without AVX2";
        }
        std::vector<float> joined(n);
        join_fp32(h, l, joined.data(), n);
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(joined[i]), std::bit_cast<uint32_t>(a[0][i]))
              << "offset " << offset << " n " << n << " index " << i << " step " << step;
          ASSERT_EQ(m[i], a[2][i]) << "index " << i;
          ASSERT_EQ(v[i], a[3][i]) << "index " << i;
          const float rounded = bf16_to_float(h[i]);
          ASSERT_LE(std::abs(rounded - a[0][i]), std::abs(bf16_to_float(float_to_bf16(a[0][i])) - a[0][i]))
              << "index " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace switchyard::backend::cpu
