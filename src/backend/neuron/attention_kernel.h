// Causal self-attention over training windows, forward and backward, as flash-style NeuronCore
// tile programs, in every form the model families use: GPT-2's multi-head attention and
// gpt-oss's grouped-query attention with learned sinks and sliding windows.
//
// The T x T probabilities never leave the chip. The forward pass streams key blocks of up to 512
// keys past each query tile of up to 128 rows with an online softmax (a running row max, ScalarE
// exp with the negated max as a per-partition bias and the row sum fused in, and a rescale of the
// running output when the max grows), and saves only each row's log-sum-exp. With sinks the
// running max and sum start from the sink (max = sink, sum = 1), so the sink's exp joins every
// row's denominator and the saved log-sum-exp. The backward pass recomputes the probabilities
// from the scores and the saved log-sum-exp.
//
// Work is cut into units of query heads of one batch row with their kv heads (query head h reads
// kv head h / (heads / kv_heads)): whole groups of query heads where they fit in SBUF, so that
// each kv head's K^T and V come in once for all its query heads, else slices of one group that
// share one load of the kv head (attention_plan.h). Units are double buffered: the next unit's
// loads run under this unit's compute.
//
// Layout on chip: Q^T, K^T (and in the backward V^T and dO^T) with the head size on partitions,
// read by DMA transposes; V (and Q, K, dO) with positions on partitions in 128-row chunks. Scores
// are Q^T-stationary matmuls into one PSUM bank per key block. A query tile reads only the key
// blocks its rows may see: from the window's start (rounded down to a 128-key chunk) to its last
// row. Blocks that cross the diagonal or the window's start are masked: in the forward pass by a
// precomputed 0 / 1e30 tile (built with affine_select) added while evacuating the scores, in the
// backward pass by affine_select on the probabilities.
//
// Shapes: qkv [B*T, (H + 2 KV) hd] is the packed projection, each row q | k | v with q's H heads,
// then k's and v's KV heads, each head hd contiguous values (GPT-2's [B*T, 3C] is KV = H);
// out and dout [B*T, H hd]; lse a 1-row view of B*H*T fp32 values ordered (b, head, t); sinks and
// dsinks one fp32 row of H values, or absent (an empty View). hd <= 128. `compute` (kBF16 or
// kF32) is the dtype of the Q/K/V/P tiles and matmul operands; statistics and PSUM accumulators
// are fp32.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

struct AttentionShape {
  int batch = 0, seq = 0;                     // B windows of T positions
  int heads = 0, kv_heads = 0, head_dim = 0;  // H query heads over KV kv heads of hd each
  int window = 0;                             // 0: all earlier positions; else (p - window, p]
  float scale = 0.0f;                         // scores are scale * q.k
  int64_t group() const { return heads / kv_heads; }
  int64_t width() const { return int64_t{heads + 2 * kv_heads} * head_dim; }  // a qkv row
};

// out = softmax(scale q k^T, masked, with exp(sinks[h]) in head h's denominator) v per head,
// heads side by side; lse[b, h, t] = log(exp(sinks[h]) + sum over visible j of
// exp(scale q_t . k_j)) (natural log; no sink term without sinks).
void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv,
                       const View& sinks, const AttentionShape& shape, DType compute);

// dqkv (laid out as qkv) += the gradient of attention_forward's out with respect to qkv, and
// dsinks += the sinks' gradient when sinks are given (dsinks may then be absent: no sink
// gradient), given dout and the lse the forward pass saved. P is recomputed as
// exp(scale q k^T - lse); with D_t = sum_j P_tj dP_tj over a full row (one query tile's rows of
// P and dP are held in SBUF, which bounds T; the error says the limit), dS = P (dP - D),
// dV = P^T dO, dK = scale dS^T Q, dQ = scale dS K, dsinks[h] -= sum_t exp(sinks[h] - lse_t) D_t.
void attention_backward(NeuronCore& core, const View& dqkv, const View& dsinks, const View& dout,
                        const View& qkv, const View& lse, const View& sinks,
                        const AttentionShape& shape, DType compute);

// GPT-2's form: NH heads of C / NH over qkv [B*T, 3C], no window, no sinks, scale 1/sqrt(hs).
void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv, int B,
                       int T, int C, int NH, DType compute);
void attention_backward(NeuronCore& core, const View& dqkv, const View& dout, const View& qkv,
                        const View& lse, int B, int T, int C, int NH, DType compute);

// Pieces shared with the decode kernel (attention_decode_kernel.cc) and the training kernels'
// planning (attention_plan.h); not for other callers.
namespace attention_detail {

inline constexpr int64_t kKeyBlock = 512;     // keys per score block: one PSUM bank of fp32
inline constexpr int64_t kMinDmaBytes = 32 * 1024;  // smaller transfers waste queue time

// Round-robin over the core's DMA queues.
class QueueRing {
 public:
  explicit QueueRing(int queues) : queues_(queues) {}
  int operator()() { return next_++ % queues_; }
  int size() const { return queues_; }

 private:
  int queues_;
  int next_ = 0;
};

// Checks B, T (or max_T), C, NH and the compute dtype of an attention kernel.
void check_sizes(const char* kernel, int B, int T, int C, int NH, DType compute);
// Requires `view` to be a contiguous HBM [rows, cols] tensor.
void require_matrix(const char* kernel, const char* what, const View& view, int64_t rows,
                    int64_t cols);
// Issues dst <- src as several DMAs split along free dimension `dim` (present in both views
// with the same size; -1 splits the rows), in pieces of at least kMinDmaBytes over at most all
// queues.
void dma_split(NeuronCore& core, const View& dst, const View& src, int dim, QueueRing& queues);

}  // namespace attention_detail

}  // namespace switchyard::backend::neuron
