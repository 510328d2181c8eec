// The paged KV cache's bookkeeping: slots, block tables, sliding windows, prefix sharing,
// exhaustion and that every block comes back.
#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "resident_pages.h"

namespace switchyard::model {
namespace {

std::vector<int32_t> iota_tokens(int n, int start = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

KvCacheConfig one_group(int blocks, int block_size = 4) {
  KvCacheConfig c;
  c.kv_heads = 2;
  c.head_dim = 3;
  c.block_size = block_size;
  c.groups = {{.window = 0, .layers = {0, 1}, .blocks = blocks}};
  return c;
}

// The pools are resident once built (the CPU backend maps pools this large as fresh pages that
// would otherwise fault in at the first write to each block, in the middle of decode steps).
TEST(KvCache, PoolsAreResidentOnceBuilt) {
  backend::cpu::CpuBackend cpu;
  KvCacheConfig c = one_group(0, 16);
  c.kv_heads = 12;
  c.head_dim = 64;
  const size_t block_bytes = 16 * 12 * 64 * sizeof(float);
  c.groups[0].blocks = static_cast<int>((size_t{9} << 20) / block_bytes);  // 9 MiB per buffer
  KvCache cache(cpu, c);
  const size_t page = page_bytes();
  const size_t bytes = static_cast<size_t>(c.groups[0].blocks) * block_bytes;
  for (int layer : {0, 1}) {
    EXPECT_EQ(resident_pages(cache.keys(layer).data, bytes), bytes / page) << "layer " << layer;
    EXPECT_EQ(resident_pages(cache.values(layer).data, bytes), bytes / page) << "layer " << layer;
  }
  const SequenceId s = cache.add_sequence();
  EXPECT_EQ(cache.append(s, iota_tokens(40))[0].size(), 40u);  // and it works as before
}

TEST(KvCache, SlotsFollowTheBlockTable) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(8));
  const SequenceId s = cache.add_sequence();
  const auto slots = cache.append(s, iota_tokens(6));
  ASSERT_EQ(slots.size(), 1u);
  const auto& table = cache.block_table(s, 0);
  ASSERT_EQ(table.size(), 2u);
  for (int pos = 0; pos < 6; ++pos) EXPECT_EQ(slots[0][pos], table[pos / 4] * 4 + pos % 4);
  // Two more tokens fill the second block; a ninth takes a third.
  cache.append(s, iota_tokens(2, 6));
  EXPECT_EQ(cache.block_table(s, 0).size(), 2u);
  const auto more = cache.append(s, {99});
  EXPECT_EQ(cache.block_table(s, 0).size(), 3u);
  EXPECT_EQ(more[0][0], cache.block_table(s, 0)[2] * 4);
  EXPECT_EQ(cache.length(s), 9);
  EXPECT_EQ(cache.used_blocks(0), 3);
  const Tensor k = cache.keys(1);
  EXPECT_EQ(k.describe(), "fp32[8, 4, 2, 3]");
}

TEST(KvCache, ExhaustionIsAClearErrorThatChangesNothing) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(3));
  const SequenceId a = cache.add_sequence();
  cache.append(a, iota_tokens(8));
  const SequenceId b = cache.add_sequence();
  EXPECT_TRUE(cache.can_append(b, 4));
  EXPECT_FALSE(cache.can_append(b, 5));
  try {
    cache.append(b, iota_tokens(5));
    FAIL() << "expected KvCacheFull";
  } catch (const KvCacheFull& e) {
    EXPECT_EQ(e.needed, 2);
    EXPECT_EQ(e.available, 1);
    EXPECT_NE(std::string(e.what()).find("2 more blocks needed, 1 free of 3"), std::string::npos);
  }
  EXPECT_EQ(cache.length(b), 0);
  EXPECT_EQ(cache.free_blocks(0), 1);
}

