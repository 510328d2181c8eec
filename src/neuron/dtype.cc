#include "neuron/dtype.h"

#include <array>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::neuron {

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

// Nearest integer (ties to even), saturated to 0..255; NaN becomes 0.
uint8_t float_to_uint8(float value) {
  if (!(value > 0.0f)) return 0;
  if (value >= 255.0f) return 255;
  return static_cast<uint8_t>(std::nearbyint(value));
}

}  // namespace

const float* const kFp8E4M3Values = decode_table<fp8_e4m3_to_float>();
const float* const kFp8E5M2Values = decode_table<fp8_e5m2_to_float>();

float load_element_slow(DType dtype, const uint8_t* bytes) {
  switch (dtype) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, bytes, 4);
      return v;
    }
    case DType::kBF16: {
      uint16_t v;
      std::memcpy(&v, bytes, 2);
      return bf16_to_float(v);
    }
    case DType::kF16: {
      uint16_t v;
      std::memcpy(&v, bytes, 2);
      return fp16_to_float(v);
    }
    case DType::kF8E4M3:
      return fp8_e4m3_to_float(*bytes);
    case DType::kF8E5M2:
      return fp8_e5m2_to_float(*bytes);
    case DType::kI32: {
      int32_t v;
      std::memcpy(&v, bytes, 4);
      return static_cast<float>(v);
    }
    case DType::kU8:
      return static_cast<float>(*bytes);
    default:
      fail("the simulated NeuronCore has no {} memory", nki_dtype_name(dtype));
  }
}

void store_element_slow(DType dtype, uint8_t* bytes, float value) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(bytes, &value, 4);
      return;
    case DType::kBF16: {
      uint16_t v = float_to_bf16(value);
      std::memcpy(bytes, &v, 2);
      return;
    }
    case DType::kF16: {
      uint16_t v = float_to_fp16(value);
      std::memcpy(bytes, &v, 2);
      return;
    }
    case DType::kF8E4M3:
      *bytes = float_to_fp8_e4m3(value);
      return;
    case DType::kF8E5M2:
      *bytes = float_to_fp8_e5m2(value);
      return;
    case DType::kI32: {
      int32_t v = float_to_int32(value);
      std::memcpy(bytes, &v, 4);
      return;
    }
    case DType::kU8:
      *bytes = float_to_uint8(value);
      return;
    default:
      fail("the simulated NeuronCore has no {} memory", nki_dtype_name(dtype));
  }
}

float round_to(DType dtype, float value) {
  uint8_t bytes[4];
  store_element(dtype, bytes, value);
  return load_element(dtype, bytes);
}

}  // namespace switchyard::neuron
