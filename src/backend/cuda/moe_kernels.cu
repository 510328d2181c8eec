// The mixture-of-experts kernels other than the expert products (see moe_kernels.h).
#include "backend/cuda/moe_kernels.h"

#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::from_float;
using device::kFullMask;
using device::kWarp;
using device::to_float;

constexpr int kThreads = 256;

// ---- routing ----

constexpr int kRoutingThreads = 128;

// One thread per row (E is small: 32 to 128 experts), inserting each expert into the row's sorted
// list of choices exactly as the CPU kernel does: an expert moves only past strictly smaller
// logits, so the earlier expert stays first on ties, and one that is not strictly larger than the
// last choice (a NaN, say) never enters a full list.
template <typename Act>
__global__ void __launch_bounds__(kRoutingThreads)
    topk_routing_kernel(int32_t* expert_ids, float* weights, const Act* logits, int N, int E,
                        int k) {
  const int n = blockIdx.x * kRoutingThreads + threadIdx.x;
  if (n >= N) return;
  const Act* l = logits + static_cast<size_t>(n) * E;
  int32_t ids[kMaxTopK];
  float values[kMaxTopK];
  int chosen = 0;
  for (int e = 0; e < E; ++e) {
    const float x = to_float(l[e]);
    if (chosen == k && !(x > values[k - 1])) continue;
    int slot = chosen < k ? chosen++ : k - 1;  // a full list drops its last expert
    for (; slot > 0 && x > values[slot - 1]; --slot) {
      ids[slot] = ids[slot - 1];
      values[slot] = values[slot - 1];
    }
    ids[slot] = e;
    values[slot] = x;
  }
  int32_t* ids_out = expert_ids + static_cast<size_t>(n) * k;
  float* w = weights + static_cast<size_t>(n) * k;
  const float max_logit = values[0];
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) {
    values[j] = expf(values[j] - max_logit);
    sum += values[j];
  }
  for (int j = 0; j < k; ++j) {
    ids_out[j] = ids[j];
    w[j] = values[j] / sum;
  }
}

template <typename Act>
__global__ void __launch_bounds__(kRoutingThreads)
    topk_routing_backward_kernel(Act* dlogits, const float* dweights, const float* weights,
                                 const int32_t* expert_ids, int N, int E, int k) {
  const int n = blockIdx.x * kRoutingThreads + threadIdx.x;
  if (n >= N) return;
  const size_t row = static_cast<size_t>(n) * k;
  float weighted = 0.0f;
  for (int j = 0; j < k; ++j) weighted += weights[row + j] * dweights[row + j];
  Act* d = dlogits + static_cast<size_t>(n) * E;
  for (int j = 0; j < k; ++j) {
    const int32_t e = expert_ids[row + j];
    if (e < 0 || e >= E) continue;
    d[e] = from_float<Act>(to_float(d[e]) + weights[row + j] * (dweights[row + j] - weighted));
  }
}

// ---- grouping by expert ----

// Assignments are counted and placed in chunks of kChunk, one block each. Group E (one past the
// experts) collects the assignments whose id is out of range, so that the result is still a
// permutation.
constexpr int kChunk = 256;

int chunks_of(int A) { return (A + kChunk - 1) / kChunk; }

// The chunk's ids in shared memory, out-of-range ones as E.
__device__ __forceinline__ void load_chunk_ids(int* chunk_ids, const int32_t* expert_ids, int A,
                                               int E) {
  const int a = blockIdx.x * kChunk + threadIdx.x;
  const int32_t e = a < A ? expert_ids[a] : -1;
  chunk_ids[threadIdx.x] = a >= A ? -1 : (e < 0 || e >= E) ? E : e;
}

