// Shared pieces of the trn1-sim / trn2-sim backend's tile programs.
//
// Every tile program behind an op of the op list (backend/ops.h) is a free function that issues
// instructions on a simulated NeuronCore: it reads its inputs from HBM views, computes in SBUF/PSUM
// and writes its outputs back to HBM views, with the semantics ops.h gives the op (backward ops
// accumulate). HBM views may be bf16 or fp32 (whatever dtype the tensor is stored in; DMA casts on
// the way in and out). `compute` names the dtype of activation tiles in SBUF and of
// matmul operands: kBF16 as the hardware would run, or kF32 for the fp32 parity mode. Statistics,
// PSUM accumulators and optimizer state are always fp32.
#pragma once

#include <cstdint>
#include <vector>

#include "neuron/neuron_core.h"
#include "neuron/tile_pool.h"

namespace switchyard::backend::neuron {

using ::switchyard::neuron::Activation;
using ::switchyard::neuron::AluOp;
using ::switchyard::neuron::Dim;
using ::switchyard::neuron::DType;
using ::switchyard::neuron::Engine;
using ::switchyard::neuron::kAnyQueue;
using ::switchyard::neuron::KernelScope;
using ::switchyard::neuron::Memory;
using ::switchyard::neuron::NeuronCore;
using ::switchyard::neuron::Operand;
using ::switchyard::neuron::TilePool;
using ::switchyard::neuron::View;

inline constexpr int64_t kPartitions = 128;      // SBUF/PSUM partitions, PE array rows
inline constexpr int64_t kPsumBankFloats = 512;  // one 2 KiB PSUM bank of fp32 per partition

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whether an optional operand was given (an empty View() marks one that is absent).
inline bool present(const View& v) { return v.allocation() >= 0; }

// A piece of a flat N-element tensor seen as [rows, cols]: rows of `cols` contiguous elements,
// `row_stride` elements apart, starting at element `offset`.
struct FlatBlock {
  int64_t offset = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
};

// Covers N elements with blocks for elementwise kernels: the first 128 * (N / 128) elements as a
// [128, N / 128] array split into column ranges of at most max_cols, then the remainder (fewer
// than 128 elements) as one row. The order and shapes depend only on N and max_cols, so every
// operand of an elementwise kernel is cut the same way.
std::vector<FlatBlock> flat_blocks(int64_t n, int64_t max_cols);

// The HBM view of `block` within `flat`, an HBM view whose elements are contiguous (a 1-D tensor,
// or a 2-D one with rows packed back to back).
View block_view(const View& flat, const FlatBlock& block);

// Argument checks shared by the kernels; each throws an Error naming the kernel and the operand.
// `compute` must be kBF16 or kF32.
void require_compute(const char* kernel, DType compute);
// `v` must be an HBM float tensor of n contiguous elements (1-D, or rows packed back to back).
void require_flat(const char* kernel, const char* name, const View& v, int64_t n);
// `view` must be HBM rows [rows, width] of contiguous bf16 or fp32 elements.
void require_rows(const char* kernel, const char* what, const View& view, int64_t rows,
                  int64_t width);

// `v` must be an HBM float tensor [rows, cols] whose rows are contiguous.
void require_dense_matrix(const char* kernel, const char* name, const View& v, int64_t rows,
                          int64_t cols);
// `v` must be one HBM row of n contiguous float elements.
void require_dense_row(const char* kernel, const char* name, const View& v, int64_t n);

// An HBM row [1, n] read by every one of `partitions` rows (row stride 0), for loading a weight or
// bias vector into all partitions with one DMA.
View broadcast_rows(const View& row, int64_t partitions);

// Per-row statistics of N rows live in SBUF as [128, tiles] fp32 columns (row t * 128 + p at
// partition p, column t); these move them between that layout and a flat HBM row with at most
// two DMAs (the full tiles, then the last partial one).
void copy_row_statistics(NeuronCore& core, const View& hbm, const View& tile, int64_t n,
                         bool to_hbm, int queue);

}  // namespace switchyard::backend::neuron
