#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace switchyard {

namespace {

struct DTypeInfo {
  DType dtype;
  int bits;
  const char* name;
  const char* nki;
  const char* safetensors;  // nullptr: not a safetensors dtype
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, 32, "fp32", "float32", "F32"},
    {DType::kF64, 64, "fp64", "float64", "F64"},
    {DType::kBF16, 16, "bf16", "bfloat16", "BF16"},
    {DType::kF16, 16, "fp16", "float16", "F16"},
    {DType::kF8E4M3, 8, "fp8_e4m3", "float8_e4m3", "F8_E4M3"},
    {DType::kF8E5M2, 8, "fp8_e5m2", "float8_e5m2", "F8_E5M2"},
    {DType::kMXFP4, 4, "mxfp4", "mxfp4", nullptr},
    {DType::kI32, 32, "int32", "int32", "I32"},
    {DType::kI64, 64, "int64", "int64", "I64"},
    {DType::kU8, 8, "uint8", "uint8", "U8"},
    {DType::kU16, 16, "uint16", "uint16", "U16"},
};

const DTypeInfo& info(DType dtype) {
  for (const DTypeInfo& i : kDTypes) {
    if (i.dtype == dtype) return i;
  }
  fail("unknown dtype code {}", static_cast<int>(dtype));
}

}  // namespace

int dtype_bits(DType dtype) { return info(dtype).bits; }

int64_t dtype_bytes(DType dtype) {
  const int bits = dtype_bits(dtype);
  require(bits % 8 == 0, "{} elements are {} bits, not whole bytes", dtype_name(dtype), bits);
  return bits / 8;
}

size_t storage_bytes(DType dtype, int64_t elements) {
  return static_cast<size_t>((elements * dtype_bits(dtype) + 7) / 8);
}

bool is_float(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kF64:
    case DType::kBF16:
    case DType::kF16:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
    case DType::kMXFP4:
      return true;
    default:
      return false;
  }
}

bool is_fp8(DType dtype) { return dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2; }

const char* dtype_name(DType dtype) { return info(dtype).name; }
const char* nki_dtype_name(DType dtype) { return info(dtype).nki; }

const char* safetensors_dtype_name(DType dtype) {
  const char* name = info(dtype).safetensors;
  require(name != nullptr, "{} has no safetensors dtype (it is stored as U8 blocks and scales)",
          dtype_name(dtype));
  return name;
}

DType dtype_from_safetensors_name(const std::string& name) {
  for (const DTypeInfo& i : kDTypes) {
    if (i.safetensors && name == i.safetensors) return i.dtype;
  }
  fail("unsupported tensor dtype '{}' (expected one of F32, F64, BF16, F16, F8_E4M3, F8_E5M2, I32, "
       "I64, U8, U16)",
       name);
}

DType parse_dtype(const std::string& name) {
  for (const DTypeInfo& i : kDTypes) {
    if (name == i.name || name == i.nki) return i.dtype;
  }
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "fp8" || name == "e4m3") return DType::kF8E4M3;
  if (name == "e5m2") return DType::kF8E5M2;
  if (name == "i32") return DType::kI32;
  fail("unknown dtype '{}' (expected fp32, bf16, fp16, fp8 (e4m3), fp8_e5m2, mxfp4 or int32)", name);
}

float bf16_to_float(uint16_t bits) { return widen_bf16_bits(bits); }

uint16_t float_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // keep it a quiet NaN
  uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);                        // round to nearest even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

namespace {
// Below this many values one thread converts faster than a team can be woken.
constexpr size_t kParallelConversion = size_t{1} << 16;
}  // namespace

void bf16_to_float(const uint16_t* bits, float* values, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelConversion)
  for (size_t i = 0; i < n; ++i) values[i] = widen_bf16_bits(bits[i]);
}

void float_to_bf16(const float* values, uint16_t* bits, size_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelConversion)
  for (size_t i = 0; i < n; ++i) bits[i] = narrow_to_bf16_bits(values[i]);
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

int32_t float_to_int32(float value) {
  if (std::isnan(value)) return std::numeric_limits<int32_t>::min();
  double rounded = std::nearbyint(static_cast<double>(value));
  if (rounded >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (rounded <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(rounded);
}

const float kFp4E2M1Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float e8m0_to_float(uint8_t bits) {
  if (bits == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(bits) - 127);
}

void decode_mxfp4_block(const uint8_t* codes, uint8_t scale, float* out) {
  const float s = e8m0_to_float(scale);
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = kFp4E2M1Values[codes[i] & 0xF] * s;
    out[2 * i + 1] = kFp4E2M1Values[codes[i] >> 4] * s;
  }
}

}  // namespace switchyard
