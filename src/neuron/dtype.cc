#include "neuron/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::neuron {

int dtype_bytes(Dtype dtype) {
  switch (dtype) {
    case Dtype::kF32:
      return 4;
    case Dtype::kBF16:
      return 2;
    case Dtype::kF16:
      return 2;
    case Dtype::kF8E4M3:
      return 1;
    case Dtype::kF8E5M2:
      return 1;
    case Dtype::kI32:
      return 4;
  }
  return 0;
}

const char* dtype_name(Dtype dtype) {
  switch (dtype) {
    case Dtype::kF32:
      return "float32";
    case Dtype::kBF16:
      return "bfloat16";
    case Dtype::kF16:
      return "float16";
    case Dtype::kF8E4M3:
      return "float8_e4m3";
    case Dtype::kF8E5M2:
      return "float8_e5m2";
    case Dtype::kI32:
      return "int32";
  }
  return "?";
}

Dtype parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32" || name == "f32") return Dtype::kF32;
  if (name == "bfloat16" || name == "bf16") return Dtype::kBF16;
  if (name == "float16" || name == "fp16" || name == "f16") return Dtype::kF16;
  if (name == "float8_e4m3" || name == "fp8" || name == "fp8_e4m3" || name == "e4m3")
    return Dtype::kF8E4M3;
  if (name == "float8_e5m2" || name == "fp8_e5m2" || name == "e5m2") return Dtype::kF8E5M2;
  if (name == "int32" || name == "i32") return Dtype::kI32;
  fail("unknown dtype '{}' (expected fp32, bf16, fp16, fp8 (e4m3), fp8_e5m2 or int32)", name);
}

bool is_float(Dtype dtype) { return dtype != Dtype::kI32; }
bool is_fp8(Dtype dtype) { return dtype == Dtype::kF8E4M3 || dtype == Dtype::kF8E5M2; }

namespace {

// Rounds |value| (finite, non-negative) to a binary format with `mantissa_bits` stored fraction
// bits and minimum normal exponent `min_exponent`, returning the encoding without sign, where
// the exponent field is biased by `bias`. Overflow is left to the caller: the returned code may
// exceed the largest finite encoding.
uint32_t encode_small_float(float magnitude, int mantissa_bits, int min_exponent, int bias) {
  if (magnitude == 0.0f) return 0;
  int exponent;
  std::frexp(magnitude, &exponent);  // magnitude = f * 2^exponent, f in [0.5, 1)
  exponent -= 1;                     // magnitude = 1.x * 2^exponent
  if (exponent < min_exponent) exponent = min_exponent;  // subnormal: fixed quantum
  // Quantum (unit in the last place) for this binade; scaling by a power of two is exact, and
  // nearbyint rounds to nearest even under the default rounding mode.
  float scaled = std::ldexp(magnitude, mantissa_bits - exponent);
  uint32_t q = static_cast<uint32_t>(std::nearbyint(scaled));  // in [0, 2^(m+1)]
  // q counts quanta of 2^(exponent - m). Normal numbers have q in [2^m, 2^(m+1)); rounding up to
  // 2^(m+1) moves into the next binade, which the arithmetic below absorbs.
  uint32_t implicit = 1u << mantissa_bits;
  if (exponent == min_exponent && q < implicit) return q;  // subnormal (exponent field 0)
  uint32_t field = static_cast<uint32_t>(exponent + bias);
  return (field << mantissa_bits) + (q - implicit);  // carry from q == 2*implicit bumps field
}

float decode_small_float(uint32_t code, int mantissa_bits, int bias) {
  uint32_t field = code >> mantissa_bits;
  uint32_t fraction = code & ((1u << mantissa_bits) - 1);
  if (field == 0) return std::ldexp(static_cast<float>(fraction), 1 - bias - mantissa_bits);
  return std::ldexp(static_cast<float>(fraction | (1u << mantissa_bits)),
                    static_cast<int>(field) - bias - mantissa_bits);
}

}  // namespace

