#include "backend/neuron/paged_attention_plan.h"

namespace switchyard::backend::neuron {

namespace {

// The partition alignment of a tile of `rows` partitions: up to 32 start at multiples of 32, up
// to 64 at 0 or 64, more at 0.
int64_t aligned_stride(int64_t rows) { return rows <= 32 ? 32 : rows <= 64 ? 64 : kPartitions; }

// Index of `layout` in `layouts`, appended when new.
size_t layout_index(std::vector<PagedRowLayout>& layouts, const PagedRowLayout& layout) {
  const auto it = std::find(layouts.begin(), layouts.end(), layout);
  if (it != layouts.end()) return static_cast<size_t>(it - layouts.begin());
  layouts.push_back(layout);
  return layouts.size() - 1;
}

// Puts unit `u` (the plan's last) in the last group, or in a new one.
void join_group(PagedAttentionPlan& plan, std::span<const PagedSequence> sequences,
                const PagedAttentionShape& shape) {
  PagedUnit& u = plan.units.back();
  auto row = [&](const PagedUnit& x) { return sequences[x.sequence].first_row + x.row0; };
  if (plan.units.size() >= 2 && !plan.groups.empty()) {
    const PagedUnit& prev = plan.units[plan.units.size() - 2];
    PagedUnitGroup& g = plan.groups.back();
    const int64_t cap = std::min<int64_t>(
        kPagedMaxGroup, shape.heads / plan.layouts[u.layout].sets());
    if (u.mq == 1 && prev.mq == 1 && u.layout == prev.layout && row(u) == row(prev) + 1 &&
        static_cast<int64_t>(g.units) < cap) {
      u.group = plan.groups.size() - 1;
      u.member = static_cast<int64_t>(g.units++);
      return;
    }
  }
  u.group = plan.groups.size();
  u.member = 0;
  plan.groups.push_back({plan.units.size() - 1, 1});
}

}  // namespace

PagedRowLayout paged_row_layout(int64_t rows, const PagedAttentionShape& shape) {
  const int64_t group = shape.heads / shape.kv_heads;
  PagedRowLayout l;
  l.rows = rows;
  if (rows == 1) {
    // The most heads of one kv head that fit a tile: all of them unless the group exceeds 128.
    for (int64_t g = std::min(group, kPartitions); g >= 1; --g) {
      if (group % g == 0) {
        l.heads_per_lane = g;
        break;
      }
    }
  }
  l.stride = aligned_stride(l.lane_rows());
  l.lanes_per_set = kPartitions / l.stride;
  l.lanes = shape.heads / l.heads_per_lane;
  return l;
}

PagedAttentionPlan plan_paged_attention(std::span<const PagedSequence> sequences,
                                        const PagedAttentionShape& shape, int64_t key_block) {
  PagedAttentionPlan plan;
  plan.key_block = key_block;
  for (size_t s = 0; s < sequences.size(); ++s) {
    const PagedSequence& seq = sequences[s];
    const int64_t first_pos = seq.context - seq.rows;
    for (int64_t r0 = 0; r0 < seq.rows; r0 += kPartitions) {
      PagedUnit u{static_cast<int64_t>(s), r0, std::min(kPartitions, seq.rows - r0),
                  first_pos + r0};
      const PagedRowLayout layout = paged_row_layout(u.mq, shape);
      u.layout = layout_index(plan.layouts, layout);
      // Keys the unit's rows may see: causal, and from the first row's window start.
      const int64_t lo = shape.window > 0 ? std::max<int64_t>(0, u.pos0 - shape.window + 1) : 0;
      const int64_t hi = u.pos0 + u.mq;
      u.first_block = plan.blocks.size();
      for (int64_t k0 = lo; k0 < hi; k0 += key_block)
        plan.blocks.push_back({u.sequence, k0, std::min(key_block, hi - k0)});
      u.blocks = plan.blocks.size() - u.first_block;
      for (size_t b = 0; b < u.blocks; ++b) {
        for (int64_t set = 0; set < layout.sets(); ++set)
          plan.steps.push_back({plan.units.size(), u.first_block + b, static_cast<int64_t>(b), set});
      }
      plan.units.push_back(u);
      join_group(plan, sequences, shape);
    }
  }
  return plan;
}

}  // namespace switchyard::backend::neuron
