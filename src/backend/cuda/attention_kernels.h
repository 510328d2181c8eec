// Causal multi-head self-attention on NVIDIA GPUs: a flash-style forward pass and its backward
// pass, which never hold the T x T score matrix in memory, and one-position decoding over a KV
// cache.
//
// Layout (backend/backend.h): qkv[B,T,3C] holds q | k | v side by side per position, each [NH, hs]
// with hs = C / NH (Hugging Face GPT-2 order), so q[b,t,h,i] = qkv[(b*T+t)*3C + h*hs + i], k is at
// +C and v at +2C. out[B,T,C] holds head h's output at columns h*hs .. h*hs+hs-1. Scores are scaled
// by 1/sqrt(hs) and causal (position t attends to 0..t).
//
// Act is the activation storage type, float or bf16; arithmetic is fp32 in registers (inputs are
// converted on load, outputs rounded to Act on store). All pointers are device pointers; only
// element alignment is assumed, and outputs must not overlap inputs. Every function queues its
// kernels on `stream` and returns; a launch the GPU refuses throws Error (check_launch).
//
// For bf16 with hs a multiple of 16 (up to 128 forward, 64 backward) the forward and backward
// passes run on tensor cores (mma.sync, fp32 accumulation) when the tensors they read and write
// start 16-byte aligned; otherwise, and for fp32, they run fp32 SIMT kernels. Keep activations
// 16-byte aligned to get the fast path.
//
// Preconditions, checked by the caller (CudaBackend) rather than here: B, T >= 0 (zero does
// nothing), NH >= 1, C % NH == 0 and 1 <= C / NH <= kAttentionMaxHeadSize.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// The largest head size the kernels support (GPT-2 uses 64).
inline constexpr int kAttentionMaxHeadSize = 128;

// out = softmax(mask(q k^T / sqrt(hs))) v, per (batch, head). lse[B,NH,T] (fp32) receives each
// row's log-sum-exp of the scaled scores, natural log (lse = max + log(sum exp(s - max))), which
// attention_backward uses to recompute the probabilities.
template <typename Act>
void attention_forward(Act* out, float* lse, const Act* qkv, int B, int T, int C, int NH,
                       cudaStream_t stream);

// Bytes of device workspace attention_backward needs: B*NH*T floats for the row dot products
// D = rowsum(dout * out).
size_t attention_backward_workspace_bytes(int B, int T, int NH);

// dqkv[B,T,3C] += gradient of the loss with respect to qkv, given dout[B,T,C] (the gradient of
// out), and out[B,T,C] and lse from attention_forward on the same qkv. ACCUMULATES into dqkv.
// `workspace` holds attention_backward_workspace_bytes(B, T, NH) bytes (contents need not be
// initialised; overwritten). Deterministic: no atomics, so equal inputs give bit-identical results.
template <typename Act>
void attention_backward(Act* dqkv, void* workspace, const Act* dout, const Act* out,
                        const Act* qkv, const float* lse, int B, int T, int C, int NH,
                        cudaStream_t stream);

// One decoding position for B sequences: qkv[B,3C] is the new position's projection. Writes its
// k and v into k_cache and v_cache ([B, NH, max_T, hs]) at `pos` (0 <= pos < max_T), then
// attends q over positions 0..pos of the cache and writes out[B,C].
template <typename Act>
void attention_decode(Act* out, const Act* qkv, Act* k_cache, Act* v_cache, int B, int pos,
                      int max_T, int C, int NH, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