// counts[chunk, g] = the chunk's assignments in group g (g = 0..E).
__global__ void __launch_bounds__(kChunk)
    group_count_kernel(int* counts, const int32_t* expert_ids, int A, int E) {
  __shared__ int chunk_ids[kChunk];
  load_chunk_ids(chunk_ids, expert_ids, A, E);
  __syncthreads();
  int* row = counts + static_cast<size_t>(blockIdx.x) * (E + 1);
  for (int g = threadIdx.x; g <= E; g += kChunk) {
    int count = 0;
    for (int t = 0; t < kChunk; ++t) count += chunk_ids[t] == g;
    row[g] = count;
  }
}

// One block: each group's total and, in place, each chunk's count of the group before it; then
// the groups' starting positions (offsets[0..E]: offsets[E] starts group E, the out-of-range ids,
// so it counts the in-range ones); then each chunk's first position per group.
__global__ void __launch_bounds__(kThreads)
    group_scan_kernel(int* counts, int32_t* offsets, int chunks, int E) {
  const size_t width = static_cast<size_t>(E) + 1;
  for (int g = threadIdx.x; g <= E; g += kThreads) {
    int running = 0;
    for (int c = 0; c < chunks; ++c) {
      const int count = counts[c * width + g];
      counts[c * width + g] = running;
      running += count;
    }
    offsets[g] = running;  // the group's total, for now
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int running = 0;
    for (int g = 0; g <= E; ++g) {
      const int total = offsets[g];
      offsets[g] = running;
      running += total;
    }
  }
  __syncthreads();
  for (int g = threadIdx.x; g <= E; g += kThreads) {
    const int start = offsets[g];
    for (int c = 0; c < chunks; ++c) counts[c * width + g] += start;
  }
}

// Places each assignment: its chunk's first position in its group plus the assignments of the
// same group before it in the chunk.
__global__ void __launch_bounds__(kChunk)
    group_place_kernel(int32_t* order, int32_t* rows, int32_t* position, const int* starts,
                       const int32_t* expert_ids, int A, int k, int E) {
  __shared__ int chunk_ids[kChunk];
  load_chunk_ids(chunk_ids, expert_ids, A, E);
  __syncthreads();
  const int a = blockIdx.x * kChunk + threadIdx.x;
  if (a >= A) return;
  const int g = chunk_ids[threadIdx.x];
  int rank = 0;
  for (int t = 0; t < static_cast<int>(threadIdx.x); ++t) rank += chunk_ids[t] == g;
  const int at = starts[static_cast<size_t>(blockIdx.x) * (E + 1) + g] + rank;
  order[at] = a;
  rows[at] = a / k;
  position[a] = at;
}

// ---- clamped SwiGLU ----

// std::min(x, limit) and std::max(x, -limit) as the CPU evaluates them: a NaN x comes through
// (fminf and fmaxf would return the bound).
__device__ __forceinline__ float clamp_above(float x, float limit) { return limit < x ? limit : x; }
__device__ __forceinline__ float clamp_below(float x, float limit) { return x < limit ? limit : x; }

// sigmoid(x) and 1 - sigmoid(x) = e s with e = exp(-x) capped at exp(88) (as the CPU's float
// exp caps it), so that e s stays finite.
__device__ __forceinline__ void sigmoid_pair(float x, float& s, float& one_minus_s) {
  const float e = expf(fminf(-x, 88.0f));
  s = 1.0f / (1.0f + e);
  one_minus_s = e * s;
}

template <typename Act>
__global__ void __launch_bounds__(kThreads)
    clamped_swiglu_forward_kernel(Act* out, const Act* inp, size_t count, int I, float alpha,
                                  float limit) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t idx = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; idx < count;
       idx += stride) {
    const size_t a = idx / I, i = idx % I;
    const Act* x = inp + a * 2 * I;
    const float g = clamp_above(to_float(x[2 * i]), limit);
    const float u = clamp_above(clamp_below(to_float(x[2 * i + 1]), -limit), limit);
    float s, one_minus_s;
    sigmoid_pair(alpha * g, s, one_minus_s);
    out[idx] = from_float<Act>((u + 1.0f) * g * s);
  }
}

