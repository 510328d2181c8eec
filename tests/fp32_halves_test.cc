// fp32 values held as two 16-bit halves: joining gives every value back bit for bit, and the high
// half is the value's nearest bf16.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/fp32_halves.h"

namespace switchyard {
namespace {

// Every 65,537th bit pattern (a stride prime to 2^16, so every low half and every high half is
// met) and the patterns at the edges: zeros, subnormals, the largest finite values, infinities,
// NaNs, and the ties between two bf16 values.
std::vector<uint32_t> bit_patterns() {
  std::vector<uint32_t> bits;
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 65537) bits.push_back(static_cast<uint32_t>(b));
  for (uint32_t edge : {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F7FFFFFu,
                        0xFF7FFFFFu, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u,
                        0x3F808000u, 0x3F818000u, 0xBF808000u, 0x3F807FFFu, 0x0000FFFFu,
                        0xFFFF7FFFu, 0xFFFFFFFFu, 0x7FFFFFFFu}) {
    bits.push_back(edge);
  }
  return bits;
}

TEST(Fp32Halves, JoiningGivesEveryBitPatternBack) {
  for (uint32_t bits : bit_patterns()) {
    ASSERT_EQ(fp32_bits_from_halves(fp32_high_half(bits), fp32_low_half(bits)), bits) << std::hex << bits;
  }
}

// Nearest: no other bf16 value is closer; ties go away from zero (float_to_bf16's ties go to
// even, so the two agree everywhere else).
TEST(Fp32Halves, HighHalfIsTheNearestBf16) {
  for (uint32_t bits : bit_patterns()) {
    const float x = std::bit_cast<float>(bits);
    if (!std::isfinite(x) || std::abs(x) > 3.0e38f) continue;  // beyond bf16's largest finite
    const uint16_t high = fp32_high_half(bits);
    const double error = std::abs(double(bf16_to_float(high)) - double(x));
    const double other = std::abs(double(bf16_to_float(float_to_bf16(x))) - double(x));
    ASSERT_LE(error, other) << std::hex << bits;
    if (error < other || (bits & 0xFFFF) != 0x8000) {
      ASSERT_EQ(high, float_to_bf16(x)) << std::hex << bits;
    } else {  // a tie: away from zero
      ASSERT_GE(std::abs(bf16_to_float(high)), std::abs(x)) << std::hex << bits;
    }
  }
}

TEST(Fp32Halves, ArraysSplitAndJoinAsTheScalarsDo) {
  const std::vector<uint32_t> bits = bit_patterns();
  std::vector<float> values(bits.size()), back(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) values[i] = std::bit_cast<float>(bits[i]);
  std::vector<uint16_t> high(bits.size()), low(bits.size());
  split_fp32(values.data(), high.data(), low.data(), values.size());
  join_fp32(high.data(), low.data(), back.data(), back.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    ASSERT_EQ(high[i], fp32_high_half(bits[i]));
    ASSERT_EQ(low[i], fp32_low_half(bits[i]));
    ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), bits[i]);
  }
}

}  // namespace
}  // namespace switchyard