uint8_t float_to_fp8_e4m3(float value) {
  uint8_t sign = std::signbit(value) ? 0x80 : 0;
  if (std::isnan(value)) return sign | 0x7F;
  constexpr uint32_t kMaxFinite = 0x7E;  // 1.110 * 2^8 = 448
  float magnitude = std::fabs(value);
  if (std::isinf(magnitude)) return sign | kMaxFinite;  // saturate (no infinities in e4m3fn)
  uint32_t code = encode_small_float(magnitude, 3, -6, 7);
  if (code > kMaxFinite) code = kMaxFinite;  // saturate instead of landing on the NaN code
  return sign | static_cast<uint8_t>(code);
}

float fp8_e4m3_to_float(uint8_t bits) {
  float sign = (bits & 0x80) ? -1.0f : 1.0f;
  uint32_t code = bits & 0x7F;
  if (code == 0x7F) return std::numeric_limits<float>::quiet_NaN();
  return sign * decode_small_float(code, 3, 7);
}

uint8_t float_to_fp8_e5m2(float value) {
  uint8_t sign = std::signbit(value) ? 0x80 : 0;
  if (std::isnan(value)) return sign | 0x7E;
  constexpr uint32_t kInfinity = 0x7C;
  float magnitude = std::fabs(value);
  if (std::isinf(magnitude)) return sign | kInfinity;
  uint32_t code = encode_small_float(magnitude, 2, -14, 15);
  if (code > kInfinity) code = kInfinity;  // rounds beyond 57344: overflow to infinity
  return sign | static_cast<uint8_t>(code);
}

float fp8_e5m2_to_float(uint8_t bits) {
  float sign = (bits & 0x80) ? -1.0f : 1.0f;
  uint32_t code = bits & 0x7F;
  if (code == 0x7C) return sign * std::numeric_limits<float>::infinity();
  if (code > 0x7C) return std::numeric_limits<float>::quiet_NaN();
  return sign * decode_small_float(code, 2, 15);
}

namespace {

template <float (*Decode)(uint8_t)>
const float* decode_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = Decode(static_cast<uint8_t>(i));
    return t;
  }();
  return table.data();
}

}  // namespace

const float* const kFp8E4M3Values = decode_table<fp8_e4m3_to_float>();
const float* const kFp8E5M2Values = decode_table<fp8_e5m2_to_float>();

int32_t float_to_int32(float value) {
  if (std::isnan(value)) return std::numeric_limits<int32_t>::min();
  double rounded = std::nearbyint(static_cast<double>(value));
  if (rounded >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (rounded <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(rounded);
}

float load_element_slow(Dtype dtype, const uint8_t* bytes) {
  switch (dtype) {
    case Dtype::kF32: {
      float v;
      std::memcpy(&v, bytes, 4);
      return v;
    }
    case Dtype::kBF16: {
      uint16_t v;
      std::memcpy(&v, bytes, 2);
      return bf16_to_float(v);
    }
    case Dtype::kF16: {
      uint16_t v;
      std::memcpy(&v, bytes, 2);
      return fp16_to_float(v);
    }
    case Dtype::kF8E4M3:
      return fp8_e4m3_to_float(*bytes);
    case Dtype::kF8E5M2:
      return fp8_e5m2_to_float(*bytes);
    case Dtype::kI32: {
      int32_t v;
      std::memcpy(&v, bytes, 4);
      return static_cast<float>(v);
    }
  }
  return 0.0f;
}

void store_element_slow(Dtype dtype, uint8_t* bytes, float value) {
  switch (dtype) {
    case Dtype::kF32:
      std::memcpy(bytes, &value, 4);
      return;
    case Dtype::kBF16: {
      uint16_t v = float_to_bf16(value);
      std::memcpy(bytes, &v, 2);
      return;
    }
    case Dtype::kF16: {
      uint16_t v = float_to_fp16(value);
      std::memcpy(bytes, &v, 2);
      return;
    }
    case Dtype::kF8E4M3:
      *bytes = float_to_fp8_e4m3(value);
      return;
    case Dtype::kF8E5M2:
      *bytes = float_to_fp8_e5m2(value);
      return;
    case Dtype::kI32: {
      int32_t v = float_to_int32(value);
      std::memcpy(bytes, &v, 4);
      return;
    }
  }
}

float round_to(Dtype dtype, float value) {
  uint8_t bytes[4];
  store_element(dtype, bytes, value);
  return load_element(dtype, bytes);
}

}  // namespace switchyard::neuron
