#include "backend/neuron/paged_attention_gather.h"

#include <string>

namespace switchyard::backend::neuron {

// A scratch row holds a key block's positions from the start of its first table block: up to
// block_size - 1 before the block, the block's, and the rest of its last chunk's 128.
int64_t PagedKeyBlockGatherer::scratch_columns(int64_t key_block, int64_t block_size) {
  return ceil_div(block_size - 1 + key_block, block_size) * block_size + kPartitions;
}

// Enough of x % block_size for (s + p) with s < block_size and p < 128, whole table blocks.
int64_t PagedKeyBlockGatherer::offsets_row(int64_t block_size) {
  return ceil_div(kPartitions + block_size - 1, block_size) * block_size;
}

int64_t PagedKeyBlockGatherer::sbuf_bytes(int64_t key_block, int64_t block_size, int64_t width,
                                          DType compute) {
  const int64_t e = ::switchyard::dtype_bytes(compute), chunks = key_block / kPartitions;
  return offsets_row(block_size) * 4 + block_size * 4 +
         static_cast<int64_t>(kTableBuffers) * chunks * 4 +
         static_cast<int64_t>(kKeyBuffers) * (chunks * 4 + chunks * width * e) +
         static_cast<int64_t>(kValueBuffers) * chunks * width * e;
}

PagedKeyBlockGatherer::PagedKeyBlockGatherer(NeuronCore& core, TilePool& pool, DmaQueues& queues,
                                             const View& k_cache, const View& v_cache,
                                             const View& block_tables,
                                             std::span<const PagedKeyBlock> blocks,
                                             int64_t key_block, int64_t block_size, DType compute)
    : core_(core), queues_(queues), k_cache_(k_cache), v_cache_(v_cache), tables_(block_tables),
      blocks_(blocks), key_block_(key_block), chunks_(key_block / kPartitions), bs_(block_size),
      width_(k_cache.free_size()) {
  scratch_ = core_.hbm_alloc(
      {static_cast<int64_t>(kTableBuffers) + 1, scratch_columns(key_block_, bs_)}, DType::kF32,
      "paged.scratch");
  offsets_ = pool.sbuf(kPartitions, {bs_}, DType::kF32, "paged.offsets");
  build_offsets_row_ = pool.sbuf(1, {offsets_row(bs_)}, DType::kF32, "paged.offsets_row");
  build_offsets();
  for (size_t i = 0; i < kTableBuffers; ++i)
    entries_[i] = pool.sbuf(kPartitions, {chunks_}, DType::kF32, "paged.entries" + std::to_string(i));
  for (size_t i = 0; i < kKeyBuffers; ++i) {
    const std::string n = "paged.block" + std::to_string(i);
    slots_[i] = pool.sbuf(kPartitions, {chunks_}, DType::kI32, n + ".slots");
    k_[i] = pool.sbuf(kPartitions, {chunks_ * width_}, compute, n + ".k");
  }
  for (size_t i = 0; i < kValueBuffers; ++i)
    v_[i] = pool.sbuf(kPartitions, {chunks_ * width_}, compute, "paged.v" + std::to_string(i));
}

PagedKeyBlockGatherer::~PagedKeyBlockGatherer() {
  try {
    core_.release(scratch_);
  } catch (const std::exception&) {
    // The kernel threw first; that error is the one reported.
  }
}

// offsets[p, s] = (s + p) % block_size: x % block_size along one partition, out to the scratch's
// last row and back with positions on partitions.
void PagedKeyBlockGatherer::build_offsets() {
  const View row = build_offsets_row_;
  core_.iota(row.split(0, bs_), 0.0f, 0.0f, {0.0f, 1.0f});
  const int64_t last = static_cast<int64_t>(kTableBuffers) * scratch_columns(key_block_, bs_);
  core_.dma_copy(scratch_.pattern(last, Dim{1, 1}, {Dim{row.free_size(), 1}}), row,
                 queues_.store());
  core_.dma_copy(offsets_, scratch_.pattern(last, Dim{kPartitions, 1}, {Dim{bs_, 1}}),
                 queues_.store());
}

void PagedKeyBlockGatherer::begin() {
  // In the order ahead_of keeps: block b's locate, then the gather kLocateAhead - kGatherAhead
  // blocks behind it, so that a table buffer is read before the locate that reuses it.
  constexpr size_t lead = kPagedLocateAhead - kPagedGatherAhead;
  for (size_t b = 0; b < kPagedLocateAhead; ++b) {
    locate(b);
    if (b >= lead) gather(b - lead);
  }
}

void PagedKeyBlockGatherer::ahead_of(size_t b) {
  locate(b + kPagedLocateAhead);
  gather(b + kPagedGatherAhead);
}

void PagedKeyBlockGatherer::locate(size_t b) {
  if (b >= blocks_.size()) return;
  const PagedKeyBlock& kb = blocks_[b];
  const int64_t b_first = kb.k0 / bs_, nblk = (kb.k0 + kb.nk - 1) / bs_ - b_first + 1;
  const int64_t max_blocks = tables_.free_size();
  const int64_t row = static_cast<int64_t>(b % kTableBuffers) * scratch_columns(key_block_, bs_);
  // On the store queues: stores are few, so these never wait behind the gathers.
  core_.dma_copy(scratch_.pattern(row, Dim{1, 1}, {Dim{nblk * bs_, 1}}),
                 tables_.pattern(kb.sequence * max_blocks + b_first, Dim{1, 1},
                                 {Dim{nblk, 1}, Dim{bs_, 0}}),
                 queues_.store());
  core_.dma_copy(entries_[b % kTableBuffers].cols(0, kb.chunks()),
                 scratch_.pattern(row + kb.k0 % bs_, Dim{kPartitions, 1},
                                  {Dim{kb.chunks(), kPartitions}}),
                 queues_.store());
}

void PagedKeyBlockGatherer::gather(size_t b) {
  if (b >= blocks_.size()) return;
  const PagedKeyBlock& kb = blocks_[b];
  const View entries = entries_[b % kTableBuffers];
  const View slots = slots_[b % kKeyBuffers];
  // Chunk c starts (k0 + 128 c) % block_size into a table block: one instruction per run of
  // chunks with the same offset column (all of them when block_size divides 128).
  for (int64_t c = 0, next = 0; c < kb.chunks(); c = next) {
    const int64_t skip = (kb.k0 + c * kPartitions) % bs_;
    for (next = c + 1; next < kb.chunks() && (kb.k0 + next * kPartitions) % bs_ == skip; ++next) {
    }
    core_.tensor_scalar(slots.cols(c, next - c), entries.cols(c, next - c), AluOp::kMultiply,
                        static_cast<float>(bs_), AluOp::kAdd, offsets_.cols(skip, 1),
                        Engine::kGpSimd);
  }
  auto queue = [&] { return queues_.load(); };
  for (int64_t c = 0; c < kb.chunks(); ++c) {
    const int64_t ck = kb.chunk_rows(c);
    const View ids = slots.rows(0, ck).cols(c, 1);
    split_gather(core_, k(b).rows(0, ck).cols(c * width_, width_), k_cache_, ids,
                 queues_.loads(), queue);
    split_gather(core_, v(b).rows(0, ck).cols(c * width_, width_), v_cache_, ids,
                 queues_.loads(), queue);
  }
}

}  // namespace switchyard::backend::neuron
