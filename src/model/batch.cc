#include "model/batch.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::model {

Batch Batch::windows(const int32_t* tokens, const int32_t* targets, int B, int T) {
  require(B > 0 && T > 0, "a batch needs B > 0 windows of T > 0 tokens, got B {} and T {}", B, T);
  Batch batch;
  const size_t n = static_cast<size_t>(B) * T;
  batch.tokens.assign(tokens, tokens + n);
  if (targets) batch.targets.assign(targets, targets + n);
  batch.positions.resize(n);
  batch.logits_rows.resize(n);
  for (size_t i = 0; i < n; ++i) {
    batch.positions[i] = static_cast<int32_t>(i % T);
    batch.logits_rows[i] = static_cast<int32_t>(i);
  }
  for (int b = 0; b < B; ++b) {
    batch.sequences.push_back({.cache_id = -1, .first_row = b * T, .rows = T, .context = T});
  }
  return batch;
}

bool Batch::uniform_windows(int& batch, int& seq) const {
  if (sequences.empty() || over_cache()) return false;
  const int T = sequences.front().rows;
  for (const Sequence& s : sequences) {
    if (s.rows != T || s.context != T) return false;
  }
  batch = static_cast<int>(sequences.size());
  seq = T;
  return true;
}

void BatchBuilder::add(SequenceId id, const std::vector<int32_t>& tokens, bool logits) {
  require(!tokens.empty(), "a batch chunk needs at least one token");
  for (const Batch::Sequence& s : batch_.sequences) {
    require(s.cache_id != id, "sequence {} is already in this batch", id);
  }
  const int start = cache_.length(id);
  std::vector<std::vector<int32_t>> slots = cache_.append(id, tokens);
  if (batch_.slots.empty()) batch_.slots.resize(slots.size());
  const int first_row = batch_.rows();
  for (size_t g = 0; g < slots.size(); ++g) {
    batch_.slots[g].insert(batch_.slots[g].end(), slots[g].begin(), slots[g].end());
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    batch_.tokens.push_back(tokens[i]);
    batch_.positions.push_back(start + static_cast<int32_t>(i));
  }
  const int rows = static_cast<int>(tokens.size());
  batch_.sequences.push_back(
      {.cache_id = id, .first_row = first_row, .rows = rows, .context = start + rows});
  if (logits) batch_.logits_rows.push_back(first_row + rows - 1);
}

Batch BatchBuilder::build() {
  Batch batch = std::move(batch_);
  batch_ = Batch{};
  const size_t groups = batch.slots.size();
  for (const Batch::Sequence& s : batch.sequences) {
    for (size_t g = 0; g < groups; ++g) {
      batch.max_blocks = std::max(batch.max_blocks,
                                  static_cast<int>(cache_.block_table(s.cache_id, static_cast<int>(g)).size()));
    }
  }
  batch.block_tables.assign(groups, std::vector<int32_t>(batch.sequences.size() * batch.max_blocks, -1));
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    for (size_t g = 0; g < groups; ++g) {
      const std::vector<int32_t>& table =
          cache_.block_table(batch.sequences[s].cache_id, static_cast<int>(g));
      std::copy(table.begin(), table.end(), batch.block_tables[g].begin() + s * batch.max_blocks);
    }
  }
  return batch;
}

}  // namespace switchyard::model