template <typename Act>
__global__ void __launch_bounds__(kThreads)
    clamped_swiglu_backward_kernel(Act* dinp, const Act* inp, const Act* dout, size_t count, int I,
                                   float alpha, float limit) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t idx = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; idx < count;
       idx += stride) {
    const size_t a = idx / I, i = idx % I;
    const Act* x = inp + a * 2 * I;
    Act* dx = dinp + a * 2 * I;
    const float gate = to_float(x[2 * i]), up = to_float(x[2 * i + 1]);
    const float g = clamp_above(gate, limit);
    const float u = clamp_above(clamp_below(up, -limit), limit);
    float s, one_minus_s;
    sigmoid_pair(alpha * g, s, one_minus_s);
    const float d = to_float(dout[idx]);
    const float dgate = d * (u + 1.0f) * (s + alpha * g * s * one_minus_s);
    const float dup = d * g * s;
    dx[2 * i] = from_float<Act>(to_float(dx[2 * i]) + (gate <= limit ? dgate : 0.0f));
    dx[2 * i + 1] = from_float<Act>(to_float(dx[2 * i + 1]) +
                                    (up >= -limit && up <= limit ? dup : 0.0f));
  }
}

// ---- combining the experts' outputs ----

template <typename Act>
__global__ void __launch_bounds__(kThreads)
    expert_combine_forward_kernel(Act* out, const Act* expert_out, const float* weights,
                                  const int32_t* position, int N, int C, int k) {
  const size_t count = static_cast<size_t>(N) * C;
  const size_t assignments = static_cast<size_t>(N) * k;
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t idx = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; idx < count;
       idx += stride) {
    const size_t n = idx / C, c = idx % C;
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const size_t a = n * k + j;
      const int32_t p = position[a];
      if (p < 0 || static_cast<size_t>(p) >= assignments) {
        acc = NAN;
        break;
      }
      const float term = weights[a] * to_float(expert_out[static_cast<size_t>(p) * C + c]);
      acc = j == 0 ? term : acc + term;
    }
    out[idx] = from_float<Act>(acc);
  }
}

template <typename Act>
__global__ void __launch_bounds__(kThreads)
    expert_combine_backward_rows_kernel(Act* dexpert_out, const Act* dout, const float* weights,
                                        const int32_t* position, int N, int C, int k) {
  const size_t assignments = static_cast<size_t>(N) * k;
  const size_t count = assignments * C;
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t idx = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; idx < count;
       idx += stride) {
    const size_t a = idx / C, c = idx % C;
    const int32_t p = position[a];
    if (p < 0 || static_cast<size_t>(p) >= assignments) continue;
    Act* dx = dexpert_out + static_cast<size_t>(p) * C + c;
    *dx = from_float<Act>(to_float(*dx) + weights[a] * to_float(dout[(a / k) * C + c]));
  }
}

constexpr int kDotWarps = 8;

// One warp per assignment: dweights[a] += dout[n] . expert_out[position[a]].
template <typename Act>
__global__ void __launch_bounds__(kDotWarps * kWarp)
    expert_combine_backward_weights_kernel(float* dweights, const Act* dout, const Act* expert_out,
                                           const int32_t* position, int N, int C, int k) {
  const size_t assignments = static_cast<size_t>(N) * k;
  const size_t a = static_cast<size_t>(blockIdx.x) * kDotWarps + threadIdx.x / kWarp;
  if (a >= assignments) return;  // whole warps leave
  const int lane = threadIdx.x % kWarp;
  const int32_t p = position[a];
  if (p < 0 || static_cast<size_t>(p) >= assignments) return;  // uniform over the warp
  const Act* d = dout + (a / k) * C;
  const Act* x = expert_out + static_cast<size_t>(p) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarp) sum += to_float(d[c]) * to_float(x[c]);
  sum = device::warp_sum(sum);
  if (lane == 0) dweights[a] += sum;
}

