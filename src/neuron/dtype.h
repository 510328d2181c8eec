// How the simulated NeuronCore stores element types: exact rounding on every store.
//
// Every store into simulated memory rounds the fp32 result to the destination type with the rules
// of core/dtype.h, so values read back are exactly what the hardware format can hold. Fresh
// memory is filled with all-ones bytes, which reads as NaN in every float type (and as -1 in
// int32, 255 in uint8), so a kernel that reads memory it never wrote gets NaN.
//
// uint8 holds raw bytes: packed MXFP4 codes and E8M0 scales, which DMA copies bit for bit and
// mxfp4_decode reads (an engine reading them as numbers sees 0..255; storing rounds to the
// nearest integer, saturated to 0..255, NaN to 0).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace switchyard::neuron {

using ::switchyard::DType;

// The element types the simulated memories hold: fp32, bf16, fp16, both fp8 formats, int32 and
// uint8.
inline bool is_storable(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
    case DType::kI32:
    case DType::kU8:
      return true;
    default:
      return false;
  }
}

// The value `value` becomes when stored as `dtype` and read back.
float round_to(DType dtype, float value);

// Decodes one element stored at `bytes` / encodes `value` into it (rounding as above). Inline
// with fp32 and bf16 fast paths: every simulated instruction moves its operands through these.
float load_element_slow(DType dtype, const uint8_t* bytes);
// Every fp8 code decoded (index = the byte).
extern const float* const kFp8E4M3Values;
extern const float* const kFp8E5M2Values;
void store_element_slow(DType dtype, uint8_t* bytes, float value);

inline float load_element(DType dtype, const uint8_t* bytes) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, bytes, 4);
    return v;
  }
  if (dtype == DType::kBF16) {
    uint16_t v;
    std::memcpy(&v, bytes, 2);
    return std::bit_cast<float>(static_cast<uint32_t>(v) << 16);
  }
  if (dtype == DType::kF8E4M3) return kFp8E4M3Values[*bytes];
  if (dtype == DType::kF8E5M2) return kFp8E5M2Values[*bytes];
  return load_element_slow(dtype, bytes);
}

inline void store_element(DType dtype, uint8_t* bytes, float value) {
  if (dtype == DType::kF32) {
    std::memcpy(bytes, &value, 4);
    return;
  }
  if (dtype == DType::kBF16) {
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
