#include "backend/neuron/paged_attention_rows.h"

#include <algorithm>
#include <string>

namespace switchyard::backend::neuron {

namespace {

// At most four arrangements of sinks: decode rows, and one-head lanes at strides 32, 64, 128.
constexpr int64_t kSinkArrangements = 4;

}  // namespace

int64_t PagedRowTransfers::sbuf_bytes(const PagedAttentionShape& shape, DType compute, DType out) {
  const int64_t H = shape.heads, hd = shape.head_dim;
  return 2 * (H * kPartitions * ::switchyard::dtype_bytes(compute) +
              H * hd * ::switchyard::dtype_bytes(out)) +
         kSinkArrangements * H * 4;
}

PagedRowTransfers::PagedRowTransfers(NeuronCore& core, TilePool& pool, DmaQueues& queues,
                                     const View& q, const View& out, const View& sinks,
                                     std::span<const PagedSequence> sequences,
                                     const PagedAttentionPlan& plan, const PagedKeyTiles& tiles,
                                     const PagedAttentionShape& shape, DType compute)
    : core_(core), pool_(pool), queues_(queues), q_(q), out_(out), sinks_(sinks),
      sequences_(sequences), plan_(plan), tiles_(tiles), heads_(shape.heads),
      hd_(shape.head_dim), group_(shape.heads / shape.kv_heads) {
  for (int i = 0; i < 2; ++i) {
    const std::string n = "paged." + std::to_string(i);
    qt_[i] = pool.sbuf(kPartitions, {heads_, kPartitions}, compute, n + ".qT");
    outs_[i] = pool.sbuf(kPartitions, {heads_ * hd_}, out_.dtype(), n + ".out");
  }
  if (present(sinks_)) load_sinks();
}

// -sink of each row's head, a column per set of each arrangement of heads on partitions: a
// lane of one head has its sink on every row of its stride; a lane of several heads, on each
// head's row (padding rows 0). Layouts that differ only in rows per head share columns.
void PagedRowTransfers::load_sinks() {
  std::vector<PagedRowLayout> arrangements;
  for (const PagedRowLayout& l : plan_.layouts) {
    PagedRowLayout a = l;
    a.rows = 1;
    auto it = std::find(arrangements.begin(), arrangements.end(), a);
    if (it == arrangements.end()) it = arrangements.insert(arrangements.end(), a);
    sink_column_.push_back((it - arrangements.begin()) * heads_);
  }
  nsinks_ = pool_.sbuf(kPartitions, {static_cast<int64_t>(arrangements.size()) * heads_},
                       DType::kF32, "paged.nsinks");
  core_.memset(nsinks_, 0.0f, Engine::kGpSimd);
  for (size_t a = 0; a < arrangements.size(); ++a) {
    const PagedRowLayout& l = arrangements[a];
    for (int64_t lane = 0; lane < l.lanes_per_set; ++lane) {
      const int64_t sets = l.sets_with_lane(lane);
      if (sets == 0) continue;
      const bool one_head = l.heads_per_lane == 1;
      const int64_t rows = one_head ? l.stride : l.heads_per_lane;
      core_.dma_copy(
          nsinks_.rows(lane * l.stride, rows).cols(static_cast<int64_t>(a) * heads_, sets),
          sinks_.pattern(l.first_head(0, lane), Dim{rows, one_head ? 0 : 1},
                         {Dim{sets, l.lanes_per_set * l.heads_per_lane}}),
          queues_.load());
    }
  }
  core_.tensor_scalar(nsinks_, nsinks_, AluOp::kMultiply, -1.0f);
}

View PagedRowTransfers::negative_sinks(const PagedUnit& u, int64_t set, int64_t partitions) const {
  return nsinks_.rows(0, partitions).cols(sink_column_[u.layout] + set, 1);
}

// A member's set s in column block member * sets + s of the group's buffer, lane l of the set
// in columns [l * stride, (l + 1) * stride), on its kv head's partitions of a key tile; zero
// elsewhere, including the padding columns of lanes that compute a whole stride (so that their
// rows stay finite). The zeros are written when a buffer first holds a layout (or more members
// of it); loads of that layout write only the same places.
void PagedRowTransfers::load_queries(size_t g) {
  if (g >= plan_.groups.size()) return;
  const PagedUnitGroup& group = plan_.groups[g];
  const PagedUnit& un = plan_.units[group.first_unit];
  const PagedRowLayout& l = plan_.layouts[un.layout];
  const View qt = qt_[g % 2];
  const int64_t blocks = static_cast<int64_t>(group.units) * l.sets();
  QueryZeros& zeros = qt_zeros_[g % 2];
  if (zeros.layout != un.layout || zeros.blocks < blocks) {
    core_.memset(qt.slice(0, 0, blocks), 0.0f, Engine::kGpSimd);
    zeros = {un.layout, blocks};
  }
  auto row_of = [&](int64_t set, int64_t lane) {
    return tiles_.row_of(l.kv_head(set, lane, group_));
  };
  for (int64_t set = 0; set < l.sets(); ++set) {
    // One DMA per run of lanes at one key row, evenly spaced (a decode set alternates rows).
    std::vector<bool> loaded(static_cast<size_t>(l.lanes_in(set)), false);
    for (int64_t a = 0; a < l.lanes_in(set); ++a) {
      if (loaded[a]) continue;
      const int64_t row = row_of(set, a);
      int64_t step = 0, count = 1;
      for (int64_t b = a + 1; b < l.lanes_in(set); ++b) {
        if (loaded[b] || row_of(set, b) != row) continue;
        if (step == 0) step = b - a;
        if (b != a + count * step) break;
        ++count;
      }
      step = std::max<int64_t>(step, 1);
      for (int64_t k = 0; k < count; ++k) loaded[a + k * step] = true;
      load_query_lanes(group, set, a, count, step, row, qt);
    }
  }
}

// Lanes first, first + step, ... (count of them) of a set of every member of a group, at
// partition `row`. Members sit on consecutive rows of q (or there is one).
void PagedRowTransfers::load_query_lanes(const PagedUnitGroup& group, int64_t set, int64_t first,
                                         int64_t count, int64_t step, int64_t row,
                                         const View& qt) {
  const PagedUnit& un = plan_.units[group.first_unit];
  const PagedRowLayout& l = plan_.layouts[un.layout];
  const int64_t members = static_cast<int64_t>(group.units);
  const View dst = qt.rows(row, hd_)
                       .slice(0, set, members, l.sets())
                       .split(1, l.stride)
                       .slice(1, first, count, step)
                       .slice(2, 0, l.lane_rows())
                       .split(2, un.mq);
  const int64_t ldq = q_.partition_stride();
  core_.dma_copy(dst,
                 q_.pattern(first_row(un) * ldq + l.first_head(set, first) * hd_, Dim{hd_, 1},
                            {Dim{members, ldq}, Dim{count, step * l.heads_per_lane * hd_},
                             Dim{l.heads_per_lane, hd_}, Dim{un.mq, ldq}}),
                 queues_.load());
}

View PagedRowTransfers::queries(size_t g, const PagedUnit& u, int64_t set) const {
  return qt_[g % 2].slice(0, u.member * plan_.layouts[u.layout].sets() + set, 1);
}

// A natural layout's unit all at once, otherwise each lane of each set (one row's heads, or one
// head's rows) of all members at once.
void PagedRowTransfers::store_outputs(size_t g) {
  const PagedUnitGroup& group = plan_.groups[g];
  const PagedUnit& u = plan_.units[group.first_unit];
  const PagedRowLayout& l = plan_.layouts[u.layout];
  const View staged = outs_[g % 2];
  const int64_t row = first_row(u);
  if (l.natural()) {
    split_copy(core_, out_.rows(row, u.mq), staged.rows(0, u.mq).cols(0, l.sets() * hd_),
               queues_.stores(), [&] { return queues_.store(); });
    return;
  }
  const int64_t ldo = out_.partition_stride();
  const int64_t row_step = l.heads_per_lane > 1 ? hd_ : ldo;  // next head, or next row
  const int64_t members = static_cast<int64_t>(group.units);
  for (int64_t set = 0; set < l.sets(); ++set) {
    for (int64_t lane = 0; lane < l.lanes_in(set); ++lane) {
      const View src = staged.rows(lane * l.stride, l.lane_rows())
                           .cols(0, members * l.sets() * hd_)
                           .split(0, l.sets() * hd_)
                           .slice(1, set * hd_, hd_);
      core_.dma_copy(out_.pattern(row * ldo + l.first_head(set, lane) * hd_,
                                  Dim{l.lane_rows(), row_step}, {Dim{members, ldo}, Dim{hd_, 1}}),
                     src, queues_.store());
    }
  }
}

}  // namespace switchyard::backend::neuron
