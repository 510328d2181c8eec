// cpu-bf16's product of many rows against MXFP4 weights (a prompt's tokens through one expert):
// the weights decoded to bf16 (exact) a panel of rows at a time, each panel multiplied by oneDNN's
// bf16 matmul (bf16_gemm) while it is still in the cache. Decoding a panel costs a few operations
// per 32 weights, once for all the rows, where the product costs a multiply-add per weight and row;
// the fp32 packed GEMM the fp32 mode uses would run at a third of the bf16 rate.
#pragma once

#include <cstdint>

namespace switchyard::backend::cpu {

struct WeightMatrix;

// out[N, OC] = bf16(inp[N, C] @ weight[OC, C]^T + bias[OC]) for inp and out bf16 (row-major,
// dense), weight MXFP4 (C a multiple of 32, with scales), bias fp32 or null. Any N >= 0; C > 0.
// Throws Error for weights in another dtype.
void mxfp4_bf16_gemm(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                     const float* bias, int N, int C, int OC);

// Rows [first, first + rows) of MXFP4 weights [OC, C] as bf16 values, row-major into out[rows, C]:
// each value exactly the E2M1 value times its block's scale.
void decode_mxfp4_rows_to_bf16(uint16_t* out, const WeightMatrix& weight, int first, int rows,
                               int C);

}  // namespace switchyard::backend::cpu
