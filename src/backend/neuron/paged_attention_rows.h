// The paged-attention tile program's (paged_attention_kernel.h) traffic between HBM rows and its
// partition layout (paged_attention_plan.h): each group's Q^T loaded into lanes and sets, -sink
// columns per set, and each group's finished output rows stored back to `out`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/kernel_support.h"
#include "backend/neuron/paged_attention_plan.h"

namespace switchyard::backend::neuron {

class PagedRowTransfers {
 public:
  // Allocates its tiles from `pool` and, with sinks present, loads the -sink columns.
  PagedRowTransfers(NeuronCore& core, TilePool& pool, DmaQueues& queues, const View& q,
                    const View& out, const View& sinks, std::span<const PagedSequence> sequences,
                    const PagedAttentionPlan& plan, const PagedKeyTiles& tiles,
                    const PagedAttentionShape& shape, DType compute);

  // Q^T of group g into its buffer (two alternate; a group's load may start once the scores of
  // the group two before are issued).
  void load_queries(size_t g);
  // A member's set's Q^T: [128 (key-tile rows), 128 (lanes' columns)] of group g's buffer.
  View queries(size_t g, const PagedUnit& u, int64_t set) const;
  // The staging tile of group g's outputs: a member's set in columns (member * sets + set) *
  // head_dim; and their store once the group's last set is written.
  View staged(size_t g) const { return outs_[g % 2]; }
  void store_outputs(size_t g);
  // -sink of each of a set's rows' heads, [partitions, 1]; sinks must be present.
  View negative_sinks(const PagedUnit& u, int64_t set, int64_t partitions) const;

  // SBUF bytes per partition of these tiles.
  static int64_t sbuf_bytes(const PagedAttentionShape& shape, DType compute, DType out);

 private:
  void load_sinks();
  void load_query_lanes(const PagedUnitGroup& group, int64_t set, int64_t first, int64_t count,
                        int64_t step, int64_t row, const View& qt);
  int64_t first_row(const PagedUnit& u) const {
    return sequences_[u.sequence].first_row + u.row0;
  }

  NeuronCore& core_;
  TilePool& pool_;
  DmaQueues& queues_;
  View q_, out_, sinks_;
  std::span<const PagedSequence> sequences_;
  const PagedAttentionPlan& plan_;
  PagedKeyTiles tiles_;
  int64_t heads_, hd_, group_;
  View qt_[2], outs_[2], nsinks_;
  std::vector<int64_t> sink_column_;  // layout -> its first column of nsinks_
  struct QueryZeros {  // the layout a Q^T buffer was zeroed for, and how many column blocks
    size_t layout = SIZE_MAX;
    int64_t blocks = 0;
  };
  QueryZeros qt_zeros_[2];
};

}  // namespace switchyard::backend::neuron
