// AdamW over large fp32 tensors (or fp32 halves) with non-temporal stores.
//
// The update streams seven arrays through memory (reads p, g, m, v; writes p, m, v), far more than
// any cache holds, so it runs at memory bandwidth. Ordinary stores first read each destination line
// (read-for-ownership); streaming stores skip that, cutting the traffic by three arrays' worth. The
// arithmetic is cpu::adamw_update's, float operation for float operation (that kernel may let the
// compiler fuse multiply-adds, so the two agree to a few ulps, not bit for bit).
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchyard::backend::cpu {

// Returns false (doing nothing) when this build has no AVX2 or the arrays are not 32-byte aligned
// (params_bf16: 16-byte); the caller then uses cpu::adamw_update. params_bf16, when not null,
// receives the updated parameters rounded to bf16 (to nearest even, as float_to_bf16): the weight
// copy bf16 products read, written in the same pass rather than by a second one over params.
bool adamw_update_streaming(float* params, const float* grads, float* m, float* v, size_t N,
                            float learning_rate, float beta1, float beta2, float epsilon,
                            float weight_decay, int step, float grad_scale,
                            uint16_t* params_bf16 = nullptr);

// The same update over parameters held as fp32 halves (core/fp32_halves.h), read and written in
// place: high[N] (the bf16 weights products read) and low[N]. Any alignment (streaming stores
// where every array allows them) and any build (a scalar loop without AVX2); the arithmetic is
// adamw_update_streaming's, so the joined parameters come out bit for bit as its fp32 ones do.
void adamw_update_halves(uint16_t* high, uint16_t* low, const float* grads, float* m, float* v,
                         size_t N, float learning_rate, float beta1, float beta2, float epsilon,
                         float weight_decay, int step, float grad_scale);

}  // namespace switchyard::backend::cpu
