// Planning shared by the training attention tile programs (attention_kernel.h): argument checks,
// the cut into units of heads, the keys a query tile reads, and the loads and stores of the
// packed projection's heads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/neuron/attention_kernel.h"

namespace switchyard::backend::neuron::attention_detail {

// Per-partition alignment slack of the pool's allocations.
inline constexpr int64_t kSlack = 64 * 64;

// Checks the shape (heads a multiple of kv_heads, hd <= 128, window >= 0, scale > 0) and the
// compute dtype.
void check_shape(const char* kernel, const AttentionShape& s, DType compute);
// `lse` must be one contiguous fp32 HBM row of n values.
void require_lse(const char* kernel, const View& lse, int64_t n);
// `row`, when present, must be one contiguous fp32 HBM row of n values.
void require_optional_row(const char* kernel, const char* what, const View& row, int64_t n);

// Query heads [h0, h0 + hn) of batch row b and the kv heads they read, [kv0, kv0 + kvn).
// Consecutive units that share kv heads (slices of one group) share one load of them: kv_set
// numbers the loads, the first unit of a set loads the kv heads' tiles and the last is the last
// to use them.
struct HeadUnit {
  int64_t b = 0, h0 = 0, hn = 0, kv0 = 0, kvn = 0;
  int64_t kv_set = 0;
  bool first_of_set = true, last_of_set = true;
};

// SBUF bytes per partition that a unit's tiles take for each query head and each kv head.
struct HeadBytes {
  int64_t per_q = 0, per_kv = 0;
};

// Units for SBUF tiles of two units (double buffering) in `free` bytes per partition: as many
// whole groups (a kv head and its query heads) as fit, evened out over a batch row; where not even
// one group fits, slices of a group beside its kv head. Empty when one query head and one kv head
// do not fit.
std::vector<HeadUnit> plan_units(const AttentionShape& s, HeadBytes bytes, int64_t free);
// A kernel's units and the one being computed: which of the double buffers hold its query heads'
// and its kv heads' tiles, and which of its kv heads a query head reads.
struct UnitCursor {
  std::vector<HeadUnit> units;
  size_t current = 0;
  int64_t group = 1;  // query heads per kv head
  const HeadUnit& unit() const { return units[current]; }
  size_t query_buffer() const { return current % 2; }
  size_t kv_buffer() const { return static_cast<size_t>(unit().kv_set % 2); }
  // The unit-local kv head that unit-local query head h reads.
  int64_t kv_of(int64_t h) const { return (unit().h0 + h) / group - unit().kv0; }
};

// The most query heads and kv heads any unit holds.
int64_t max_query_heads(const std::vector<HeadUnit>& units);
int64_t max_kv_heads(const std::vector<HeadUnit>& units);

// The keys query rows [q0, q0 + mq) may see, [first, end): from the first row's window start,
// rounded down to a 128-key chunk (so that key blocks start on V's chunks), to the last row.
struct KeySpan {
  int64_t first = 0, end = 0;
  int64_t blocks() const { return ceil_div(end - first, kKeyBlock); }
  int64_t block_start(int64_t kb) const { return first + kb * kKeyBlock; }
  int64_t block_keys(int64_t kb) const { return std::min(kKeyBlock, end - block_start(kb)); }
};
KeySpan key_span(const AttentionShape& s, int64_t q0, int64_t mq);

// Whether some row of [q0, q0 + mq) must not see some key of [k0, k0 + nk): a key after the row
// (the block crosses the diagonal), or one at or before the row's position - window.
inline bool crosses_diagonal(int64_t q0, int64_t k0, int64_t nk) { return k0 + nk - 1 > q0; }
inline bool crosses_window(const AttentionShape& s, int64_t q0, int64_t mq, int64_t k0) {
  return s.window > 0 && q0 + mq - 1 - k0 >= s.window;
}

// Bytes a PSUM tile of `bytes` takes when tiles are packed into 2 KiB banks: the next power of
// two (tiles of at most a bank never straddle one).
int64_t psum_footprint(int64_t bytes);

// Where heads live in an HBM tensor of rows: `width` elements per row, batch row b's T positions
// from row b * T, head i of a part at column `col` + i * hd.
struct HeadRows {
  View hbm;
  int64_t width = 0, col = 0;
  int64_t T = 0, hd = 0;
  // Element offset of head `head`'s first value in batch row b.
  int64_t offset(int64_t b, int64_t head) const { return b * T * width + col + head * hd; }
};

// dst [hd, n, T] <- heads [head, head + n) of batch row b transposed (head dimensions on
// partitions), by DMA transposes.
void load_transposed(NeuronCore& core, const View& dst, const HeadRows& src, int64_t b,
                     int64_t head, int64_t n, QueueRing& queues);

// Moves T rows between HBM and a tile [128, chunks, inner...] with positions on partitions
// (position c * 128 + p at partition p, chunk c): the full chunks, then the rows of the last
// partial one. On the HBM side row t is `inner` (dimensions within a row) from element
// offset + t * row_stride.
void move_rows(NeuronCore& core, const View& tile, const View& hbm, int64_t offset,
               int64_t row_stride, const std::vector<Dim>& inner, int64_t T, bool to_hbm,
               QueueRing& queues);

// Calls op(rows, first, count) for the valid rows of a tile [128, chunks, ...] that holds T
// positions: all rows of the full chunks [0, T / 128), then the first T % 128 rows of the last
// chunk (its other rows are never written).
template <typename Op>
void for_valid_rows(int64_t T, Op&& op) {
  const int64_t full = T / kPartitions, tail = T % kPartitions;
  if (full > 0) op(kPartitions, int64_t{0}, full);
  if (tail > 0) op(tail, full, int64_t{1});
}

// Columns [start, start + count) of head h of a [P, heads, T] tile: a [P, count] operand.
inline View head_cols(const View& tile, int64_t h, int64_t start, int64_t count) {
  return tile.slice(0, h, 1).slice(1, start, count);
}

// GPT-2's attention: NH heads of C / NH, no window, scale 1 / sqrt(C / NH).
AttentionShape gpt2_shape(int B, int T, int C, int NH);

}  // namespace switchyard::backend::neuron::attention_detail
