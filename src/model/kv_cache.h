// The paged KV cache: keys and values of every running sequence in pools of fixed-size blocks,
// owned by whoever runs sequences (generate, the server), not by the model.
//
// Layers are grouped by attention kind: all full-attention layers share one group, the
// sliding-window layers of one window size another. Each group has its own pool of blocks (one
// [blocks, block_size, kv_heads, head_dim] tensor for K and one for V per layer of the group) and
// its own block table per sequence; a sliding-window group frees the blocks that slide out of
// every future query's window, so its pool stays small however long the sequences grow.
//
// Full blocks are immutable and may be shared: each full block of a group is registered under a
// hash of its tokens and everything before them, a new sequence whose prompt starts with the same
// tokens takes those blocks (reference-counted) instead of computing them again, and a block
// whose last user ends stays cached (least recently used first to be reused) until its memory is
// needed. Running out of blocks is a clear Error (KvCacheFull), never a crash; callers that can
// wait (the server's scheduler) ask can_append() first.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "model/device_buffer.h"

namespace switchyard::model {

struct KvCacheGroup {
  int window = 0;              // 0: full attention
  std::vector<int> layers;     // model layers in this group
  int blocks = 0;              // blocks in the group's pool
};

struct KvCacheConfig {
  int kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  DType dtype = DType::kF32;
  std::vector<KvCacheGroup> groups;
};

// Thrown when a sequence needs more blocks than the pool can give.
class KvCacheFull : public Error {
 public:
  KvCacheFull(int needed, int available, int total);
  int needed, available, total;
};

using SequenceId = int64_t;

class KvCache {
 public:
  KvCache(backend::Backend& backend, const KvCacheConfig& config);

  const KvCacheConfig& config() const { return config_; }
  int block_size() const { return config_.block_size; }

  // ---- sequences ----
  // Starts an empty sequence.
  SequenceId add_sequence();
  // Starts a sequence whose first tokens are `prompt`, taking the cached blocks of its longest
  // cached prefix (whole blocks, leaving at least the last prompt token to compute). Returns the
  // sequence and how many prompt tokens are already in the cache.
  std::pair<SequenceId, int> add_sequence_with_prefix(const std::vector<int32_t>& prompt);
  // Ends a sequence: its blocks return to the pools (full ones stay cached for reuse).
  void free_sequence(SequenceId id);
  bool has_sequence(SequenceId id) const { return sequences_.count(id) != 0; }
  int sequences() const { return static_cast<int>(sequences_.size()); }
  // Tokens in the cache for a sequence.
  int length(SequenceId id) const;

  // ---- growing ----
  // Whether `tokens` more tokens of sequence `id` fit in every group's pool now.
  bool can_append(SequenceId id, int tokens) const;
  // Whether all of these (sequence, tokens) appends fit together (counting the blocks that slide
  // out of a window as the appends release them); otherwise the blocks missing in the shortest
  // pool, through `missing` when given.
  bool can_append(const std::vector<std::pair<SequenceId, int>>& appends,
                  int* missing = nullptr) const;
  // Makes room for `tokens` more tokens (their ids, for prefix registration) and returns, per
  // group, each new token's slot (block * block_size + offset). Throws KvCacheFull, changing
  // nothing, when a pool is short.
  std::vector<std::vector<int32_t>> append(SequenceId id, const std::vector<int32_t>& tokens);

  // ---- what the attention ops read ----
  // Group g's block table of a sequence: block ids for positions [0, length), -1 where a sliding
  // window has freed them.
  const std::vector<int32_t>& block_table(SequenceId id, int group) const;
  int group_of_layer(int layer) const;
  // Layer l's cache tensors, [blocks, block_size, kv_heads, head_dim].
  Tensor keys(int layer) const;
  Tensor values(int layer) const;

  // ---- accounting ----
  int free_blocks(int group) const;   // free or cached but unused
  int used_blocks(int group) const;   // held by at least one sequence
  int total_blocks(int group) const { return config_.groups[group].blocks; }
  int64_t prefix_hits() const { return prefix_hit_tokens_; }

 private:
  // Asks the backend to back the pools with memory now (Backend::make_resident), front first.
  void make_pools_resident();

  struct Block {
    int refs = 0;
    std::optional<uint64_t> hash;            // set once the block is full and registered
    std::list<int>::iterator lru;            // position in cached_ when refs == 0 and hashed
  };
  struct Pool {
    std::vector<Block> blocks;
    std::vector<int> free;                   // never hashed, or evicted
    std::list<int> cached;                   // refs == 0 but hashed: reusable, oldest first
    std::unordered_map<uint64_t, int> by_hash;
  };
  struct Sequence {
    int length = 0;
    std::vector<uint64_t> block_hashes;      // chained hash of each full block of tokens
    std::vector<int32_t> partial;            // tokens of the block being filled
    std::vector<std::vector<int32_t>> tables;  // per group
  };

  int blocks_needed(const Sequence& s, int group, int tokens) const;
  int take_block(int group);
  void release_block(int group, int block);
  // Blocks [0, n) of the group's table lie wholly before the next query's window.
  int blocks_out_of_window(const Sequence& s, int group) const;
  // Blocks the next append returns to the group's pool by releasing them first.
  int released_before_append(const Sequence& s, int group) const;
  void release_out_of_window(Sequence& s, int group);
  const Sequence& sequence(SequenceId id) const;

  backend::Backend& backend_;
  KvCacheConfig config_;
  std::vector<int> layer_group_;
  std::vector<DeviceBuffer> keys_, values_;  // per layer
  std::vector<int> layer_slot_;              // index into keys_/values_ per layer
  std::vector<Pool> pools_;
  std::map<SequenceId, Sequence> sequences_;
  SequenceId next_id_ = 0;
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace switchyard::model
