// Conversions between fp32 and the 16-bit floating-point formats checkpoints use.
//
// bf16 rounds to nearest even (NaN stays NaN); fp16 follows IEEE 754 binary16 with subnormals,
// rounding to nearest even and overflow to infinity.
#pragma once

#include <cstdint>
#include <string>

namespace switchyard {

enum class DType { kF32, kF16, kBF16, kI32, kU16, kI64 };

// Size in bytes of one element.
int dtype_size(DType dtype);
// Name as safetensors writes it ("F32", "F16", "BF16", "I32", "U16", "I64").
std::string dtype_name(DType dtype);
// Parses a safetensors dtype name; throws Error naming the unknown dtype.
DType dtype_from_name(const std::string& name);

float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
float fp16_to_float(uint16_t bits);
uint16_t float_to_fp16(float value);

}  // namespace switchyard
