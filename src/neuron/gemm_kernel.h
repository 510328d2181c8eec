// The GEMM tile program of the simulated NeuronCore, HBM to HBM: every matrix product of the
// trn*-sim backend (the linear layer and its gradients) and of `switchyard neuron bench matmul`.
//
//   out[M, N] (+)= stationary[K, M]^T @ moving[K, N] (+ bias[N] on every row)
//
// Each product is streamed through TensorE with K on the 128 partitions, M <= 128 output rows per
// matmul (the stationary operand) and N <= 512 output columns (the moving operand, one PSUM bank
// of fp32). Either operand may be stored [K, X] in HBM, or [X, K] and read through a DMA transpose
// (which costs next to nothing here: a transposed load from HBM runs at 90% of a queue's bandwidth,
// and these loads are bound by the core's HBM share anyway, while a TensorE transpose would add an
// identity matmul and a PSUM evacuation per 128x128 tile).
//
// The bigger operand in HBM streams through once, k-tile by k-tile, several steps ahead of
// TensorE and spread over all DMA queues, in blocks of output tiles that accumulate together in
// open PSUM groups (a block covers at most half the PSUM banks, so the next block accumulates
// while this one drains). The smaller one stays resident in SBUF when it takes at most 48 KiB per
// partition, and otherwise streams too, once per block. PSUM drains through VectorE and ScalarE
// alternately, with a cast to out's dtype (adding out's previous values, loaded a few blocks
// ahead, when accumulating), and stores go out over all queues.
// An optional bias joins each output tile's accumulation group as one more matmul of a ones row
// against the bias row (in bf16 as a hi + lo pair of rows, so it keeps ~16 bits of an fp32 bias);
// optional column sums of the stationary operand (a linear layer's bias gradient) come from a
// matmul against a ones column.
#pragma once

#include <cstdint>
#include <string>

#include "neuron/neuron_core.h"

namespace switchyard::neuron {

// One GEMM operand seen as [K, X] with K on partitions: an HBM tensor stored [K, X], or stored
// [X, K] and read through a DMA transpose.
struct GemmOperand {
  View hbm;
  bool transposed = false;

  int64_t k() const { return transposed ? hbm.free_size() : hbm.partitions(); }
  int64_t x() const { return transposed ? hbm.partitions() : hbm.free_size(); }
  // The [ks, xs] region at (k0, x0).
  View tile(int64_t k0, int64_t ks, int64_t x0, int64_t xs) const {
    return transposed ? hbm.rows(x0, xs).cols(k0, ks).transposed()
                      : hbm.rows(k0, ks).cols(x0, xs);
  }
};

struct GemmJob {
  std::string name = "gemm";  // prefix of the tile names
  GemmOperand stationary;     // [K, M]
  GemmOperand moving;         // [K, N]
  View out;                   // HBM [M, N]
  bool accumulate = false;    // out += the product (otherwise out = the product)
  View bias;                  // HBM [1, N] added to every output row, or an empty View()
  // HBM [1, M] += sums over K of the stationary operand (= without accumulate), or an empty View()
  View column_sums;
  DType compute = DType::kBF16;  // dtype of the operand tiles in SBUF (DMA casts on the way in)
};

// What the program chose, for reports and tests.
struct GemmPlan {
  int64_t m_tiles = 0, k_tiles = 0, n_tiles = 0;  // of 128, 128 and 512
  bool moving_streams = true;  // the moving operand streams (otherwise the stationary one does)
  bool other_resident = false;  // the other operand stays in SBUF (otherwise it streams too)
  int64_t block_m_tiles = 0, block_n_tiles = 0;  // output tiles accumulating together
  int64_t prefetch_steps = 0;                     // streamed k-steps requested ahead of TensorE
  int64_t sbuf_bytes_per_partition = 0;
};

// Issues the product on `core` (under the current kernel name). All views are 2-D HBM views
// (rows x one free dimension); throws Error for mismatched shapes or when even the smallest
// plan does not fit in SBUF.
GemmPlan gemm(NeuronCore& core, const GemmJob& job);

struct GemmOptions {
  // dtype of the operand tiles in SBUF (the DMA casts from A's and B's HBM dtype).
  DType compute_dtype = DType::kBF16;
};

// C[M, N] = A[M, K] @ B[K, N] (A read through a DMA transpose), under the kernel name "gemm".
GemmPlan gemm(NeuronCore& core, const View& c, const View& a, const View& b,
              const GemmOptions& options = {});

}  // namespace switchyard::neuron
