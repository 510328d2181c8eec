#include "backend/neuron/kernel_support.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::backend::neuron {

using ::switchyard::nki_dtype_name;
using ::switchyard::is_float;

std::vector<FlatBlock> flat_blocks(int64_t n, int64_t max_cols) {
  require(n >= 0 && max_cols >= 1, "flat_blocks: bad size {} or block width {}", n, max_cols);
  std::vector<FlatBlock> blocks;
  const int64_t body_cols = n / kPartitions;
  for (int64_t c = 0; c < body_cols; c += max_cols) {
    blocks.push_back({c, kPartitions, std::min(max_cols, body_cols - c), body_cols});
  }
  const int64_t tail = n - body_cols * kPartitions;
  for (int64_t c = 0; c < tail; c += max_cols) {
    const int64_t cols = std::min(max_cols, tail - c);
    blocks.push_back({body_cols * kPartitions + c, 1, cols, cols});
  }
  return blocks;
}

View block_view(const View& flat, const FlatBlock& block) {
  return flat.pattern(block.offset, Dim{block.rows, block.row_stride}, {Dim{block.cols, 1}});
}

View broadcast_rows(const View& row, int64_t partitions) {
  require(row.memory() == Memory::kHbm && row.partitions() == 1 && row.free_dims() == 1,
          "broadcast_rows: expected one HBM row, got {}", row.describe());
  return row.pattern(0, Dim{partitions, 0}, {Dim{row.free_size(), 1}});
}

void require_compute(const char* kernel, DType compute) {
  require(compute == DType::kBF16 || compute == DType::kF32,
          "{}: compute dtype must be bfloat16 or float32, got {}", kernel, nki_dtype_name(compute));
}

void require_rows(const char* kernel, const char* what, const View& view, int64_t rows,
                  int64_t width) {
  require(view.memory() == Memory::kHbm && view.free_dims() == 1 && view.partitions() == rows &&
              view.free_size() == width && view.free_dim(0).stride == 1,
          "{}: {} must be HBM rows [{}, {}] of contiguous elements, got {}", kernel, what, rows,
          width, view.describe());
  require(view.dtype() == DType::kBF16 || view.dtype() == DType::kF32,
          "{}: {} must be bfloat16 or float32, got {}", kernel, what, nki_dtype_name(view.dtype()));
}

void require_flat(const char* kernel, const char* name, const View& v, int64_t n) {
  const bool contiguous = v.free_dims() == 1 && v.free_dim(0).stride == 1 &&
                          (v.partitions() == 1 || v.partition_stride() == v.free_size());
  require(v.memory() == Memory::kHbm && is_float(v.dtype()) && contiguous && v.elements() == n,
          "{}: {} must be an HBM float tensor of {} contiguous elements, got {}", kernel, name, n,
          v.describe());
}

void require_dense_matrix(const char* kernel, const char* name, const View& v, int64_t rows,
                          int64_t cols) {
  require(v.memory() == Memory::kHbm && is_float(v.dtype()) && v.free_dims() == 1 &&
              v.free_dim(0).stride == 1 && v.partitions() == rows && v.free_size() == cols,
          "{}: {} must be an HBM float tensor [{}, {}] with contiguous rows, got {}", kernel, name,
          rows, cols, v.describe());
}

void require_dense_row(const char* kernel, const char* name, const View& v, int64_t n) {
  require(v.memory() == Memory::kHbm && is_float(v.dtype()) && v.partitions() == 1 &&
              v.free_dims() == 1 && v.free_dim(0).stride == 1 && v.free_size() == n,
          "{}: {} must be one contiguous HBM float row of {} elements, got {}", kernel, name, n,
          v.describe());
}

void copy_row_statistics(NeuronCore& core, const View& hbm, const View& tile, int64_t n,
                         bool to_hbm, int queue) {
  const int64_t full = n / kPartitions;
  const int64_t rest = n % kPartitions;
  if (full > 0) {
    const View h = hbm.pattern(0, Dim{kPartitions, 1}, {Dim{full, kPartitions}});
    const View s = tile.cols(0, full);
    to_hbm ? core.dma_copy(h, s, queue) : core.dma_copy(s, h, queue);
  }
  if (rest > 0) {
    const View h = hbm.pattern(full * kPartitions, Dim{rest, 1}, {Dim{1, 1}});
    const View s = tile.rows(0, rest).cols(full, 1);
    to_hbm ? core.dma_copy(h, s, queue) : core.dma_copy(s, h, queue);
  }
}

}  // namespace switchyard::backend::neuron
