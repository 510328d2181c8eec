// One decoding position of causal self-attention with a KV cache, as a NeuronCore tile program.
//
// The new position's k and v go into the caches with one HBM-to-HBM DMA each; then every
// (sequence, head) pair attends over positions 0..pos. Decoding is one query row per head, so
// heads are batched to keep instruction counts low: a group of up to 64 (b, head) pairs has its
// scores computed into ONE PSUM tile with the pairs on partitions, by accumulating one matmul per
// pair whose stationary operand is that pair's q in its own column and zeros elsewhere (a
// block-diagonal q). The softmax then runs once for the whole group (row max, ScalarE exp with a
// fused row sum), and P @ V is accumulated the same way from a block-diagonal P^T.
//
// Shapes: out [B, C]; qkv [B, 3C] (q | k | v of the new position, each [NH, hs], hs = C / NH
// <= 128); k_cache and v_cache [B*NH*max_T, hs] (the caches' [B, NH, max_T, hs] rows), bf16 or
// fp32. 0 <= pos < max_T. Scores are scaled by 1/sqrt(hs). `compute` (kBF16 or kF32) is the dtype
// of the q/K/V/P tiles; statistics and PSUM accumulators are fp32.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// Writes qkv's k and v into k_cache / v_cache at `pos`, then
// out[b, h] = softmax_{j <= pos}(q_bh . k_bhj / sqrt(hs)) v_bhj.
void attention_decode(NeuronCore& core, const View& out, const View& qkv, const View& k_cache,
                      const View& v_cache, int B, int pos, int max_T, int C, int NH,
                      DType compute);

}  // namespace switchyard::backend::neuron
