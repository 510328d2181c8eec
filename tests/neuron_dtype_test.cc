// Rounding of every simulated dtype against an independent brute-force reference (nearest
// representable value, ties to the even code), plus the documented overflow rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "neuron/dtype.h"

namespace switchyard::neuron {
namespace {

struct Code {
  double value;
  int code;
};

// Every finite non-negative value of a small float format, decoded from first principles.
std::vector<Code> finite_values(int exponent_bits, int mantissa_bits, bool ieee_special) {
  std::vector<Code> out;
  int bias = (1 << (exponent_bits - 1)) - 1;
  int max_field = (1 << exponent_bits) - 1;
  for (int field = 0; field <= max_field; ++field) {
    for (int frac = 0; frac < (1 << mantissa_bits); ++frac) {
      int code = (field << mantissa_bits) | frac;
      if (ieee_special && field == max_field) continue;  // inf / NaN
      if (!ieee_special && field == max_field && frac == (1 << mantissa_bits) - 1) continue;  // NaN
      double v = field == 0 ? std::ldexp(frac, 1 - bias - mantissa_bits)
                            : std::ldexp(frac + (1 << mantissa_bits), field - bias - mantissa_bits);
      out.push_back({v, code});
    }
  }
  return out;
}

// Nearest value with ties to the even code; `overflow` is what lies beyond the largest finite
// value plus half an ulp (ieee: infinity; else saturate).
double reference_round(const std::vector<Code>& values, double x, bool ieee_overflow) {
  double mag = std::fabs(x);
  double max = values.back().value;
  double ulp = max - values[values.size() - 2].value;
  if (ieee_overflow && mag >= max + ulp / 2) return std::copysign(INFINITY, x);
  if (!ieee_overflow && mag >= max) return std::copysign(max, x);
  const Code* best = &values[0];
  for (const Code& c : values) {
    double d = std::fabs(c.value - mag);
    double bd = std::fabs(best->value - mag);
    if (d < bd || (d == bd && (c.code & 1) == 0)) best = &c;
  }
  return std::copysign(best->value, x);
}

TEST(NeuronDtype, Fp8E4m3MatchesBruteForceReference) {
  std::vector<Code> values = finite_values(4, 3, false);
  ASSERT_EQ(values.back().value, 448.0);
  Rng rng(11);
  for (int i = 0; i < 20000; ++i) {
    float x = std::ldexp(rng.uniform() * 2 - 1, static_cast<int>(rng.next_u64() % 24) - 12);
    ASSERT_EQ(round_to(DType::kF8E4M3, x), static_cast<float>(reference_round(values, x, false)))
        << "x = " << x;
  }
  // Exact ties: every midpoint between neighbours goes to the even code.
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    float mid = static_cast<float>((values[i].value + values[i + 1].value) / 2);
    float expect =
        static_cast<float>((values[i].code & 1) == 0 ? values[i].value : values[i + 1].value);
    ASSERT_EQ(round_to(DType::kF8E4M3, mid), expect) << "midpoint " << mid;
  }
}

TEST(NeuronDtype, Fp8E4m3SaturatesAndKeepsNaN) {
  EXPECT_EQ(round_to(DType::kF8E4M3, 448.0f), 448.0f);
  EXPECT_EQ(round_to(DType::kF8E4M3, 470.0f), 448.0f);
  EXPECT_EQ(round_to(DType::kF8E4M3, 1e9f), 448.0f);
  EXPECT_EQ(round_to(DType::kF8E4M3, -INFINITY), -448.0f);
  EXPECT_TRUE(std::isnan(round_to(DType::kF8E4M3, NAN)));
  EXPECT_EQ(round_to(DType::kF8E4M3, std::ldexp(1.0f, -9)), std::ldexp(1.0f, -9));  // min subnormal
  EXPECT_EQ(round_to(DType::kF8E4M3, std::ldexp(1.0f, -10)), 0.0f);  // tie to even (zero)
  EXPECT_EQ(round_to(DType::kF8E4M3, 1.0625f), 1.0f);                // tie 1 | 1.125 -> 1
  EXPECT_EQ(round_to(DType::kF8E4M3, 1.1875f), 1.25f);               // tie 1.125 | 1.25 -> 1.25
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xFF)));  // fresh memory reads as NaN
}

TEST(NeuronDtype, Fp8E5m2MatchesBruteForceReference) {
  std::vector<Code> values = finite_values(5, 2, true);
  ASSERT_EQ(values.back().value, 57344.0);
  Rng rng(12);
  for (int i = 0; i < 20000; ++i) {
    float x = std::ldexp(rng.uniform() * 2 - 1, static_cast<int>(rng.next_u64() % 40) - 20);
    ASSERT_EQ(round_to(DType::kF8E5M2, x), static_cast<float>(reference_round(values, x, true)))
        << "x = " << x;
  }
  EXPECT_EQ(round_to(DType::kF8E5M2, 61439.0f), 57344.0f);
  EXPECT_TRUE(std::isinf(round_to(DType::kF8E5M2, 61440.0f)));  // tie goes to even: infinity
  EXPECT_TRUE(std::isinf(round_to(DType::kF8E5M2, -INFINITY)));
  EXPECT_TRUE(std::isnan(round_to(DType::kF8E5M2, NAN)));
  EXPECT_EQ(round_to(DType::kF8E5M2, std::ldexp(1.0f, -16)), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isnan(fp8_e5m2_to_float(0xFF)));
}

TEST(NeuronDtype, Bf16AndFp16RoundToNearestEven) {
  EXPECT_EQ(round_to(DType::kBF16, 1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(round_to(DType::kBF16, 1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(round_to(DType::kF16, 1.0f + std::ldexp(1.0f, -11)), 1.0f);
  EXPECT_EQ(round_to(DType::kF16, 1.0f + 3 * std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isinf(round_to(DType::kF16, 65520.0f)));
  EXPECT_EQ(round_to(DType::kF16, 65519.0f), 65504.0f);
  // bf16 against the brute-force reference over a range of binades.
  std::vector<Code> values = finite_values(8, 7, true);
  Rng rng(13);
  for (int i = 0; i < 5000; ++i) {
    float x = std::ldexp(rng.uniform() * 2 - 1, static_cast<int>(rng.next_u64() % 40) - 20);
    ASSERT_EQ(round_to(DType::kBF16, x), static_cast<float>(reference_round(values, x, true)));
  }
}

TEST(NeuronDtype, Int32RoundsHalfEvenAndSaturates) {
  EXPECT_EQ(round_to(DType::kI32, 2.5f), 2.0f);
  EXPECT_EQ(round_to(DType::kI32, 3.5f), 4.0f);
  EXPECT_EQ(round_to(DType::kI32, -2.5f), -2.0f);
  EXPECT_EQ(float_to_int32(3e9f), std::numeric_limits<int32_t>::max());
  EXPECT_EQ(float_to_int32(-3e9f), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(float_to_int32(NAN), std::numeric_limits<int32_t>::min());
}

TEST(NeuronDtype, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(parse_dtype("bf16"), DType::kBF16);
  EXPECT_EQ(parse_dtype("fp8"), DType::kF8E4M3);
  EXPECT_EQ(parse_dtype("float8_e5m2"), DType::kF8E5M2);
  EXPECT_EQ(dtype_bytes(DType::kF8E5M2), 1);
  EXPECT_THROW(parse_dtype("fp4"), Error);
}

}  // namespace
}  // namespace switchyard::neuron
