// Element types: the one dtype enum of the code base, its names, and exact conversions to and from
// fp32.
//
// Rounding, for every conversion from fp32:
//   bf16, fp16      round to nearest even; NaN stays NaN. fp16 follows IEEE 754 binary16 with
//                   subnormals and overflow to infinity.
//   fp8 e4m3        OCP "e4m3fn": bias 7, no infinities, one NaN pattern per sign (S.1111.111),
//                   largest finite 448, subnormals down to 2^-9. Saturating: finite values and
//                   infinities beyond 448 become +-448; NaN stays NaN.
//   fp8 e5m2        IEEE-like: bias 15, largest finite 57344, infinities; values that round
//                   beyond 57344 become +-inf; subnormals down to 2^-16.
//   int32           nearest integer (ties to even), saturated; NaN becomes INT32_MIN.
// MXFP4 (OCP Microscaling, FP4 E2M1 elements) is a block format: each block of 32 consecutive
// elements of a row is 16 bytes of 4-bit codes (low nibble first) plus one E8M0 scale byte
// (2^(s - 127)) kept in a separate array. Its values are decoded exactly; core/mxfp4_quantize.h
// encodes them.
#pragma once

#include <bit>

#include <cstddef>
#include <cstdint>
#include <string>

namespace switchyard {

enum class DType : uint8_t {
  kF32,
  kF64,    // statistics kept on a device (a step's loss sum, the gradients' sum of squares)
  kBF16,
  kF16,
  kF8E4M3,
  kF8E5M2,
  kMXFP4,  // block format: 32 FP4 E2M1 codes in 16 bytes, plus one E8M0 scale byte per block
  kI32,
  kI64,
  kU8,
  kU16,
};

// Elements that share one scale in a block format (32 for MXFP4), 1 otherwise.
constexpr int64_t dtype_block_elements(DType dtype) { return dtype == DType::kMXFP4 ? 32 : 1; }
// Bits of one element's value (4 for MXFP4, not counting its block's scale).
int dtype_bits(DType dtype);
// Bytes of one element; throws Error for MXFP4, whose elements are half a byte (use
// storage_bytes).
int64_t dtype_bytes(DType dtype);
// Bytes that `elements` values occupy (for MXFP4: the 4-bit codes only, not the scales).
size_t storage_bytes(DType dtype, int64_t elements);
bool is_float(DType dtype);
bool is_fp8(DType dtype);

// Short name for messages and flags: "fp32", "fp64", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2",
// "mxfp4", "int32", "int64", "uint8", "uint16".
const char* dtype_name(DType dtype);
// NKI's spelling, for the simulator's traces: "float32", "bfloat16", "float16", "float8_e4m3",
// "float8_e5m2", "int32", ...
const char* nki_dtype_name(DType dtype);
// Safetensors' spelling: "F32", "BF16", "F16", "F8_E4M3", "F8_E5M2", "I32", "I64", "U8", "U16".
// Throws Error for MXFP4, which safetensors stores as two U8 tensors (blocks and scales).
const char* safetensors_dtype_name(DType dtype);
// Parses a safetensors dtype name; throws Error naming the unknown dtype.
DType dtype_from_safetensors_name(const std::string& name);
// Parses a flag's dtype: the short names, NKI's names, and "f32", "f16", "fp8" (= e4m3), "e4m3",
// "e5m2", "i32". Throws Error naming the unknown dtype.
DType parse_dtype(const std::string& name);

float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);
// The same two conversions inline and without a branch, for loops that must vectorise (the float
// rounded to nearest even; a NaN stays a quiet NaN).
inline float widen_bf16_bits(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
inline uint16_t narrow_to_bf16_bits(float value) {
  const uint32_t b = std::bit_cast<uint32_t>(value);
  const uint32_t rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16;
  const uint32_t quiet = (b >> 16) | 0x40;
  return static_cast<uint16_t>((b & 0x7FFFFFFF) > 0x7F800000 ? quiet : rounded);
}
// n values at once, rounded as above, split across OpenMP threads when there are many (staging
// and casting whole activations).
void bf16_to_float(const uint16_t* bits, float* values, size_t n);
void float_to_bf16(const float* values, uint16_t* bits, size_t n);
float fp16_to_float(uint16_t bits);
uint16_t float_to_fp16(float value);
uint8_t float_to_fp8_e4m3(float value);
float fp8_e4m3_to_float(uint8_t bits);
uint8_t float_to_fp8_e5m2(float value);
float fp8_e5m2_to_float(uint8_t bits);
int32_t float_to_int32(float value);

// The 16 FP4 E2M1 values (index = the 4-bit code: sign in bit 3): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and
// their negatives.
extern const float kFp4E2M1Values[16];
// An E8M0 scale byte as a power of two, 2^(bits - 127); 0xFF is NaN.
float e8m0_to_float(uint8_t bits);
// Decodes one MXFP4 block: 16 bytes of codes (low nibble first) and its scale, into out[32].
void decode_mxfp4_block(const uint8_t* codes, uint8_t scale, float* out);

}  // namespace switchyard
