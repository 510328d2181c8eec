// cpu-bf16's decoding product (bf16_dot_linear.h) against a double-precision reference over the
// same bf16 values (and over MXFP4 weights, the values core's decoder gives): within fp32
// summation's error and one rounding to bf16; a row's result the same alone and among others; the
// tail of a row shorter than a vector and outputs past the last whole tile included.
#include "backend/cpu/bf16_dot_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "bf16_product_check.h"
#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

class Bf16DotLinear : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!bf16_dot_linear_available()) {
      GTEST_SKIP() << "this build's CPU kernels have no AVX-512 BF16";
    }
  }
};

TEST_F(Bf16DotLinear, MatchesTheExactProductWithinOneBf16Rounding) {
  for (const auto [N, C, OC] : {std::array{1, 768, 45}, std::array{2, 70, 37}, std::array{3, 31, 13},
                                std::array{4, 96, 50}, std::array{1, 0, 5}}) {
    const std::vector<uint16_t> inp = random_bf16(size_t(N) * C, 1, 1.0f);
    const std::vector<uint16_t> weight = random_bf16(size_t(OC) * C, 2, 0.1f);
    std::vector<float> bias(OC);
    for (int o = 0; o < OC; ++o) bias[o] = 0.01f * static_cast<float>(o - OC / 2);
    for (const bool with_bias : {false, true}) {
      std::vector<uint16_t> out(size_t(N) * OC, 0xFFFF);
      bf16_dot_linear(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N,
                      C, OC);
      expect_bf16_product(out, inp, weight, with_bias ? bias.data() : nullptr, N, C, OC);
    }
  }
}

// product(out, inp, N) for 4 rows together, then each row alone: the same bits.
template <typename Product>
void expect_rows_independent(Product&& product, int C, int OC, unsigned seed) {
  const std::vector<uint16_t> inp = random_bf16(size_t(4) * C, seed, 1.0f);
  std::vector<uint16_t> together(size_t(4) * OC);
  product(together.data(), inp.data(), 4);
  for (int n = 0; n < 4; ++n) {
    std::vector<uint16_t> alone(OC);
    product(alone.data(), inp.data() + size_t(n) * C, 1);
    EXPECT_EQ(alone, std::vector<uint16_t>(together.begin() + size_t(n) * OC,
                                           together.begin() + size_t(n + 1) * OC))
        << "row " << n;
  }
}

TEST_F(Bf16DotLinear, ARowGetsTheSameBitsAloneOrAmongOthers) {
  const int C = 200, OC = 29;
  const std::vector<uint16_t> weight = random_bf16(size_t(OC) * C, 4, 0.1f);
  expect_rows_independent(
      [&](uint16_t* out, const uint16_t* inp, int N) {
        bf16_dot_linear(out, inp, weight.data(), nullptr, N, C, OC);
      },
      C, OC, 3);
}

// Random MXFP4 weights [OC, C]: every code, and scales from 2^-12 to 2^3.
struct Mxfp4Matrix {
  std::vector<uint8_t> codes, scales;
  WeightMatrix matrix() const {
    return {.dtype = DType::kMXFP4, .data = codes.data(), .scales = scales.data()};
  }
  float value(int o, int c, int C) const {
    float block[32];
    const size_t first = size_t(o) * C + c / 32 * 32;
    decode_mxfp4_block(codes.data() + first / 2, scales[first / 32], block);
    return block[c % 32];
  }
};

Mxfp4Matrix random_mxfp4(int OC, int C, unsigned seed) {
  std::mt19937 gen(seed);
  Mxfp4Matrix m{std::vector<uint8_t>(size_t(OC) * C / 2), std::vector<uint8_t>(size_t(OC) * C / 32)};
  for (uint8_t& b : m.codes) b = static_cast<uint8_t>(gen());
  for (uint8_t& s : m.scales) s = static_cast<uint8_t>(115 + gen() % 16);
  return m;
}

TEST_F(Bf16DotLinear, OverMxfp4WeightsMatchesTheExactProductOfTheDecodedValues) {
  for (const auto [N, C, OC] : {std::array{1, 2880, 9}, std::array{2, 96, 37}, std::array{3, 32, 5},
                                std::array{4, 160, 50}}) {
    const std::vector<uint16_t> inp = random_bf16(size_t(N) * C, 5, 1.0f);
    const Mxfp4Matrix weight = random_mxfp4(OC, C, 6);
    std::vector<float> bias(OC);
    for (int o = 0; o < OC; ++o) bias[o] = 0.25f * static_cast<float>(o - OC / 2);
    std::vector<uint16_t> out(size_t(N) * OC, 0xFFFF);
    bf16_dot_linear(out.data(), inp.data(), weight.matrix(), bias.data(), N, C, OC);
    expect_exact_product(
        out, inp, [&](int o, int c) { return weight.value(o, c, C); }, bias.data(), N, C, OC);
  }
}

// Scales far from a checkpoint's, at the ends of E8M0's range and between: 2^-127 and 2^-126,
// whose rows sum to fp32's subnormals, 2^-60 and 2^113. The kernel sums each block unscaled and
// scales it in fp32 afterwards, so every output is still the exact product to bf16's rounding
// (scaling the bf16 values first would have the instruction flush the smallest products to zero).
TEST_F(Bf16DotLinear, OverMxfp4WeightsWithExtremeScalesMatchesTheExactProduct) {
  const int N = 3, C = 96, OC = 9;
  const std::vector<uint16_t> inp = random_bf16(size_t(N) * C, 11, 1.0f);
  Mxfp4Matrix weight = random_mxfp4(OC, C, 12);
  const int blocks = C / 32;
  for (int b = 0; b < blocks; ++b) {
    weight.scales[size_t(2) * blocks + b] = 0;    // row 2: 2^-127
    weight.scales[size_t(5) * blocks + b] = 67;   // row 5: 2^-60
    weight.scales[size_t(6) * blocks + b] = 240;  // row 6: 2^113
  }
  weight.scales[size_t(8) * blocks + 1] = 1;  // the odd last output, one block at 2^-126
  std::vector<uint16_t> out(size_t(N) * OC, 0xFFFF);
  bf16_dot_linear(out.data(), inp.data(), weight.matrix(), nullptr, N, C, OC);
  // In the subnormals a rounding to bf16 may miss by half its smallest step, 2^-134.
  expect_exact_product(
      out, inp, [&](int o, int c) { return weight.value(o, c, C); }, nullptr, N, C, OC,
      std::ldexp(1.0, -134));
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NE(widen_bf16_bits(out[i]), 0.0) << "at " << i;
}

TEST_F(Bf16DotLinear, OverMxfp4WeightsARowGetsTheSameBitsAloneOrAmongOthers) {
  const int C = 320, OC = 23;
  const Mxfp4Matrix weight = random_mxfp4(OC, C, 8);
  expect_rows_independent(
      [&](uint16_t* out, const uint16_t* inp, int N) {
        bf16_dot_linear(out, inp, weight.matrix(), nullptr, N, C, OC);
      },
      C, OC, 7);
}

TEST_F(Bf16DotLinear, RejectsMxfp4RowsThatAreNotWholeBlocks) {
  const Mxfp4Matrix weight = random_mxfp4(2, 64, 9);
  std::vector<uint16_t> inp(48), out(2);
  EXPECT_THROW(bf16_dot_linear(out.data(), inp.data(), weight.matrix(), nullptr, 1, 48, 2), Error);
}

}  // namespace
}  // namespace switchyard::backend::cpu
