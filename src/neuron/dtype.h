// Element types of the simulated NeuronCore and their exact rounding rules.
//
// Every store into simulated memory rounds the fp32 result to the destination type with
// round-to-nearest-even, so values read back are exactly what the hardware format can hold:
//   bf16, fp16      core/dtype.h converters (fp16 overflows to inf, keeps subnormals).
//   fp8 e4m3        OCP "e4m3fn": bias 7, no infinities, one NaN pattern per sign (S.1111.111),
//                   largest finite 448, subnormals down to 2^-9. Saturating: finite values and
//                   infinities beyond 448 become +-448; NaN stays NaN.
//   fp8 e5m2        IEEE-like: bias 15, largest finite 57344, infinities; values that round
//                   beyond 57344 become +-inf; subnormals down to 2^-16.
//   int32           nearest integer (ties to even), saturated to the int32 range; NaN becomes
//                   INT32_MIN (the x86 "integer indefinite").
// Fresh memory is filled with all-ones bytes, which reads as NaN in every float type (and as -1
// in int32), so a kernel that reads memory it never wrote gets NaN.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

namespace switchyard::neuron {

enum class Dtype { kF32, kBF16, kF16, kF8E4M3, kF8E5M2, kI32 };

int dtype_bytes(Dtype dtype);
// Lower-case name as NKI spells it ("float32", "bfloat16", "float16", "float8_e4m3",
// "float8_e5m2", "int32").
const char* dtype_name(Dtype dtype);
// Accepts the names above and the short forms "fp32", "f32", "bf16", "fp16", "f16", "fp8" (=
// e4m3), "fp8_e4m3", "fp8_e5m2", "e4m3", "e5m2", "i32"; throws Error naming the unknown dtype.
Dtype parse_dtype(const std::string& name);
bool is_float(Dtype dtype);
bool is_fp8(Dtype dtype);

uint8_t float_to_fp8_e4m3(float value);
float fp8_e4m3_to_float(uint8_t bits);
uint8_t float_to_fp8_e5m2(float value);
float fp8_e5m2_to_float(uint8_t bits);
int32_t float_to_int32(float value);

// The value `value` becomes when stored as `dtype` and read back.
float round_to(Dtype dtype, float value);

// Decodes one element stored at `bytes` / encodes `value` into it (rounding as above). Inline
// with fp32 and bf16 fast paths: every simulated instruction moves its operands through these.
float load_element_slow(Dtype dtype, const uint8_t* bytes);
// Every fp8 code decoded (index = the byte).
extern const float* const kFp8E4M3Values;
extern const float* const kFp8E5M2Values;
void store_element_slow(Dtype dtype, uint8_t* bytes, float value);

inline float load_element(Dtype dtype, const uint8_t* bytes) {
  if (dtype == Dtype::kF32) {
    float v;
    std::memcpy(&v, bytes, 4);
    return v;
  }
  if (dtype == Dtype::kBF16) {
    uint16_t v;
    std::memcpy(&v, bytes, 2);
    return std::bit_cast<float>(static_cast<uint32_t>(v) << 16);
  }
  if (dtype == Dtype::kF8E4M3) return kFp8E4M3Values[*bytes];
  if (dtype == Dtype::kF8E5M2) return kFp8E5M2Values[*bytes];
  return load_element_slow(dtype, bytes);
}

inline void store_element(Dtype dtype, uint8_t* bytes, float value) {
  if (dtype == Dtype::kF32) {
    std::memcpy(bytes, &value, 4);
    return;
  }
  if (dtype == Dtype::kBF16) {
    // Round to nearest even; NaN stays a (quiet) NaN. Same result as core's float_to_bf16.
    uint32_t bits = std::bit_cast<uint32_t>(value);
    uint16_t out = (bits & 0x7FFFFFFF) > 0x7F800000
                       ? static_cast<uint16_t>((bits >> 16) | 0x40)
                       : static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    std::memcpy(bytes, &out, 2);
    return;
  }
  store_element_slow(dtype, bytes, value);
}

}  // namespace switchyard::neuron
