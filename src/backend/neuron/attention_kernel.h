// Causal multi-head self-attention, forward and backward, as flash-style NeuronCore tile programs.
//
// The T x T probabilities never leave the chip. The forward pass streams key blocks of up to 512
// keys past each query tile of up to 128 rows with an online softmax (a running row max, ScalarE
// exp with the negated max as a per-partition bias and the row sum fused in, and a rescale of the
// running output when the max grows), and saves only each row's log-sum-exp. The backward pass
// recomputes the probabilities from the scores and the saved log-sum-exp.
//
// Layout on chip, per batch row b and group of heads (as many as fit in SBUF, double buffered so
// the next group's loads run under this group's compute): Q^T, K^T (and in the backward V^T and
// dO^T) with the head size on partitions, read by DMA transposes; V (and Q, K, dO) with positions
// on partitions in 128-row chunks. Scores = Q^T-stationary matmuls into one PSUM bank per key
// block; the causal mask is a precomputed 0 / -1e30 tile (built with affine_select) added while
// evacuating blocks that cross the diagonal; blocks wholly above the diagonal are skipped.
//
// Shapes: qkv [B*T, 3C] holds q | k | v per position, each [NH, hs] (hs = C / NH <= 128); out and
// dout [B*T, C]; lse a 1-row view of B*NH*T fp32 values ordered (b, head, t). Scores are scaled by
// 1/sqrt(hs). `compute` (kBF16 or kF32) is the dtype of the Q/K/V/P tiles and matmul operands;
// statistics and PSUM accumulators are fp32.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out[B*T, C] = causal softmax(q k^T / sqrt(hs)) v per head, heads side by side;
// lse[b, h, t] = log sum_{j <= t} exp(q_t . k_j / sqrt(hs)) (natural log).
void attention_forward(NeuronCore& core, const View& out, const View& lse, const View& qkv, int B,
                       int T, int C, int NH, DType compute);

// dqkv[B*T, 3C] += the gradient of attention_forward's out with respect to qkv, given dout and
// the lse the forward pass saved. P is recomputed as exp(scale * q k^T - lse); with
// D_t = sum_j P_tj dP_tj over a full row (one query tile's rows of P and dP are held in SBUF, which
// bounds T; the error says the limit), dS = P (dP - D), dV = P^T dO, dK = scale dS^T Q,
// dQ = scale dS K.
void attention_backward(NeuronCore& core, const View& dqkv, const View& dout, const View& qkv,
                        const View& lse, int B, int T, int C, int NH, DType compute);

// Pieces shared with the decode kernel (attention_decode_kernel.cc); not for other callers.
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
