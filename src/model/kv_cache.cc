#include "model/kv_cache.h"

#include <algorithm>

#include <fmt/format.h>

namespace switchyard::model {
namespace {

// splitmix64's finaliser: a well-mixed 64-bit hash step.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The key of a full block: its tokens and the key of the block before it, so that equal keys mean
// (up to a 2^-64 chance) equal prefixes.
uint64_t block_hash(uint64_t parent, const int32_t* tokens, int count) {
  uint64_t h = mix(parent ^ 0x5157a7c4e2b1d3f9ull);
  for (int i = 0; i < count; ++i) h = mix(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

KvCacheFull::KvCacheFull(int needed_blocks, int available_blocks, int total_blocks)
    : Error(fmt::format("KV cache exhausted: {} more blocks needed, {} free of {}", needed_blocks,
                        available_blocks, total_blocks)),
      needed(needed_blocks),
      available(available_blocks),
      total(total_blocks) {}

KvCache::KvCache(backend::Backend& backend, const KvCacheConfig& config)
    : backend_(backend), config_(config) {
  require(config.kv_heads > 0 && config.head_dim > 0, "KV cache: kv_heads {} and head_dim {} must "
          "be positive", config.kv_heads, config.head_dim);
  require(config.block_size > 0 && config.block_size <= 256,
          "KV cache: block size {} must be in [1, 256]", config.block_size);
  require(!config.groups.empty(), "KV cache: no layer groups");
  int layers = 0;
  for (const KvCacheGroup& g : config.groups) {
    require(g.blocks > 0 && g.window >= 0, "KV cache: a group needs blocks > 0 and window >= 0");
    for (int l : g.layers) layers = std::max(layers, l + 1);
  }
  layer_group_.assign(layers, -1);
  layer_slot_.assign(layers, -1);
  const size_t row_bytes = static_cast<size_t>(config.kv_heads) * config.head_dim *
                           static_cast<size_t>(dtype_bytes(config.dtype));
  for (size_t g = 0; g < config.groups.size(); ++g) {
    const KvCacheGroup& group = config.groups[g];
    for (int l : group.layers) {
      require(l >= 0 && layer_group_[l] < 0, "KV cache: layer {} is in two groups or negative", l);
      layer_group_[l] = static_cast<int>(g);
      layer_slot_[l] = static_cast<int>(keys_.size());
      const size_t bytes = static_cast<size_t>(group.blocks) * config.block_size * row_bytes;
      keys_.emplace_back(backend, (bytes + 3) / 4);
      values_.emplace_back(backend, (bytes + 3) / 4);
    }
    Pool pool;
    pool.blocks.resize(group.blocks);
    for (int b = group.blocks - 1; b >= 0; --b) pool.free.push_back(b);
    pools_.push_back(std::move(pool));
  }
  for (int l = 0; l < layers; ++l) {
    require(layer_group_[l] >= 0, "KV cache: layer {} is in no group", l);
  }
  // Otherwise each fresh block faults in at its first write, in the middle of a decode step.
  make_pools_resident();
}

void KvCache::make_pools_resident() {
  // Blocks are taken from the front of each pool: every buffer's front is made resident, a
  // slice more in each round, until the backend's budget runs out or the pools are whole.
  constexpr int kBlocksPerRound = 64;
  const size_t block_bytes = static_cast<size_t>(config_.block_size) * config_.kv_heads *
                             config_.head_dim * dtype_bytes(config_.dtype);
  std::vector<int> blocks(keys_.size());
  for (size_t l = 0; l < layer_slot_.size(); ++l) {
    blocks[layer_slot_[l]] = config_.groups[layer_group_[l]].blocks;
  }
  for (int round = 1;; ++round) {
    bool more = false;
    for (size_t i = 0; i < keys_.size(); ++i) {
      const size_t wanted = block_bytes * std::min(blocks[i], round * kBlocksPerRound);
      for (DeviceBuffer* b : {&keys_[i], &values_[i]}) {
        if (b->make_resident(wanted) < wanted) return;
      }
      more |= round * kBlocksPerRound < blocks[i];
    }
    if (!more) return;
  }
}

const KvCache::Sequence& KvCache::sequence(SequenceId id) const {
  auto it = sequences_.find(id);
  require(it != sequences_.end(), "KV cache: no sequence {}", id);
  return it->second;
}

SequenceId KvCache::add_sequence() {
  Sequence s;
  s.tables.resize(pools_.size());
  sequences_.emplace(next_id_, std::move(s));
  return next_id_++;
}

std::pair<SequenceId, int> KvCache::add_sequence_with_prefix(const std::vector<int32_t>& prompt) {
  const int bs = config_.block_size;
  // Keys of the prompt's full blocks, leaving the last token to be computed (its logits are the
  // point of running the prompt).
  const int usable = std::max(0, static_cast<int>(prompt.size()) - 1) / bs;
  std::vector<uint64_t> hashes;
  uint64_t parent = 0;
  for (int k = 0; k < usable; ++k) {
    parent = block_hash(parent, prompt.data() + static_cast<size_t>(k) * bs, bs);
    hashes.push_back(parent);
  }
  // The longest prefix of whole blocks that every group holds: full groups all its blocks,
  // sliding-window groups those the next query's window reaches.
  auto lookup = [&](int group, int k) -> int {
    const Pool& pool = pools_[group];
    auto it = pool.by_hash.find(hashes[k]);
    return it == pool.by_hash.end() ? -1 : it->second;
  };
  auto first_block = [&](int group, int tokens) {
    const int window = config_.groups[group].window;
    return window > 0 ? std::max(0, tokens - window + 1) / bs : 0;
  };
  int matched = 0;
  for (int k = usable; k > 0; --k) {
    bool all = true;
    for (size_t g = 0; g < pools_.size() && all; ++g) {
      for (int b = first_block(static_cast<int>(g), k * bs); b < k && all; ++b) {
        all = lookup(static_cast<int>(g), b) >= 0;
      }
    }
    if (all) {
      matched = k;
      break;
    }
  }
  const SequenceId id = add_sequence();
  Sequence& s = sequences_.at(id);
  for (size_t g = 0; g < pools_.size(); ++g) {
    Pool& pool = pools_[g];
    const int first = first_block(static_cast<int>(g), matched * bs);
    for (int b = 0; b < matched; ++b) {
      if (b < first) {
        s.tables[g].push_back(-1);
        continue;
      }
      const int block = lookup(static_cast<int>(g), b);
      Block& entry = pool.blocks[block];
      if (entry.refs++ == 0) pool.cached.erase(entry.lru);
      s.tables[g].push_back(block);
    }
  }
  s.length = matched * bs;
  s.block_hashes.assign(hashes.begin(), hashes.begin() + matched);
  prefix_hit_tokens_ += s.length;
  return {id, s.length};
}

void KvCache::free_sequence(SequenceId id) {
  auto it = sequences_.find(id);
  require(it != sequences_.end(), "KV cache: no sequence {}", id);
  for (size_t g = 0; g < pools_.size(); ++g) {
    for (int32_t block : it->second.tables[g]) {
      if (block >= 0) release_block(static_cast<int>(g), block);
    }
  }
  sequences_.erase(it);
}

int KvCache::length(SequenceId id) const { return sequence(id).length; }

int KvCache::blocks_needed(const Sequence& s, int group, int tokens) const {
  return std::max(0, ceil_div(s.length + tokens, config_.block_size) -
                         static_cast<int>(s.tables[group].size()));
}

bool KvCache::can_append(SequenceId id, int tokens) const { return can_append({{id, tokens}}); }

bool KvCache::can_append(const std::vector<std::pair<SequenceId, int>>& appends,
                         int* missing) const {
  int short_by = 0;
  for (size_t g = 0; g < pools_.size(); ++g) {
    // append() first releases what slid out of the window, so those blocks count as available.
    int needed = 0, available = free_blocks(static_cast<int>(g));
    for (const auto& [id, tokens] : appends) {
      needed += blocks_needed(sequence(id), static_cast<int>(g), tokens);
      available += released_before_append(sequence(id), static_cast<int>(g));
    }
    short_by = std::max(short_by, needed - available);
  }
  if (missing) *missing = short_by;
  return short_by <= 0;
}

std::vector<std::vector<int32_t>> KvCache::append(SequenceId id,
                                                  const std::vector<int32_t>& tokens) {
  auto it = sequences_.find(id);
  require(it != sequences_.end(), "KV cache: no sequence {}", id);
  Sequence& s = it->second;
  const int n = static_cast<int>(tokens.size()), bs = config_.block_size;
  for (size_t g = 0; g < pools_.size(); ++g) release_out_of_window(s, static_cast<int>(g));
  for (size_t g = 0; g < pools_.size(); ++g) {
    const int needed = blocks_needed(s, static_cast<int>(g), n);
    const int available = free_blocks(static_cast<int>(g));
    if (needed > available) throw KvCacheFull(needed, available, total_blocks(static_cast<int>(g)));
  }
  std::vector<std::vector<int32_t>> slots(pools_.size());
  for (size_t g = 0; g < pools_.size(); ++g) {
    std::vector<int32_t>& table = s.tables[g];
    const int needed = blocks_needed(s, static_cast<int>(g), n);
    for (int i = 0; i < needed; ++i) table.push_back(take_block(static_cast<int>(g)));
    for (int i = 0; i < n; ++i) {
      const int pos = s.length + i;
      slots[g].push_back(table[pos / bs] * bs + pos % bs);
    }
  }
  // Register every block these tokens complete, so later sequences can share it.
  for (int i = 0; i < n; ++i) {
    s.partial.push_back(tokens[i]);
    if (static_cast<int>(s.partial.size()) < bs) continue;
    const uint64_t parent = s.block_hashes.empty() ? 0 : s.block_hashes.back();
    const uint64_t hash = block_hash(parent, s.partial.data(), bs);
    const int index = static_cast<int>(s.block_hashes.size());
    s.block_hashes.push_back(hash);
    s.partial.clear();
    for (size_t g = 0; g < pools_.size(); ++g) {
      Pool& pool = pools_[g];
      const int block = s.tables[g][index];
      if (block < 0 || pool.by_hash.count(hash) || pool.blocks[block].hash) continue;
      pool.blocks[block].hash = hash;
      pool.by_hash[hash] = block;
    }
  }
  s.length += n;
  return slots;
}

int KvCache::blocks_out_of_window(const Sequence& s, int group) const {
  const int window = config_.groups[group].window;
  if (window <= 0) return 0;
  // The next query sits at position `length` and reads keys from length - window + 1 on.
  const int first_needed = std::max(0, s.length - window + 1);
  return std::min(first_needed / config_.block_size, static_cast<int>(s.tables[group].size()));
}

int KvCache::released_before_append(const Sequence& s, int group) const {
  const std::vector<int32_t>& table = s.tables[group];
  int released = 0;
  for (int b = 0; b < blocks_out_of_window(s, group); ++b) {
    // A block other sequences share stays held when this one lets go of it.
    if (table[b] >= 0 && pools_[group].blocks[table[b]].refs == 1) ++released;
  }
  return released;
}

void KvCache::release_out_of_window(Sequence& s, int group) {
  std::vector<int32_t>& table = s.tables[group];
  for (int b = 0; b < blocks_out_of_window(s, group); ++b) {
    if (table[b] >= 0) {
      release_block(group, table[b]);
      table[b] = -1;
    }
  }
}

int KvCache::take_block(int group) {
  Pool& pool = pools_[group];
  int block;
  if (!pool.free.empty()) {
    block = pool.free.back();
    pool.free.pop_back();
  } else {
    require(!pool.cached.empty(), "KV cache: no block to take (checked before)");
    block = pool.cached.front();  // the least recently used cached block
    pool.cached.pop_front();
    pool.by_hash.erase(*pool.blocks[block].hash);
    pool.blocks[block].hash.reset();
  }
  pool.blocks[block].refs = 1;
  return block;
}

void KvCache::release_block(int group, int block) {
  Pool& pool = pools_[group];
  Block& entry = pool.blocks[block];
  require(entry.refs > 0, "KV cache: block {} released more often than taken", block);
  if (--entry.refs > 0) return;
  if (entry.hash) {
    pool.cached.push_back(block);
    entry.lru = std::prev(pool.cached.end());
  } else {
    pool.free.push_back(block);
  }
}

const std::vector<int32_t>& KvCache::block_table(SequenceId id, int group) const {
  return sequence(id).tables.at(group);
}

int KvCache::group_of_layer(int layer) const {
  require(layer >= 0 && layer < static_cast<int>(layer_group_.size()),
          "KV cache: no layer {}", layer);
  return layer_group_[layer];
}

Tensor KvCache::keys(int layer) const {
  group_of_layer(layer);
  const int blocks = config_.groups[layer_group_[layer]].blocks;
  return Tensor::dense(keys_[layer_slot_[layer]].get(), config_.dtype,
                       {blocks, config_.block_size, config_.kv_heads, config_.head_dim});
}

Tensor KvCache::values(int layer) const {
  group_of_layer(layer);
  const int blocks = config_.groups[layer_group_[layer]].blocks;
  return Tensor::dense(values_[layer_slot_[layer]].get(), config_.dtype,
                       {blocks, config_.block_size, config_.kv_heads, config_.head_dim});
}

int KvCache::free_blocks(int group) const {
  const Pool& pool = pools_.at(group);
  return static_cast<int>(pool.free.size() + pool.cached.size());
}

int KvCache::used_blocks(int group) const { return total_blocks(group) - free_blocks(group); }

}  // namespace switchyard::model
