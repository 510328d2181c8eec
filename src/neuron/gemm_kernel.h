// Tiled GEMM for the simulated NeuronCore, HBM to HBM: C[M, N] = A[M, K] @ B[K, N].
//
// Written the way a NeuronCore kernel is: 128x128 tiles of A are DMA-transposed into SBUF as
// stationary operands ([K, M] per tile) and kept resident for a block of M rows; B is streamed as
// moving operands in [K, 512]-column panels (one PSUM bank of fp32 per output tile), double
// buffered so the next panel loads while TensorE works on this one; K accumulates in PSUM over
// a matmul accumulation group; PSUM is evacuated alternately by VectorE and ScalarE with a cast
// to C's dtype, and stores go out on their own DMA queues, overlapping the next tile's loads and
// matmuls. Any M, K, N (edge tiles are partial) as long as the panels fit in SBUF.
#pragma once

#include <cstdint>

#include "neuron/neuron_core.h"

namespace switchyard::neuron {

struct GemmOptions {
  // dtype of the operand tiles in SBUF (the DMA casts from A's and B's HBM dtype).
  DType compute_dtype = DType::kBF16;
};

// What gemm() chose, for reports and tests.
struct GemmPlan {
  int64_t m_tiles = 0, k_tiles = 0, n_tiles = 0;
  int64_t m_block_tiles = 0;  // M tiles whose A^T stays resident per block
  int a_buffers = 0;          // 2 when the next block's A loads during this block
  int64_t sbuf_bytes_per_partition = 0;
};

// a: HBM [M, K], b: HBM [K, N], c: HBM [M, N] (each a 2-D view: rows x one free dimension).
// Issues the kernel on `core` under the kernel name "gemm"; throws Error for mismatched shapes
// or when even one M tile's panels do not fit in SBUF.
GemmPlan gemm(NeuronCore& core, const View& c, const View& a, const View& b,
              const GemmOptions& options = {});

}  // namespace switchyard::neuron
