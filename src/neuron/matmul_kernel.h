// The functional core of TensorE: an fp32 matrix product over fp32 copies of the operands.
#pragma once

#include <cstdint>

namespace switchyard::neuron {

// c[m * ldc + n] += sum over k of s[k * lds + m] * v[k * ldv + n], for m < M, n < N, k < K,
// each element accumulated in fp32 in ascending k with fused multiply-adds (products of bf16,
// fp16 and fp8 values are exact in fp32, so only the sums round). Register-blocked for speed: the
// whole GPT-2 step runs on the simulator. Big products share their column strips between OpenMP
// threads; every element is still summed by one thread in the same order, so results do not
// depend on the thread count.
// With `overwrite`, c = the product instead (c's old values are not read: a PSUM accumulation
// group's first matmul).
void matmul_accumulate(float* c, int64_t ldc, const float* s, int64_t lds, const float* v,
                       int64_t ldv, int M, int N, int K, bool overwrite = false);
// The same with bf16 operands (bit patterns), widened exactly to fp32 as they are packed, so the
// simulator multiplies bf16 tiles where they lie in SBUF without an fp32 copy of each.
void matmul_accumulate_bf16(float* c, int64_t ldc, const uint16_t* s, int64_t lds,
                            const uint16_t* v, int64_t ldv, int M, int N, int K,
                            bool overwrite = false);

}  // namespace switchyard::neuron
