// Paged attention of a decode step (ops.h PagedAttention on the CPU): S sequences, one query row
// each, over a context of L cached positions, at GPT-2 124M's attention shape (12 heads of 64).
// The cache's blocks are handed out in a shuffled order, as a pool shared by many requests hands
// them out, and calls rotate over copies of the cache (one per layer of a 12-layer model, more when
// needed to outgrow the last-level cache), so every call reads its keys and values from memory as
// a decode step does; the InCache forms keep one small cache in the last-level cache instead (the
// kernel's own work, without memory's). Counter: the cache bytes read per second.
//
//   build/switchyard_kernel_bench --benchmark_filter=PagedAttention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "core/dtype.h"
#include "core/rng.h"

namespace {

using switchyard::backend::cpu::PagedGeometry;
using switchyard::backend::cpu::paged_attention;

constexpr int kHeads = 12, kHeadDim = 64, kBlockSize = 16;

// One layer's cache for S sequences of L positions: its pool, the block tables and the row
// offsets. `Cached` is float or bf16 bits.
template <typename Cached>
struct DecodeCache {
  PagedGeometry geometry;
  std::vector<int32_t> block_tables, query_start, context_len;
  size_t pool_values = 0;  // keys (or values) in one copy of the pool

  DecodeCache(int S, int L) {
    const int blocks_per_sequence = (L + kBlockSize - 1) / kBlockSize;
    geometry = {.heads = kHeads, .kv_heads = kHeads, .head_dim = kHeadDim, .window = 0,
                .block_size = kBlockSize, .sequences = S, .max_blocks = blocks_per_sequence,
                .ldq = kHeads * kHeadDim, .ldo = kHeads * kHeadDim};
    block_tables.resize(static_cast<size_t>(S) * blocks_per_sequence);
    std::iota(block_tables.begin(), block_tables.end(), 0);
    std::shuffle(block_tables.begin(), block_tables.end(), std::mt19937(7));
    query_start.resize(S + 1);
    std::iota(query_start.begin(), query_start.end(), 0);
    context_len.assign(S, L);
    pool_values = block_tables.size() * kBlockSize * kHeads * kHeadDim;
  }
};

template <typename Cached>
std::vector<Cached> random_cache(size_t n) {
  std::vector<float> values(n);
  switchyard::Rng(3).fill_normal(values.data(), n, 1.0f);
  if constexpr (std::is_same_v<Cached, float>) {
    return values;
  } else {
    std::vector<Cached> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = switchyard::narrow_to_bf16_bits(values[i]);
    return bits;
  }
}

// Arguments: sequences S, context L. `from_memory`: rotate over copies that outgrow the last-level
// cache; otherwise one copy, kept in cache once small enough (the kernel's arithmetic alone).
template <typename Cached>
void time_decode_attention(benchmark::State& state, bool from_memory) {
  const int S = static_cast<int>(state.range(0)), L = static_cast<int>(state.range(1));
  const DecodeCache<Cached> cache(S, L);
  constexpr size_t kStreamedBytes = size_t{256} << 20;
  const size_t copy_bytes = 2 * cache.pool_values * sizeof(Cached);
  const size_t copies = from_memory ? std::max<size_t>(12, kStreamedBytes / copy_bytes) : 1;
  const std::vector<Cached> keys = random_cache<Cached>(copies * cache.pool_values);
  const std::vector<Cached> values = random_cache<Cached>(copies * cache.pool_values);
  std::vector<float> q(static_cast<size_t>(S) * kHeads * kHeadDim), out(q.size());
  switchyard::Rng(5).fill_normal(q.data(), q.size(), 1.0f);
  size_t next = 0;
  for (auto _ : state) {
    const size_t offset = next * cache.pool_values;
    paged_attention<float, Cached>(out.data(), q.data(), keys.data() + offset,
                                   values.data() + offset, cache.block_tables.data(),
                                   cache.query_start.data(), cache.context_len.data(), nullptr,
                                   cache.geometry, 0.125f);
    next = (next + 1) % copies;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double calls = static_cast<double>(state.iterations());
  const double bytes_read = 2.0 * S * L * kHeads * kHeadDim * sizeof(Cached);
  state.counters["cache_GB/s"] =
      benchmark::Counter(bytes_read * calls / 1e9, benchmark::Counter::kIsRate);
}

void PagedAttentionDecode(benchmark::State& state) { time_decode_attention<float>(state, true); }
void PagedAttentionDecodeBf16(benchmark::State& state) {
  time_decode_attention<uint16_t>(state, true);
}
// 32 sequences of 64 positions: 12.6 MB of fp32 keys and values, inside a 32 MiB last-level cache.
void PagedAttentionDecodeInCache(benchmark::State& state) {
  time_decode_attention<float>(state, false);
}
void PagedAttentionDecodeInCacheBf16(benchmark::State& state) {
  time_decode_attention<uint16_t>(state, false);
}

void DecodeLoads(benchmark::internal::Benchmark* b) {
  for (int S : {1, 32}) {
    for (int L : {64, 512}) b->Args({S, L});
  }
}

BENCHMARK(PagedAttentionDecode)->Apply(DecodeLoads)->ArgNames({"S", "L"})->UseRealTime();
BENCHMARK(PagedAttentionDecodeBf16)->Apply(DecodeLoads)->ArgNames({"S", "L"})->UseRealTime();
BENCHMARK(PagedAttentionDecodeInCache)->Args({32, 64})->ArgNames({"S", "L"})->UseRealTime();
BENCHMARK(PagedAttentionDecodeInCacheBf16)->Args({32, 64})->ArgNames({"S", "L"})->UseRealTime();

}  // namespace
