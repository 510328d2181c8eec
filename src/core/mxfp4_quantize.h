// Quantising fp32 values to MXFP4, the block format of the OCP Microscaling (MX) specification
// v1.0 in which gpt-oss publishes its expert weights. Decoding lives with the other dtypes
// (core/dtype.h: decode_mxfp4_block).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace switchyard {

// Quantises 32 finite values into one MXFP4 block: 16 bytes of 4-bit codes (value 2j in the low
// nibble of byte j, value 2j + 1 in the high one) and one E8M0 scale byte.
//
// The MX specification stores a block as one shared scale X and 32 private elements P_i, and the
// block's value i is X * P_i. X is an E8M0 number: a bare power of two, 2^(s - 127) for the byte s
// (s = 255 is reserved for NaN). Each P_i is an FP4 E2M1 number: a sign, two exponent bits and one
// mantissa bit, which can hold 0, 0.5, 1, 1.5, 2, 3, 4 and 6 and their negatives.
//
// Converting a block, the specification takes the largest magnitude in it and sets the shared
// exponent to floor(log2(largest)) minus 2, E2M1's largest exponent (its largest value is 1.5 * 2^2),
// so that the largest value, once divided by X, lies in [4, 8). The exponent is clamped to what E8M0
// can hold, [-127, 127]. Each value divided by X is then rounded to the nearest E2M1 value, a value
// exactly halfway between two going to the one whose mantissa bit is 0 (ties to even); magnitudes
// beyond 6 (a largest value in (6, 8) after scaling) saturate to 6 rather than overflow. The sign is
// kept, so a negative value too small for 0.5 becomes -0. A block of zeros has no largest exponent:
// it takes the smallest scale, 2^-127 (byte 0), and all-zero codes, which decode to zeros.
//
// Throws Error if a value is NaN or infinite (the specification has no finite code for them).
void quantize_mxfp4_block(const float* values, uint8_t* codes, uint8_t* scale);

// A tensor quantised row by row, its rows cut into blocks of 32: the published gpt-oss layout of
// NAME_blocks and NAME_scales for a tensor [..., rows, cols].
struct Mxfp4Tensor {
  std::vector<uint8_t> blocks;  // [..., rows, cols / 32, 16]
  std::vector<uint8_t> scales;  // [..., rows, cols / 32]
};

// Quantises `values`, consecutive rows of `cols` values each, with quantize_mxfp4_block. Throws
// Error naming the tensor `name` when cols is not a positive multiple of 32 or does not divide the
// values, and naming the tensor and the element's row and column when a value is NaN or infinite.
Mxfp4Tensor quantize_mxfp4(const std::string& name, std::span<const float> values, int64_t cols);

}  // namespace switchyard