TEST(KvCache, EveryBlockComesBackWhenSequencesEnd) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(16));
  std::vector<SequenceId> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(cache.add_sequence());
    cache.append(ids.back(), iota_tokens(3 + 2 * i, 100 * i));
  }
  EXPECT_GT(cache.used_blocks(0), 0);
  for (SequenceId id : ids) cache.free_sequence(id);
  EXPECT_EQ(cache.used_blocks(0), 0);
  EXPECT_EQ(cache.free_blocks(0), 16);
  EXPECT_EQ(cache.sequences(), 0);
}

TEST(KvCache, PromptsShareTheirCommonPrefixBlocks) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(16));
  std::vector<int32_t> system = iota_tokens(10);  // two full blocks of 4, then 2 tokens
  std::vector<int32_t> first = system, second = system;
  first.insert(first.end(), {50, 51, 52});
  second.insert(second.end(), {60, 61});
  const auto [a, cached_a] = cache.add_sequence_with_prefix(first);
  EXPECT_EQ(cached_a, 0);
  cache.append(a, first);
  const auto [b, cached_b] = cache.add_sequence_with_prefix(second);
  EXPECT_EQ(cached_b, 8);  // the two full blocks
  EXPECT_EQ(cache.length(b), 8);
  EXPECT_EQ(cache.block_table(b, 0)[0], cache.block_table(a, 0)[0]);
  EXPECT_EQ(cache.block_table(b, 0)[1], cache.block_table(a, 0)[1]);
  cache.append(b, {8, 9, 60, 61});
  EXPECT_NE(cache.block_table(b, 0)[2], cache.block_table(a, 0)[2]);
  EXPECT_EQ(cache.prefix_hits(), 8);

  // A different token inside the second block stops the match after the first block.
  std::vector<int32_t> third = system;
  third[5] = 77;
  const auto [c, cached_c] = cache.add_sequence_with_prefix(third);
  EXPECT_EQ(cached_c, 4);
  EXPECT_EQ(cache.block_table(c, 0)[0], cache.block_table(a, 0)[0]);

  // Freed sequences leave their full blocks cached: a later prompt still finds them.
  cache.free_sequence(a);
  cache.free_sequence(b);
  cache.free_sequence(c);
  EXPECT_EQ(cache.used_blocks(0), 0);
  const auto [d, cached_d] = cache.add_sequence_with_prefix(first);
  EXPECT_EQ(cached_d, 12);  // its three full blocks; the last token is always computed
  cache.free_sequence(d);
  EXPECT_EQ(cache.used_blocks(0), 0);
}

TEST(KvCache, APromptOfWholeBlocksLeavesItsLastTokenToCompute) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(8));
  const std::vector<int32_t> prompt = iota_tokens(8);
  const auto [a, cached] = cache.add_sequence_with_prefix(prompt);
  cache.append(a, prompt);
  const auto [b, shared] = cache.add_sequence_with_prefix(prompt);
  EXPECT_EQ(shared, 4);  // not 8: the last token must be run to get its logits
}

TEST(KvCache, CachedBlocksAreReusedOldestFirstWhenMemoryIsNeeded) {
  backend::cpu::CpuBackend cpu;
  KvCache cache(cpu, one_group(4));
  const auto [a, ca] = cache.add_sequence_with_prefix(iota_tokens(9));
  cache.append(a, iota_tokens(9));
  cache.free_sequence(a);  // two full blocks stay cached, one partial block is free
  const SequenceId b = cache.add_sequence();
  cache.append(b, iota_tokens(16, 1000));  // needs all four blocks: evicts both cached ones
  EXPECT_EQ(cache.used_blocks(0), 4);
  cache.free_sequence(b);
  const auto [c, cc] = cache.add_sequence_with_prefix(iota_tokens(9));
  EXPECT_EQ(cc, 0);  // evicted
}

