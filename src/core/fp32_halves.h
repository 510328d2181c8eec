// fp32 values held as two 16-bit halves, for mixed-precision training's master weights.
//
// bf16 products want bf16 weights and AdamW wants exact fp32 ones. Keeping both (fp32 masters and
// a bf16 copy) costs 6 bytes a parameter; the halves cost 4, as fp32 alone does. The high half is
// the value rounded to bf16, to nearest with ties away from zero, so an array of high halves is
// the bf16 weight array products read as it is. The low half is the value's low 16 bits: read as
// a signed number, it is what the rounding took away (|x - high| <= half a bf16 ulp), so
// (high << 16) + int16(low) gives back the fp32 bits exactly, in wrapping 32-bit arithmetic.
//
// Rounding ties away from zero rather than to even (as float_to_bf16 does) is what makes the
// difference fit 16 signed bits: it lies in [-0x8000, 0x7FFF]. A finite value within half an ulp
// of bf16's largest rounds to infinity in the high half (its low half still restores it), and a NaN
// whose top fifteen mantissa bits are all ones wraps to a zero high half; neither is a weight.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace switchyard {

constexpr uint16_t fp32_high_half(uint32_t bits) {
  return static_cast<uint16_t>((bits + 0x8000u) >> 16);
}
constexpr uint16_t fp32_low_half(uint32_t bits) { return static_cast<uint16_t>(bits); }
constexpr uint32_t fp32_bits_from_halves(uint16_t high, uint16_t low) {
  return (static_cast<uint32_t>(high) << 16) +
         static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(low)));
}
inline float fp32_from_halves(uint16_t high, uint16_t low) {
  return std::bit_cast<float>(fp32_bits_from_halves(high, low));
}

// high[i], low[i] = the halves of values[i], and back, over n values.
void split_fp32(const float* values, uint16_t* high, uint16_t* low, size_t n);
void join_fp32(const uint16_t* high, const uint16_t* low, float* values, size_t n);

}  // namespace switchyard
