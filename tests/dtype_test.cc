// The one dtype enum: names, sizes, and MXFP4 decoding against the OCP Microscaling rules worked
// out independently here (tests/mxfp4_quantize_test.cc checks the encoding).
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"

namespace switchyard {
namespace {

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::kF32, DType::kF64, DType::kBF16, DType::kF16, DType::kF8E4M3, DType::kF8E5M2,
                  DType::kMXFP4, DType::kI32, DType::kI64, DType::kU8, DType::kU16}) {
    EXPECT_EQ(parse_dtype(dtype_name(d)), d) << dtype_name(d);
    EXPECT_EQ(parse_dtype(nki_dtype_name(d)), d) << nki_dtype_name(d);
    if (d != DType::kMXFP4) {
      EXPECT_EQ(dtype_from_safetensors_name(safetensors_dtype_name(d)), d);
    }
  }
  EXPECT_EQ(parse_dtype("fp8"), DType::kF8E4M3);
  EXPECT_THROW(parse_dtype("fp4"), Error);
  EXPECT_THROW(safetensors_dtype_name(DType::kMXFP4), Error);
  EXPECT_THROW(dtype_from_safetensors_name("C64"), Error);
}

TEST(DType, Sizes) {
  EXPECT_EQ(dtype_bytes(DType::kF32), 4);
  EXPECT_EQ(dtype_bytes(DType::kBF16), 2);
  EXPECT_EQ(dtype_bytes(DType::kF8E5M2), 1);
  EXPECT_EQ(dtype_bytes(DType::kI64), 8);
  EXPECT_THROW(dtype_bytes(DType::kMXFP4), Error);
  EXPECT_EQ(dtype_bits(DType::kMXFP4), 4);
  EXPECT_EQ(dtype_block_elements(DType::kMXFP4), 32);
  EXPECT_EQ(storage_bytes(DType::kMXFP4, 2880 * 32), 2880u * 16);
  EXPECT_EQ(storage_bytes(DType::kBF16, 3), 6u);
  EXPECT_TRUE(is_float(DType::kMXFP4));
  EXPECT_FALSE(is_float(DType::kI32));
}

// E2M1 from its definition: 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit; exponent field
// 0 is subnormal (0.m x 2^0).
float e2m1_from_bits(int code) {
  const int sign = (code >> 3) & 1, exponent = (code >> 1) & 3, mantissa = code & 1;
  const float magnitude = exponent == 0 ? 0.5f * mantissa
                                        : std::ldexp(1.0f + 0.5f * mantissa, exponent - 1);
  return sign ? -magnitude : magnitude;
}

TEST(DType, Fp4E2M1Table) {
  for (int code = 0; code < 16; ++code) {
    EXPECT_EQ(kFp4E2M1Values[code], e2m1_from_bits(code)) << code;
    EXPECT_EQ(std::signbit(kFp4E2M1Values[code]), code >= 8) << code;
  }
}

TEST(DType, E8M0Scale) {
  EXPECT_EQ(e8m0_to_float(127), 1.0f);
  EXPECT_EQ(e8m0_to_float(128), 2.0f);
  EXPECT_EQ(e8m0_to_float(120), 1.0f / 128);
  EXPECT_EQ(e8m0_to_float(0), std::ldexp(1.0f, -127));
  EXPECT_TRUE(std::isnan(e8m0_to_float(255)));
}

TEST(DType, DecodesMxfp4BlocksLowNibbleFirst) {
  uint8_t codes[16];
  for (int i = 0; i < 16; ++i) codes[i] = static_cast<uint8_t>((i & 0xF) | ((15 - i) << 4));
  float out[32];
  decode_mxfp4_block(codes, 125, out);  // scale 2^-2
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(out[2 * i], e2m1_from_bits(i) * 0.25f) << i;
    EXPECT_EQ(out[2 * i + 1], e2m1_from_bits(15 - i) * 0.25f) << i;
  }
}

// The bulk conversions (parallel, vectorised) give the scalar ones' bits: ties to even, NaN kept
// a quiet NaN, infinities and the largest finite values at the rounding edge.
TEST(DType, BulkBf16ConversionsMatchTheScalarOnes) {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.5f, INFINITY, -INFINITY, NAN, 3.4e38f,
                               -3.4e38f, 1e-40f, 1.00390625f /* a tie */, 1.01171875f};
  for (int i = 0; i < 200000; ++i) values.push_back(std::ldexp(float(i % 997) - 498.0f, i % 60 - 30));
  std::vector<uint16_t> bits(values.size());
  float_to_bf16(values.data(), bits.data(), values.size());
  std::vector<float> back(values.size());
  bf16_to_float(bits.data(), back.data(), bits.size());
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(bits[i], float_to_bf16(values[i])) << values[i];
    if (std::isnan(values[i])) {
      EXPECT_TRUE(std::isnan(back[i]));
    } else {
      ASSERT_EQ(back[i], bf16_to_float(bits[i])) << values[i];
    }
  }
}

}  // namespace
}  // namespace switchyard
