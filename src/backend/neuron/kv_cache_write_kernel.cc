#include "backend/neuron/kv_cache_write_kernel.h"

#include <algorithm>
#include <string>

#include "backend/neuron/kernel_support.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

void kv_cache_write(NeuronCore& core, const View& k_cache, const View& v_cache, const View& k,
                    const View& v, const View& slots) {
  const char* name = "kv_cache_write";
  const int64_t N = k.partitions(), W = k.free_size(), capacity = k_cache.partitions();
  require_rows(name, "k", k, N, W);
  require_rows(name, "v", v, N, W);
  require_rows(name, "k_cache", k_cache, capacity, W);
  require_rows(name, "v_cache", v_cache, capacity, W);
  require(v_cache.dtype() == k_cache.dtype(), "{}: k_cache and v_cache differ in dtype", name);
  require(slots.memory() == Memory::kHbm && slots.dtype() == DType::kI32 &&
              slots.partitions() == N && slots.free_size() == 1,
          "{}: slots must be an HBM int32 [{}, 1] column, got {}", name, N, slots.describe());

  KernelScope scope(core, name);
  TilePool pool(core);
  const DType cache_dtype = k_cache.dtype();
  struct Buffers {
    View ids, k, v;
  };
  Buffers buf[2];
  for (int i = 0; i < 2; ++i) {
    const std::string n = "kv_write." + std::to_string(i);
    buf[i] = {pool.sbuf(kPartitions, {1}, DType::kI32, n + ".slots"),
              pool.sbuf(kPartitions, {W}, cache_dtype, n + ".k"),
              pool.sbuf(kPartitions, {W}, cache_dtype, n + ".v")};
  }
  const int queues = core.config().dma_queues;
  int next = 0;
  auto queue = [&] { return next++ % queues; };
  for (int64_t r0 = 0, t = 0; r0 < N; r0 += kPartitions, ++t) {
    const int64_t rows = std::min(kPartitions, N - r0);
    const Buffers& b = buf[t % 2];
    core.dma_copy(b.ids.rows(0, rows), slots.rows(r0, rows), queue());
    core.dma_copy(b.k.rows(0, rows), k.rows(r0, rows), queue());
    core.dma_copy(b.v.rows(0, rows), v.rows(r0, rows), queue());
    core.dma_scatter(k_cache, b.k.rows(0, rows), b.ids.rows(0, rows), /*accumulate=*/false,
                     queue(), ::switchyard::neuron::NegativeIndex::kSkip);
    core.dma_scatter(v_cache, b.v.rows(0, rows), b.ids.rows(0, rows), /*accumulate=*/false,
                     queue(), ::switchyard::neuron::NegativeIndex::kSkip);
  }
}

}  // namespace switchyard::backend::neuron
