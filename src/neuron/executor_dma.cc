// Executor: DMA instructions (copy with cast, gather, scatter).
#include <fmt/format.h>

#include "neuron/executor.h"

namespace switchyard::neuron {

void Executor::dma_copy(const View& dst, const View& src) {
  // Bit-exact when the dtypes agree, otherwise through fp32 with rounding.
  if (copy_by_partition(dst, src)) return;
  // Staged: everything is read before anything is written.
  const int64_t n = src.elements();
  if (src.dtype() == dst.dtype()) {
    std::span<float> words = scratch(0, (n * dtype_bytes(src.dtype()) + 3) / 4);
    uint8_t* bytes = reinterpret_cast<uint8_t*>(words.data());
    gather_bytes(src, bytes);
    scatter_bytes(dst, bytes);
  } else {
    std::span<float> values = scratch(1, n);
    load(src, values.data());
    store(dst, values.data());
  }
}

void Executor::dma_gather(const View& dst, const View& table, const View& indices) {
  const char* op = "dma_gather";
  std::span<float> row = scratch(0, table.free_size());
  for (int64_t p = 0; p < indices.partitions(); ++p) {
    const int32_t index = index_at(indices, p);
    if (index < 0 || index >= table.partitions())
      rules_.fail(op, fmt::format("index {} at partition {} is outside table '{}' of {} rows",
                                  index, p, memories_.name_of(table), table.partitions()));
    load(table.rows(index, 1), row.data());
    store(dst.rows(p, 1), row.data());
  }
}

int64_t Executor::dma_scatter(const char* op, const View& table, const View& src,
                              const View& indices, bool accumulate, NegativeIndex negative) {
  const int64_t f = src.free_size();
  std::span<float> row = scratch(0, f);
  std::span<float> current = scratch(1, f);
  int64_t written = 0;  // rows
  for (int64_t p = 0; p < indices.partitions(); ++p) {
    const int32_t index = index_at(indices, p);
    if (index < 0 && negative == NegativeIndex::kSkip) continue;
    ++written;
    if (index < 0 || index >= table.partitions())
      rules_.fail(op, fmt::format("index {} at partition {} is outside table '{}' of {} rows",
                                  index, p, memories_.name_of(table), table.partitions()));
    load(src.rows(p, 1), row.data());
    View target = table.rows(index, 1);
    if (accumulate) {
      load(target, current.data());
      for (int64_t i = 0; i < f; ++i) row[i] += current[i];
    }
    store(target, row.data());
  }
  return written;
}

}  // namespace switchyard::neuron