// ---- the router's load-balancing statistics ----

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// Row n's softmax statistics by one warp: the max, and 1 / sum(exp(l - max)), NaN when the row
// holds a NaN or an infinity (as the CPU's softmax_row poisons it).
template <typename Act>
__device__ __forceinline__ void row_softmax(const Act* l, int E, int lane, float& max_logit,
                                            float& inv_sum) {
  float m = -INFINITY;
  for (int e = lane; e < E; e += kWarp) m = fmaxf(m, to_float(l[e]));
  m = warp_max(m);
  float sum = 0.0f, poison = 0.0f;
  for (int e = lane; e < E; e += kWarp) {
    const float x = to_float(l[e]);
    sum += expf(x - m);
    poison += x * 0.0f;
  }
  max_logit = m;
  inv_sum = 1.0f / device::warp_sum(sum) + device::warp_sum(poison);
}

constexpr int kRowWarps = 8;

template <typename Act>
__global__ void __launch_bounds__(kRowWarps * kWarp)
    router_row_stats_kernel(float* stats, const Act* logits, int N, int E) {
  const int n = blockIdx.x * kRowWarps + threadIdx.x / kWarp;
  if (n >= N) return;  // whole warps leave
  const int lane = threadIdx.x % kWarp;
  float m, inv;
  row_softmax(logits + static_cast<size_t>(n) * E, E, lane, m, inv);
  if (lane == 0) {
    stats[2 * static_cast<size_t>(n)] = m;
    stats[2 * static_cast<size_t>(n) + 1] = inv;
  }
}

// One block per expert: its threads take rows (and assignments) in strides, then a tree of fp64
// sums in shared memory, always in the same order.
template <typename Act>
__global__ void __launch_bounds__(kThreads)
    router_expert_totals_kernel(double* totals, const float* stats, const Act* logits,
                                const int32_t* expert_ids, int N, int E, int k) {
  __shared__ double probability_sums[kThreads];
  __shared__ double count_sums[kThreads];
  const int e = blockIdx.x;
  double probability = 0.0;
  for (int n = threadIdx.x; n < N; n += kThreads) {
    const float x = to_float(logits[static_cast<size_t>(n) * E + e]);
    probability += static_cast<double>(expf(x - stats[2 * static_cast<size_t>(n)]) *
                                       stats[2 * static_cast<size_t>(n) + 1]);
  }
  double count = 0.0;
  const size_t assignments = static_cast<size_t>(N) * k;
  for (size_t a = threadIdx.x; a < assignments; a += kThreads) count += expert_ids[a] == e;
  probability_sums[threadIdx.x] = probability;
  count_sums[threadIdx.x] = count;
  for (int half = kThreads / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) {
      probability_sums[threadIdx.x] += probability_sums[threadIdx.x + half];
      count_sums[threadIdx.x] += count_sums[threadIdx.x + half];
    }
  }
  if (threadIdx.x == 0) {
    totals[e] += count_sums[0];
    totals[E + e] += probability_sums[0];
  }
}

template <typename Act>
__global__ void __launch_bounds__(kRowWarps * kWarp)
    router_load_backward_kernel(Act* dlogits, const Act* logits, const double* totals, float scale,
                                int N, int E) {
  const int n = blockIdx.x * kRowWarps + threadIdx.x / kWarp;
  if (n >= N) return;  // whole warps leave
  const int lane = threadIdx.x % kWarp;
  const Act* l = logits + static_cast<size_t>(n) * E;
  float m, inv;
  row_softmax(l, E, lane, m, inv);
  float expected = 0.0f;  // sum_e counts[e] * p[e]
  for (int e = lane; e < E; e += kWarp) {
    expected += static_cast<float>(totals[e]) * expf(to_float(l[e]) - m) * inv;
  }
  expected = device::warp_sum(expected);
  Act* d = dlogits + static_cast<size_t>(n) * E;
  for (int e = lane; e < E; e += kWarp) {
    const float p = expf(to_float(l[e]) - m) * inv;
    d[e] = from_float<Act>(to_float(d[e]) +
                           scale * p * (static_cast<float>(totals[e]) - expected));
  }
}

}  // namespace