TEST(KvCache, SlidingWindowGroupsFreeWhatNoQueryWillRead) {
  backend::cpu::CpuBackend cpu;
  KvCacheConfig c;
  c.kv_heads = 1;
  c.head_dim = 2;
  c.block_size = 4;
  c.groups = {{.window = 0, .layers = {1}, .blocks = 64}, {.window = 6, .layers = {0}, .blocks = 4}};
  KvCache cache(cpu, c);
  EXPECT_EQ(cache.group_of_layer(0), 1);
  EXPECT_EQ(cache.group_of_layer(1), 0);
  const SequenceId s = cache.add_sequence();
  cache.append(s, iota_tokens(10));
  // Queries at positions >= 10 read keys from 5 on: block 0 ([0, 4)) can go, block 1 stays.
  cache.append(s, {10});
  const auto& window_table = cache.block_table(s, 1);
  EXPECT_EQ(window_table[0], -1);
  EXPECT_GE(window_table[1], 0);
  EXPECT_EQ(cache.block_table(s, 0).size(), 3u);
  // The window group's four blocks carry a sequence of any length.
  for (int pos = 11; pos < 200; ++pos) cache.append(s, {pos});
  EXPECT_EQ(cache.length(s), 200);
  EXPECT_LE(cache.used_blocks(1), 3);
  cache.free_sequence(s);
  EXPECT_EQ(cache.used_blocks(0) + cache.used_blocks(1), 0);
}

// A chunk of prompt leaves blocks behind the window that only the next append releases: the
// room check counts them as the append will, unless another sequence still shares them.
TEST(KvCache, RoomChecksCountTheBlocksTheWindowReleases) {
  backend::cpu::CpuBackend cpu;
  KvCacheConfig c;
  c.kv_heads = 1;
  c.head_dim = 2;
  c.block_size = 4;
  c.groups = {{.window = 6, .layers = {0}, .blocks = 3}};
  KvCache cache(cpu, c);
  const SequenceId s = cache.add_sequence();
  cache.append(s, iota_tokens(12));  // blocks 0-2, the whole pool
  ASSERT_EQ(cache.free_blocks(0), 0);
  // Position 12 reads keys from 7 on: the block of [0, 4) goes back before the fourth is taken.
  EXPECT_TRUE(cache.can_append(s, 1));
  EXPECT_TRUE(cache.can_append(s, 4));   // [12, 16) still fits the block released
  EXPECT_FALSE(cache.can_append(s, 5));  // a fifth block would need [16, 17) too
  cache.append(s, {12});
  EXPECT_EQ(cache.block_table(s, 0)[0], -1);
  cache.free_sequence(s);

  // The same blocks shared with a sequence that still reads them: nothing comes back.
  const SequenceId a = cache.add_sequence();
  cache.append(a, iota_tokens(12));
  const auto [b, cached] = cache.add_sequence_with_prefix(iota_tokens(9));
  ASSERT_EQ(cached, 8);  // b holds the blocks of [0, 4) and [4, 8) too
  ASSERT_EQ(cache.free_blocks(0), 0);
  EXPECT_FALSE(cache.can_append(a, 1));
  EXPECT_THROW(cache.append(a, {12}), KvCacheFull);
  cache.free_sequence(b);
  EXPECT_TRUE(cache.can_append(a, 1));
  cache.append(a, {12});
  cache.free_sequence(a);
  EXPECT_EQ(cache.used_blocks(0), 0);
}

TEST(KvCache, BadConfigurationsAreErrors) {
  backend::cpu::CpuBackend cpu;
  KvCacheConfig c = one_group(4);
  c.block_size = 0;
  EXPECT_THROW(KvCache(cpu, c), Error);
  c = one_group(0);
  EXPECT_THROW(KvCache(cpu, c), Error);
  c = one_group(4);
  c.groups[0].layers = {0, 2};  // layer 1 in no group
  EXPECT_THROW(KvCache(cpu, c), Error);
  KvCache cache(cpu, one_group(4));
  EXPECT_THROW(cache.append(42, {1}), Error);
  EXPECT_THROW(cache.free_sequence(42), Error);
}

}  // namespace
}  // namespace switchyard::model
