// One forward pass's worth of tokens: a flat list of rows from one or more sequences.
//
// The same Batch describes a training step (B windows of T tokens, with targets, no cache), a chunk
// of a long prompt, and one decode step over many sequences of different lengths (rows over a
// KvCache). Each sequence's rows are contiguous and at consecutive positions, ending at position
// context - 1; only the rows listed in logits_rows get logits.
#pragma once

#include <cstdint>
#include <vector>

#include "model/kv_cache.h"

namespace switchyard::model {

struct Batch {
  struct Sequence {
    SequenceId cache_id = -1;  // the KvCache sequence; -1 for windows without a cache
    int first_row = 0;
    int rows = 0;
    int context = 0;           // tokens of the sequence the rows attend over, theirs included
  };

  std::vector<int32_t> tokens;     // [N]
  std::vector<int32_t> positions;  // [N]
  std::vector<int32_t> targets;    // [N], or empty when no loss is wanted
  std::vector<Sequence> sequences;
  std::vector<int32_t> logits_rows;  // rows whose logits are computed, in order

  // Over a cache only: per cache group, each row's slot [N] and the block tables [S, max_blocks]
  // (row-major, -1 where a sequence has fewer blocks or a window freed them).
  std::vector<std::vector<int32_t>> slots;
  std::vector<std::vector<int32_t>> block_tables;
  int max_blocks = 0;

  int rows() const { return static_cast<int>(tokens.size()); }
  bool over_cache() const { return !slots.empty(); }
  // B windows of T tokens each at positions 0..T-1 (training and evaluation): every row gets
  // logits; targets may be null.
  static Batch windows(const int32_t* tokens, const int32_t* targets, int B, int T);
  // True when every sequence is a window of the same length starting at position 0 (the form
  // training attention takes), which sets `batch` and `seq`.
  bool uniform_windows(int& batch, int& seq) const;
};

// Builds a Batch of sequence chunks over a KvCache, appending the chunks' tokens to the cache.
class BatchBuilder {
 public:
  explicit BatchBuilder(KvCache& cache) : cache_(cache) {}
  // Adds `tokens` as the next tokens of cache sequence `id`; with `logits`, the last of them gets
  // logits. Throws KvCacheFull (adding nothing) when the cache cannot hold them.
  void add(SequenceId id, const std::vector<int32_t>& tokens, bool logits);
  bool empty() const { return batch_.tokens.empty(); }
  // The batch, with the block tables as they stand after every add.
  Batch build();

 private:
  KvCache& cache_;
  Batch batch_;
};

}  // namespace switchyard::model