template <typename Act>
void topk_routing(int32_t* expert_ids, float* weights, const Act* logits, int N, int E, int k,
                  cudaStream_t stream) {
  if (N <= 0 || k <= 0) return;
  const unsigned grid = (N + kRoutingThreads - 1) / kRoutingThreads;
  topk_routing_kernel<Act><<<grid, kRoutingThreads, 0, stream>>>(expert_ids, weights, logits, N,
                                                                  E, k);
  check_launch("topk_routing");
}

template <typename Act>
void topk_routing_backward(Act* dlogits, const float* dweights, const float* weights,
                           const int32_t* expert_ids, int N, int E, int k, cudaStream_t stream) {
  if (N <= 0 || k <= 0) return;
  const unsigned grid = (N + kRoutingThreads - 1) / kRoutingThreads;
  topk_routing_backward_kernel<Act><<<grid, kRoutingThreads, 0, stream>>>(
      dlogits, dweights, weights, expert_ids, N, E, k);
  check_launch("topk_routing_backward");
}

size_t group_by_expert_workspace_bytes(int A, int E) {
  if (A <= 0) return 0;
  return static_cast<size_t>(chunks_of(A)) * (static_cast<size_t>(E) + 1) * sizeof(int);
}

void group_by_expert(int32_t* order, int32_t* rows, int32_t* position, int32_t* offsets,
                     const int32_t* expert_ids, int A, int k, int E, void* workspace,
                     cudaStream_t stream) {
  if (E <= 0) return;
  int* counts = static_cast<int*>(workspace);
  const int chunks = chunks_of(A);
  if (chunks > 0) {
    group_count_kernel<<<chunks, kChunk, 0, stream>>>(counts, expert_ids, A, E);
    check_launch("group_by_expert (counts)");
  }
  // Also with no assignments: the offsets are then all zero.
  group_scan_kernel<<<1, kThreads, 0, stream>>>(counts, offsets, chunks, E);
  check_launch("group_by_expert (scan)");
  if (chunks > 0) {
    group_place_kernel<<<chunks, kChunk, 0, stream>>>(order, rows, position, counts, expert_ids,
                                                      A, k, E);
    check_launch("group_by_expert (placement)");
  }
}

template <typename Act>
void clamped_swiglu_forward(Act* out, const Act* inp, int A, int I, float alpha, float limit,
                            cudaStream_t stream) {
  const size_t count = static_cast<size_t>(A) * I;
  if (A <= 0 || I <= 0) return;
  clamped_swiglu_forward_kernel<Act><<<device::flat_blocks(count, kThreads), kThreads, 0,
                                       stream>>>(out, inp, count, I, alpha, limit);
  check_launch("clamped_swiglu_forward");
}

template <typename Act>
void clamped_swiglu_backward(Act* dinp, const Act* inp, const Act* dout, int A, int I,
                             float alpha, float limit, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(A) * I;
  if (A <= 0 || I <= 0) return;
  clamped_swiglu_backward_kernel<Act><<<device::flat_blocks(count, kThreads), kThreads, 0,
                                        stream>>>(dinp, inp, dout, count, I, alpha, limit);
  check_launch("clamped_swiglu_backward");
}

template <typename Act>
void expert_combine_forward(Act* out, const Act* expert_out, const float* weights,
                            const int32_t* position, int N, int C, int k, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(N) * C;
  if (N <= 0 || C <= 0 || k <= 0) return;
  expert_combine_forward_kernel<Act><<<device::flat_blocks(count, kThreads), kThreads, 0,
                                       stream>>>(out, expert_out, weights, position, N, C, k);
  check_launch("expert_combine_forward");
}

