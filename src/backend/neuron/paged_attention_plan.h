// The host-side plan of the paged-attention tile program (paged_attention_kernel.h): which query
// rows share the partitions of one step, which key blocks each unit walks, and the steps' order.
// It depends only on the launch's sequence lengths and the attention shape, never on values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/neuron/kernel_support.h"
#include "backend/neuron/paged_attention_kernel.h"

namespace switchyard::backend::neuron {

// Keys per score block: at most one PSUM bank of fp32, and as many 128-key chunks as the tiles
// of a launch's shape fit in SBUF (paged_attention_kernel.cc picks).
inline constexpr int64_t kPagedMaxKeyBlock = 512;
inline constexpr int64_t kPagedMinKeyBlock = 128;
inline constexpr int64_t kPagedMaxLanes = 4;    // lanes of a set: 128 partitions / 32
inline constexpr int64_t kPagedMaxGroup = 32;   // units of a group

// Positions [k0, k0 + nk) of one sequence, cut into chunks of up to 128 (keys on partitions).
struct PagedKeyBlock {
  int64_t sequence = 0, k0 = 0, nk = 0;
  int64_t chunks() const { return ceil_div(nk, kPartitions); }
  int64_t chunk_rows(int64_t c) const { return std::min(kPartitions, nk - c * kPartitions); }
};

// Where a unit's query rows sit on partitions.
//
// A lane is `heads_per_lane` query heads of one kv head times the unit's `rows` query rows,
// head-major (row r of head j of the lane at partition j * rows + r), so that one matmul against
// that kv head's K^T gives all of the lane's scores. A lane starts at a multiple of `stride`, the
// partition alignment a tile of its rows needs (32, 64 or 128), and a set is up to
// `lanes_per_set` consecutive lanes: the rows of one step, whose softmax runs as one instruction
// per stage over all of them. Heads share a lane only for single-row units (decode), whose rows
// all sit at one position; with one head per lane, row r sits at the unit's first position + r.
// Either way the causal and window masks stay affine in the partition.
struct PagedRowLayout {
  int64_t heads_per_lane = 1, rows = 1, stride = kPartitions, lanes_per_set = 1, lanes = 0;

  int64_t lane_rows() const { return heads_per_lane * rows; }
  int64_t sets() const { return ceil_div(lanes, lanes_per_set); }
  int64_t lanes_in(int64_t set) const {
    return std::min(lanes_per_set, lanes - set * lanes_per_set);
  }
  // Rows computed for lane `lane` of `set`: the whole stride but for the set's last lane, so
  // that the set's partitions [0, partitions(set)) are all written (rows past a lane's own are
  // padding: finite, never stored).
  int64_t computed_rows(int64_t set, int64_t lane) const {
    return lane + 1 < lanes_in(set) ? stride : lane_rows();
  }
  int64_t partitions(int64_t set) const { return (lanes_in(set) - 1) * stride + lane_rows(); }
  int64_t first_head(int64_t set, int64_t lane) const {
    return (set * lanes_per_set + lane) * heads_per_lane;
  }
  // The kv head of a lane, with `group` query heads per kv head.
  int64_t kv_head(int64_t set, int64_t lane, int64_t group) const {
    return first_head(set, lane) / group;
  }
  // Sets that have a lane at position `lane`.
  int64_t sets_with_lane(int64_t lane) const {
    return lane < lanes ? ceil_div(lanes - lane, lanes_per_set) : 0;
  }
  // Each lane's rows sit in the natural [rows, heads * head_dim] layout of the output.
  bool natural() const { return lanes_per_set == 1 && heads_per_lane == 1; }
  bool operator==(const PagedRowLayout&) const = default;
};

// The layout of a unit of `rows` query rows.
PagedRowLayout paged_row_layout(int64_t rows, const PagedAttentionShape& shape);

// How kv heads share K^T tiles: a tile holds `heads` consecutive kv heads, each `slot`
// partitions apart (head_dim rounded up to 32, 64 or 128), so that one transpose, one copy and
// one scores matmul serve all of them. A lane's Q^T sits on its kv head's partitions.
struct PagedKeyTiles {
  int64_t kv_heads = 0, head_dim = 0, slot = 0, heads = 0;

  explicit PagedKeyTiles(const PagedAttentionShape& shape)
      : kv_heads(shape.kv_heads), head_dim(shape.head_dim),
        slot(shape.head_dim <= 32 ? 32 : shape.head_dim <= 64 ? 64 : kPartitions),
        heads(std::min<int64_t>(kPartitions / slot, shape.kv_heads)) {}
  int64_t tiles() const { return ceil_div(kv_heads, heads); }
  int64_t tile_of(int64_t kvh) const { return kvh / heads; }
  int64_t row_of(int64_t kvh) const { return kvh % heads * slot; }  // first partition
  int64_t heads_in(int64_t tile) const { return std::min(heads, kv_heads - tile * heads); }
  int64_t rows(int64_t tile) const { return (heads_in(tile) - 1) * slot + head_dim; }
};

// Up to 128 query rows of one sequence, at positions [pos0, pos0 + mq).
struct PagedUnit {
  int64_t sequence = 0, row0 = 0, mq = 0, pos0 = 0;
  size_t first_block = 0, blocks = 0;  // its key blocks in the plan's list
  size_t layout = 0;                   // index into the plan's layouts
  size_t group = 0;                    // its group in the plan's list, and its place there
  int64_t member = 0;
};

// Consecutive units whose queries load and whose outputs store together, one DMA per lane
// pattern for all of them: decode units (one row each, the same layout) on consecutive rows of
// q and out, at most as many as keep members * sets <= heads (the tiles a unit of one head per
// set needs then hold a whole group). Any other unit is a group by itself.
struct PagedUnitGroup {
  size_t first_unit = 0, units = 0;
};

// One (unit, key block, row set): scores, softmax and P V of the set's rows over the block.
struct PagedStep {
  size_t unit = 0, block = 0;
  int64_t kb = 0, set = 0;  // block within the unit, row set
};

struct PagedAttentionPlan {
  int64_t key_block = kPagedMaxKeyBlock;  // keys per block: 128, 256 or 512
  std::vector<PagedUnit> units;
  std::vector<PagedKeyBlock> blocks;
  std::vector<PagedStep> steps;           // unit-major, then key block, then set
  std::vector<PagedRowLayout> layouts;    // the distinct layouts of the units
  std::vector<PagedUnitGroup> groups;
};

PagedAttentionPlan plan_paged_attention(std::span<const PagedSequence> sequences,
                                        const PagedAttentionShape& shape,
                                        int64_t key_block = kPagedMaxKeyBlock);

}  // namespace switchyard::backend::neuron
