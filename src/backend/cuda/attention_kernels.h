// Causal self-attention on NVIDIA GPUs: a flash-style forward pass and its backward pass, which
// never hold the T x T score matrix in memory, and one-position decoding over a KV cache.
//
// Two forms. GPT-2's (the functions over qkv): full causal multi-head attention over one packed
// projection, with tensor-core paths. Any ops::AttentionSpec (the functions over AttentionViews):
// q, k, v, out as strided views, grouped-query heads, a sliding window and sinks, on the SIMT
// kernels. Both keep one log-sum-exp per query row and head for the backward pass.
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
// nothing), NH >= 1, C % NH == 0 and 1 <= C / NH <= kAttentionMaxHeadSize; for the views, heads a
// positive multiple of kv_heads and 1 <= head_dim <= kAttentionMaxHeadSize.
#pragma once

#include <cstddef>
#include <cstdint>

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

// Where the operands of attention over windows are and how the heads and the mask are shaped
// (ops::Attention): batch windows of seq rows; q [batch * seq, heads, head_dim] and k, v
// [batch * seq, kv_heads, head_dim] with rows ldq, ldk, ldv elements apart (dq, dk, dv are laid
// out the same), out and dout [batch * seq, heads * head_dim] with rows ldo and ld_dout apart.
// Query head h reads key-value head h / (heads / kv_heads); a query at position t sees keys
// (t - window, t] (all of [0, t] with window 0).
struct AttentionViews {
  int batch = 0, seq = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;
  int64_t ldq = 0, ldk = 0, ldv = 0, ldo = 0, ld_dout = 0;
  float scale = 0;  // scores are q.k * scale
};

// out = softmax(mask(scale q k^T)) v per (window, head), the softmax's denominator also holding
// exp(sinks[h]) when sinks (fp32 [heads]) is not null; lse[batch, heads, seq] gets each row's
// log-sum-exp, sink included.
template <typename Act>
void attention_forward(Act* out, float* lse, const Act* q, const Act* k, const Act* v,
                       const float* sinks, const AttentionViews& views, cudaStream_t stream);

// dq, dk, dv ACCUMULATE the gradients of that forward pass given dout, from its out and lse;
// dsinks[heads] ACCUMULATES the sinks' gradient when sinks and dsinks are not null. `workspace`
// holds attention_backward_workspace_bytes(batch, seq, heads) bytes. A key-value head sums the
// gradients of its group's query heads in one thread per key, in head order: deterministic.
template <typename Act>
void attention_backward(Act* dq, Act* dk, Act* dv, float* dsinks, void* workspace,
                        const Act* dout, const Act* out, const Act* q, const Act* k, const Act* v,
                        const float* sinks, const float* lse, const AttentionViews& views,
                        cudaStream_t stream);

// One decoding position for B sequences: qkv[B,3C] is the new position's projection. Writes its
// k and v into k_cache and v_cache ([B, NH, max_T, hs]) at `pos` (0 <= pos < max_T), then
// attends q over positions 0..pos of the cache and writes out[B,C].
template <typename Act>
void attention_decode(Act* out, const Act* qkv, Act* k_cache, Act* v_cache, int B, int pos,
                      int max_T, int C, int NH, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