template <typename Act>
void expert_combine_backward(Act* dexpert_out, float* dweights, const Act* dout,
                             const Act* expert_out, const float* weights, const int32_t* position,
                             int N, int C, int k, cudaStream_t stream) {
  if (N <= 0 || C <= 0 || k <= 0) return;
  const size_t assignments = static_cast<size_t>(N) * k;
  expert_combine_backward_rows_kernel<Act><<<device::flat_blocks(assignments * C, kThreads),
                                             kThreads, 0, stream>>>(dexpert_out, dout, weights,
                                                                    position, N, C, k);
  check_launch("expert_combine_backward (rows)");
  const unsigned grid = static_cast<unsigned>((assignments + kDotWarps - 1) / kDotWarps);
  expert_combine_backward_weights_kernel<Act><<<grid, kDotWarps * kWarp, 0, stream>>>(
      dweights, dout, expert_out, position, N, C, k);
  check_launch("expert_combine_backward (weights)");
}

size_t router_load_workspace_bytes(int N) {
  return N <= 0 ? 0 : 2 * static_cast<size_t>(N) * sizeof(float);
}

template <typename Act>
void router_load_stats(double* totals, const Act* logits, const int32_t* expert_ids, int N, int E,
                       int k, void* workspace, cudaStream_t stream) {
  if (N <= 0 || E <= 0) return;
  float* stats = static_cast<float*>(workspace);
  const unsigned grid = static_cast<unsigned>((N + kRowWarps - 1) / kRowWarps);
  router_row_stats_kernel<Act><<<grid, kRowWarps * kWarp, 0, stream>>>(stats, logits, N, E);
  check_launch("router_load_stats (rows)");
  router_expert_totals_kernel<Act><<<E, kThreads, 0, stream>>>(totals, stats, logits, expert_ids,
                                                                N, E, k);
  check_launch("router_load_stats (totals)");
}

template <typename Act>
void router_load_backward(Act* dlogits, const Act* logits, const double* totals, float scale,
                          int N, int E, cudaStream_t stream) {
  if (N <= 0 || E <= 0) return;
  const unsigned grid = static_cast<unsigned>((N + kRowWarps - 1) / kRowWarps);
  router_load_backward_kernel<Act><<<grid, kRowWarps * kWarp, 0, stream>>>(dlogits, logits,
                                                                            totals, scale, N, E);
  check_launch("router_load_backward");
}

#define SWITCHYARD_MOE_INSTANCES(Act)                                                             \
  template void topk_routing<Act>(int32_t*, float*, const Act*, int, int, int, cudaStream_t);     \
  template void topk_routing_backward<Act>(Act*, const float*, const float*, const int32_t*, int, \
                                           int, int, cudaStream_t);                               \
  template void clamped_swiglu_forward<Act>(Act*, const Act*, int, int, float, float,             \
                                            cudaStream_t);                                        \
  template void clamped_swiglu_backward<Act>(Act*, const Act*, const Act*, int, int, float,       \
                                             float, cudaStream_t);                                \
  template void expert_combine_forward<Act>(Act*, const Act*, const float*, const int32_t*, int,  \
                                            int, int, cudaStream_t);                              \
  template void expert_combine_backward<Act>(Act*, float*, const Act*, const Act*, const float*,  \
                                             const int32_t*, int, int, int, cudaStream_t);        \
  template void router_load_stats<Act>(double*, const Act*, const int32_t*, int, int, int, void*, \
                                       cudaStream_t);                                             \
  template void router_load_backward<Act>(Act*, const Act*, const double*, float, int, int,       \
                                          cudaStream_t);

SWITCHYARD_MOE_INSTANCES(float)
SWITCHYARD_MOE_INSTANCES(bf16)

#undef SWITCHYARD_MOE_INSTANCES

}  // namespace switchyard::backend::cuda
