// Mixture-of-experts CUDA kernels other than the expert products (ops::TopKRouting,
// ops::GroupByExpert, ops::ClampedSwiglu, ops::ExpertCombine, ops::RouterLoadStats and their
// backward passes), the CPU's moe_kernels.h on the GPU.
//
// A = N * k assignments; assignment a = n * k + j is row n's j-th choice. Grouped order lists the
// assignments by expert, and within an expert by assignment (ops.h).
//
// Act is the activation storage type (float or bf16); routing weights and their gradients are
// fp32, the load statistics fp64, ids and positions int32; arithmetic is fp32 (fp64 for the
// statistics' sums). No kernel uses floating-point atomics: every result is repeatable.
//
// Expert ids and grouped positions are device data. The CPU backend range-checks them; here that
// would mean waiting for the device, so they are the caller's to get right (TopKRouting's and
// GroupByExpert's own outputs always are), and the kernels stay inside their operands when they
// are not: the routing backward pass skips an id outside [0, E); grouping puts assignments with
// such ids after every expert's (offsets[E] then counts the others, less than A); combining gives
// NaN rows for positions outside [0, A). Positions must be a permutation, as GroupByExpert makes
// them (two equal positions would make ExpertCombineBackward's writes race).
//
// Every launcher queues its kernels on `stream`, launches nothing for empty sizes, and throws
// Error (check_launch) if a launch is refused.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// The most choices per row the routing kernel keeps (in registers).
inline constexpr int kMaxTopK = 32;

// For each row of logits[N,E]: expert_ids[n, :k] = the k largest logits' experts, largest first,
// the lower expert first among equal logits; weights[n, :k] = softmax over those k logits. The
// CPU kernel's insertion, step for step, so that both choose the same experts (a NaN logit never
// displaces a chosen one). 1 <= k <= min(E, kMaxTopK).
template <typename Act>
void topk_routing(int32_t* expert_ids, float* weights, const Act* logits, int N, int E, int k,
                  cudaStream_t stream);

// dlogits[n, expert_ids[n, j]] ACCUMULATES weights[n, j] * (dweights[n, j] - sum_i weights[n, i] *
// dweights[n, i]).
template <typename Act>
void topk_routing_backward(Act* dlogits, const float* dweights, const float* weights,
                           const int32_t* expert_ids, int N, int E, int k, cudaStream_t stream);

// Scratch bytes group_by_expert needs for A assignments over E experts.
size_t group_by_expert_workspace_bytes(int A, int E);

// The grouped order of A assignments (expert_ids [A] int32) over E experts: a stable counting
// sort. order[g] = the assignment at grouped position g, rows[g] = order[g] / k, position[a] = its
// grouped position, offsets[E + 1] = each expert's first position, and A. Chunks of assignments
// are counted per expert, the counts scanned into each chunk's starting positions (in
// `workspace`, group_by_expert_workspace_bytes bytes, any alignment of 4), then every assignment
// is placed; the result is the unique stable order, the same on any GPU.
void group_by_expert(int32_t* order, int32_t* rows, int32_t* position, int32_t* offsets,
                     const int32_t* expert_ids, int A, int k, int E, void* workspace,
                     cudaStream_t stream);

// out[A,I] from inp[A,2I] with gate = inp[:, 2i], up = inp[:, 2i + 1] interleaved:
// g = min(gate, limit), u = clamp(up, -limit, limit), out = (u + 1) * g * sigmoid(alpha * g).
// NaN passes through the clamps as on the CPU.
template <typename Act>
void clamped_swiglu_forward(Act* out, const Act* inp, int A, int I, float alpha, float limit,
                            cudaStream_t stream);

// dinp[A,2I] ACCUMULATES the gradient of clamped_swiglu_forward given dout[A,I]: zero where a
// clamp held the value; the clamps pass the gradient at their bounds (torch.clamp's rule).
template <typename Act>
void clamped_swiglu_backward(Act* dinp, const Act* inp, const Act* dout, int A, int I,
                             float alpha, float limit, cudaStream_t stream);

// out[n,:C] = sum over j = 0..k-1 of weights[n, j] * expert_out[position[n * k + j], :], summed in
// that order, so a row's result depends on its own choices only.
template <typename Act>
void expert_combine_forward(Act* out, const Act* expert_out, const float* weights,
                            const int32_t* position, int N, int C, int k, cudaStream_t stream);

// dexpert_out[position[a], :] ACCUMULATES weights[a] * dout[n, :]; dweights[a] ACCUMULATES
// dout[n, :] . expert_out[position[a], :], for a = n * k + j (one warp per dot product).
template <typename Act>
void expert_combine_backward(Act* dexpert_out, float* dweights, const Act* dout,
                             const Act* expert_out, const float* weights, const int32_t* position,
                             int N, int C, int k, cudaStream_t stream);

// Scratch bytes router_load_stats needs for N rows.
size_t router_load_workspace_bytes(int N);

// totals[0, e] ACCUMULATES the number of the N * k assignments to expert e; totals[1, e]
// ACCUMULATES the sum over rows of softmax(logits[n, :E])[e] (each row's softmax in fp32, the sum
// in fp64, in a fixed order). `workspace` (router_load_workspace_bytes(N) bytes, any alignment of
// 4) holds each row's max and reciprocal sum.
template <typename Act>
void router_load_stats(double* totals, const Act* logits, const int32_t* expert_ids, int N, int E,
                       int k, void* workspace, cudaStream_t stream);

// dlogits[n, :E] ACCUMULATES scale * p[i] * (counts[i] - sum_e counts[e] * p[e]), p =
// softmax(logits[n]), counts = totals[0, :E]. One warp per row.
template <typename Act>
void router_load_backward(Act* dlogits, const Act* logits, const double* totals, float scale,
                          int N, int E, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
