// A few rows of bf16 inputs against bf16 or MXFP4 weights through the CPU's bf16 dot-product
// instruction (AVX-512 BF16's vdpbf16ps): cpu-bf16's decoding product. The inputs are bf16 already
// in bf16 mode, so nothing is widened: a 64-byte load of bf16 weights, or one MXFP4 block decoded
// to bf16 in registers (mxfp4_bf16_decode.h), feeds one instruction per row, and the weights
// stream at memory bandwidth where widening them to fp32 first (the batch-invariant product's way)
// costs more than the stream.
//
// Numbers: a product of two bf16 values is exact in fp32, and the instruction adds a lane's two
// products to its fp32 sum one after the other, each addition rounded as a fused multiply-add's
// would be; inputs and results below fp32's normal range are read and written as zero. A (row,
// output) pair keeps four sums of 16 lanes: the n-th 32 values of c go to sum n % 4, lane l
// taking c = 2l and 2l + 1 of them; the sums are added as (0 + 1) + (2 + 3), then their lanes,
// then the bias. This order differs from the batch-invariant product's, so a result can differ
// from it in fp32's last bits before the rounding to bf16: bf16 mode's tolerance, not fp32's
// exact batch invariance. A row's result does not depend on the other rows. Over MXFP4 weights
// each block's 16 lanes are summed unscaled into a fresh vector, which is then multiplied by the
// block's scale (a power of two: exact) and added to the sum its 32 values go to; the inputs are
// first put in the order a block decodes into most cheaply (mxfp4_bf16_decode.h's lane order), so
// lane l of 128-bit lane L pairs values 8m + L and 8m + 4 + L of the block (l = 4L + m).
#pragma once

#include <cstdint>

namespace switchyard::backend::cpu {

struct WeightMatrix;

// Whether this build has the kernel (compiled for a CPU with AVX-512 BF16).
bool bf16_dot_linear_available();

// out[n, o] = bf16(sum over c of inp[n, c] * weight[o, c] + bias[o]) for inp [N, C] and out
// [N, OC] bf16 (row-major, dense), weight [OC, C] bf16, bias [OC] fp32 or null. Any C >= 0 (a tail
// shorter than 32 values is read through a mask). Throws Error where the build lacks the kernel.
void bf16_dot_linear(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias,
                     int N, int C, int OC);

// The same over weights [OC, C] stored as bf16 or MXFP4 (C a multiple of 32); throws Error for
// another dtype.
void bf16_dot_linear(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                     const float* bias, int N, int C, int OC);

}  // namespace switchyard::backend::cpu
