#include "backend/neuron/fill_kernel.h"

#include <algorithm>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr int64_t kFillCols = 4096;  // 16 KiB of fp32 per partition: 2 MiB per DMA'd block

}  // namespace

int64_t contiguous_elements(const View& view, const char* kernel, const char* name) {
  const bool contiguous =
      view.memory() == Memory::kHbm && view.free_dims() >= 1 && view.rows_contiguous() &&
      (view.partitions() == 1 || view.partition_stride() == view.free_size());
  require(contiguous, "{}: {} must be an HBM tensor with contiguous elements, got {}", kernel, name,
          view.describe());
  return view.elements();
}

std::vector<FlatBlock> contiguous_blocks(int64_t n, int64_t max_cols) {
  require(n >= 0 && max_cols >= 1, "contiguous_blocks: bad size {} or block width {}", n, max_cols);
  std::vector<FlatBlock> blocks;
  const int64_t chunk = kPartitions * max_cols;
  int64_t offset = 0;
  for (; offset + chunk <= n; offset += chunk)
    blocks.push_back({offset, kPartitions, max_cols, max_cols});
  const int64_t rest_cols = (n - offset) / kPartitions;
  if (rest_cols > 0) {
    blocks.push_back({offset, kPartitions, rest_cols, rest_cols});
    offset += kPartitions * rest_cols;
  }
  for (; offset < n; offset += max_cols) {
    const int64_t cols = std::min(max_cols, n - offset);
    blocks.push_back({offset, 1, cols, cols});
  }
  return blocks;
}

DmaSpreader::DmaSpreader(NeuronCore& core, int first_queue, int queues)
    : core_(core), first_queue_(first_queue), queues_(std::max(1, queues)) {
  require(first_queue >= 0 && first_queue + queues_ <= core.config().dma_queues,
          "DmaSpreader: queues {}..{} do not exist (the core has {})", first_queue,
          first_queue + queues_ - 1, core.config().dma_queues);
}

int DmaSpreader::next_queue() {
  const int queue = first_queue_ + next_;
  next_ = (next_ + 1) % queues_;
  return queue;
}

void DmaSpreader::copy(const View& dst, const View& src) {
  split_copy(core_, dst, src, queues_, [this] { return next_queue(); }, kMinPieceBytes);
}

void fill_zero(NeuronCore& core, const View& dst) {
  const int64_t n = contiguous_elements(dst, "fill_zero", "dst");
  const std::vector<FlatBlock> blocks = contiguous_blocks(n, kFillCols);
  if (blocks.empty()) return;
  int64_t tile_cols = 0;
  for (const FlatBlock& b : blocks) tile_cols = std::max(tile_cols, b.cols);

  KernelScope scope(core, "fill_zero");
  TilePool pool(core);
  // In dst's dtype, so every DMA is a plain byte copy.
  const View zeros = pool.sbuf(kPartitions, {tile_cols}, dst.dtype(), "fill_zero.zeros");
  core.memset(zeros, 0.0f, Engine::kGpSimd);
  DmaSpreader dma(core, 0, core.config().dma_queues);
  for (const FlatBlock& b : blocks)
    dma.copy(block_view(dst, b), zeros.rows(0, b.rows).cols(0, b.cols));
}

}  // namespace switchyard::backend::neuron
