#include "core/dtype.h"

#include <bit>
#include <cmath>

#include "core/error.h"

namespace switchyard {

int dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kU16: return 2;
    case DType::kI64: return 8;
  }
  return 0;
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI32: return "I32";
    case DType::kU16: return "U16";
    case DType::kI64: return "I64";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "I32") return DType::kI32;
  if (name == "U16") return DType::kU16;
  if (name == "I64") return DType::kI64;
  fail("unsupported tensor dtype '{}' (expected one of F32, F16, BF16, I32, U16, I64)", name);
}

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t float_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // keep it a quiet NaN
  uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);                        // round to nearest even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float fp16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0) {
    // Zero or subnormal: value = mantissa * 2^-24.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000 | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t float_to_fp16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t abs_bits = bits & 0x7FFFFFFF;
  if (abs_bits >= 0x7F800000) {  // inf or NaN
    return sign | 0x7C00 | (abs_bits > 0x7F800000 ? 0x200 : 0);
  }
  if (abs_bits >= 0x477FF000) return sign | 0x7C00;  // rounds above 65504: overflow to inf
  if (abs_bits < 0x38800000) {
    // Result is subnormal (or zero) in fp16: scale so the integer part is the fp16 mantissa, then
    // round to nearest even with the float unit's own rounding.
    float magnitude = std::bit_cast<float>(abs_bits);
    float scaled = magnitude * 16777216.0f;  // 2^24
    uint32_t mantissa = static_cast<uint32_t>(std::nearbyint(scaled));
    return sign | static_cast<uint16_t>(mantissa);
  }
  uint32_t exponent = (abs_bits >> 23) - 112;
  uint32_t mantissa = abs_bits & 0x7FFFFF;
  uint32_t half = (exponent << 10) | (mantissa >> 13);
  uint32_t rest = mantissa & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half += 1;  // may carry into the exponent
  return sign | static_cast<uint16_t>(half);
}

}  // namespace switchyard
