// Spreading a kernel's DMA transfers over the core's queues.
//
// One queue moves about 27 GB/s, a core's HBM several hundred: a kernel reaches HBM bandwidth only
// by keeping many queues busy at once, and a transfer under 32 KiB pays the per-transfer overhead
// as if it were 32 KiB. These helpers cut big transfers into pieces over several queues and keep
// stores on queues of their own.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

inline constexpr int64_t kMinDmaBytes = 32 * 1024;  // smaller transfers cost a 32 KiB one's queue time

// Loads round-robin over some DMA queues, stores over the others (`store_share` of them), so
// that a store waiting for its block never holds up the next block's loads queued behind it.
class DmaQueues {
 public:
  DmaQueues(const NeuronCore& core, double store_share) {
    const int n = core.config().dma_queues;
    stores_ = n >= 2 ? std::clamp(static_cast<int>(n * store_share + 0.5), 1, n - 1) : 0;
    loads_ = n - stores_;
  }
  int load() { return next_load_++ % loads_; }
  int store() { return stores_ == 0 ? load() : loads_ + next_store_++ % stores_; }
  int loads() const { return loads_; }
  int stores() const { return std::max(stores_, 1); }

 private:
  int loads_ = 1, stores_ = 0, next_load_ = 0, next_store_ = 0;
};


// Rows per piece when a transfer of `rows` rows moving `bytes` bytes is cut into pieces of at least
// `min_piece_bytes` (at most `max_pieces` of them, and at most one per row).
inline int64_t rows_per_piece(int64_t rows, int64_t bytes, int max_pieces,
                              int64_t min_piece_bytes = kMinDmaBytes) {
  const int64_t pieces =
      std::clamp<int64_t>(bytes / min_piece_bytes, 1, std::min<int64_t>(max_pieces, rows));
  return ceil_div(rows, pieces);
}

// Bytes a DMA between views of these dtypes moves: the wider side's.
inline int64_t transfer_bytes(const View& dst, const View& src) {
  return dst.elements() * std::max(::switchyard::dtype_bytes(dst.dtype()),
                                   ::switchyard::dtype_bytes(src.dtype()));
}

// dst <- src split by rows into pieces of at least `min_piece_bytes` (at most `max_pieces`), each
// on the queue `next_queue()` names.
template <typename NextQueue>
void split_copy(NeuronCore& core, const View& dst, const View& src, int max_pieces,
                NextQueue&& next_queue, int64_t min_piece_bytes = kMinDmaBytes) {
  const int64_t rows = dst.partitions();
  const int64_t per_piece =
      rows_per_piece(rows, transfer_bytes(dst, src), max_pieces, min_piece_bytes);
  for (int64_t r = 0; r < rows; r += per_piece) {
    const int64_t n = std::min(per_piece, rows - r);
    core.dma_copy(dst.rows(r, n), src.rows(r, n), next_queue());
  }
}

// dst <- table rows named by ids, split by partitions like split_copy: each piece of the
// gather runs on its own queue.
template <typename NextQueue>
void split_gather(NeuronCore& core, const View& dst, const View& table, const View& ids,
                  int max_pieces, NextQueue&& next_queue) {
  const int64_t rows = dst.partitions();
  const int64_t per_piece = rows_per_piece(rows, transfer_bytes(dst, table), max_pieces);
  for (int64_t r = 0; r < rows; r += per_piece) {
    const int64_t n = std::min(per_piece, rows - r);
    core.dma_gather(dst.rows(r, n), table, ids.rows(r, n), next_queue());
  }
}

}  // namespace switchyard::backend::neuron
