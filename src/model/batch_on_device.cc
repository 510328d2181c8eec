#include "model/batch_on_device.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::model {

void BatchOnDevice::upload(const Batch& batch) {
  const int N = batch.rows();
  const int S = static_cast<int>(batch.sequences.size());
  require(N > 0, "a forward pass needs at least one token");
  require(batch.positions.size() == static_cast<size_t>(N), "batch: {} positions for {} tokens",
          batch.positions.size(), N);
  require(batch.targets.empty() || batch.targets.size() == static_cast<size_t>(N),
          "batch: {} targets for {} tokens", batch.targets.size(), N);
  // Everything goes into one host array, then one copy: tokens, positions, targets, logits rows,
  // per group slots and block tables, query starts, context lengths.
  std::vector<int32_t> host;
  auto append = [&](const std::vector<int32_t>& values) {
    const size_t at = host.size();
    host.insert(host.end(), values.begin(), values.end());
    host.resize((host.size() + 15) / 16 * 16);  // keep each part 64-byte aligned
    return at;
  };
  const size_t tokens_at = append(batch.tokens), positions_at = append(batch.positions);
  const size_t targets_at = append(batch.targets), logits_at = append(batch.logits_rows);
  std::vector<size_t> slots_at, tables_at;
  for (size_t g = 0; g < batch.slots.size(); ++g) {
    slots_at.push_back(append(batch.slots[g]));
    tables_at.push_back(append(batch.block_tables[g]));
  }
  std::vector<int32_t> starts(S + 1, 0), contexts(S, 0);
  max_query = max_context = 0;
  for (int s = 0; s < S; ++s) {
    const Batch::Sequence& seq = batch.sequences[s];
    require(seq.first_row == starts[s], "batch: sequence {} starts at row {}, expected {}", s,
            seq.first_row, starts[s]);
    starts[s + 1] = starts[s] + seq.rows;
    contexts[s] = seq.context;
    max_query = std::max(max_query, seq.rows);
    max_context = std::max(max_context, seq.context);
  }
  require(starts[S] == N, "batch: its sequences cover {} rows of {}", starts[S], N);
  const size_t starts_at = append(starts), contexts_at = append(contexts);

  if (host.size() > capacity_) {
    buffer_ = DeviceBuffer(backend_, host.size());
    capacity_ = host.size();
  }
  int32_t* base = reinterpret_cast<int32_t*>(buffer_.get());
  backend_.copy_to_device(base, host.data(), host.size() * sizeof(int32_t));
  auto view = [&](size_t at, int64_t n) { return Tensor::dense(base + at, DType::kI32, {n}); };

  rows = N;
  tokens = view(tokens_at, N);
  positions = view(positions_at, N);
  targets = batch.targets.empty() ? Tensor{} : view(targets_at, N);
  logits = static_cast<int>(batch.logits_rows.size());
  logits_rows = view(logits_at, logits);
  all_rows_get_logits = logits == N;
  for (int i = 0; all_rows_get_logits && i < N; ++i) {
    all_rows_get_logits = batch.logits_rows[i] == i;
  }
  windows = window_length = 0;
  slots.clear();
  block_tables.clear();
  if (!batch.over_cache()) {
    require(batch.uniform_windows(windows, window_length),
            "batch: without a KV cache every sequence must be a window of the same length "
            "starting at position 0");
    return;
  }
  for (size_t g = 0; g < batch.slots.size(); ++g) {
    slots.push_back(view(slots_at[g], N));
    const Tensor table = view(tables_at[g], static_cast<int64_t>(S) * batch.max_blocks);
    block_tables.push_back(table.reshape({S, batch.max_blocks}));
  }
  query_start = view(starts_at, S + 1);
  context_len = view(contexts_at, S);
}

}  // namespace switchyard::model
