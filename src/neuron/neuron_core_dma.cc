// NeuronCore: DMA instructions (copy with cast, gather, scatter).
#include <cstring>

#include "core/error.h"
#include "neuron/cost_model.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {

namespace {

// A source whose innermost contiguous run is a single element (while a partition holds several)
// is read element by element: a DMA transpose.
bool element_granular(const View& src) {
  if (src.free_size() <= 1) return false;
  int last = src.free_dims() - 1;
  return !(src.free_dim(last).size > 1 && src.free_dim(last).stride == 1);
}

}  // namespace

void NeuronCore::dma_copy(const View& dst, const View& src, int queue) {
  const char* op = "dma_copy";
  check_view(op, "destination", dst, true);
  check_view(op, "source", src, false);
  if (dst.memory() == Memory::kPsum || src.memory() == Memory::kPsum)
    rule_error(op,
               "DMA endpoints must be in HBM or SBUF, not PSUM (evacuate PSUM with VectorE or "
               "ScalarE)");
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    rule_error(op, fmt::format("DMA queue {} does not exist (this core has queues 0..{})", queue,
                               config_.dma_queues - 1));
  if (dst.partitions() != src.partitions() || dst.free_size() != src.free_size())
    rule_error(op, fmt::format("destination {} and source {} differ in shape ({} x {} vs {} x {} "
                               "elements)",
                               dst.describe(), src.describe(), dst.partitions(), dst.free_size(),
                               src.partitions(), src.free_size()));
  // Functional copy: bit-exact when the dtypes agree, otherwise through fp32 with rounding.
  int64_t n = src.elements();
  if (!copy_by_partition(dst, src)) {  // staged: everything is read before anything is written
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

  Accesses acc;
  acc.read(region_of(src));
  acc.write(region_of(dst));
  int64_t src_bytes = n * dtype_bytes(src.dtype());
  int64_t dst_bytes = n * dtype_bytes(dst.dtype());
  double efficiency = 1.0;
  if (element_granular(src)) {
    efficiency = src.memory() == Memory::kHbm ? cost::kDmaTransposeEfficiencyFromHbm
                                              : cost::kDmaTransposeEfficiencyFromSbuf;
  }
  schedule_dma(op, queue, acc, std::max(src_bytes, dst_bytes),
               src.memory() == Memory::kHbm ? src_bytes : 0,
               dst.memory() == Memory::kHbm ? dst_bytes : 0, efficiency);
}

void NeuronCore::dma_gather(const View& dst, const View& table, const View& indices, int queue) {
  const char* op = "dma_gather";
  check_view(op, "destination", dst, true);
  check_view(op, "table", table, false);
  check_view(op, "indices", indices, false);
  if (table.memory() != Memory::kHbm || dst.memory() != Memory::kSbuf ||
      indices.memory() != Memory::kSbuf)
    rule_error(op, "gather reads an HBM table into SBUF with SBUF indices");
  if (indices.dtype() != DType::kI32 || indices.free_size() != 1)
    rule_error(op, fmt::format("indices {} must be an int32 [P, 1] tile", indices.describe()));
  if (indices.partitions() != dst.partitions() || dst.free_size() != table.free_size())
    rule_error(op, fmt::format("destination {} must be [{} indices, {} table columns]",
                               dst.describe(), indices.partitions(), table.free_size()));
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    rule_error(op, fmt::format("DMA queue {} does not exist", queue));
  std::span<float> row = scratch(0, table.free_size());
  for (int64_t p = 0; p < indices.partitions(); ++p) {
    int32_t index;
    std::memcpy(&index, element_base(indices, p), 4);
    if (index < 0 || index >= table.partitions())
      rule_error(op, fmt::format("index {} at partition {} is outside table '{}' of {} rows", index,
                                 p, allocation_name(table), table.partitions()));
    load(table.rows(index, 1), row.data());
    store(dst.rows(p, 1), row.data());
  }
  Accesses acc;
  acc.read(region_of(table));
  acc.read(region_of(indices));
  acc.write(region_of(dst));
  int64_t n = dst.elements();
  int64_t bytes = n * std::max(dtype_bytes(table.dtype()), dtype_bytes(dst.dtype()));
  schedule_dma(op, queue, acc, bytes, n * dtype_bytes(table.dtype()), 0, 1.0);
}

void NeuronCore::dma_scatter(const View& table, const View& src, const View& indices,
                             bool accumulate, int queue, NegativeIndex negative) {
  const char* op = accumulate ? "dma_scatter_add" : "dma_scatter";
  check_view(op, "table", table, true);
  check_view(op, "source", src, false);
  check_view(op, "indices", indices, false);
  if (table.memory() != Memory::kHbm || src.memory() != Memory::kSbuf ||
      indices.memory() != Memory::kSbuf)
    rule_error(op, "scatter writes SBUF rows into an HBM table with SBUF indices");
  if (indices.dtype() != DType::kI32 || indices.free_size() != 1)
    rule_error(op, fmt::format("indices {} must be an int32 [P, 1] tile", indices.describe()));
  if (indices.partitions() != src.partitions() || src.free_size() != table.free_size())
    rule_error(op, fmt::format("source {} must be [{} indices, {} table columns]", src.describe(),
                               indices.partitions(), table.free_size()));
  if (queue != kAnyQueue && (queue < 0 || queue >= config_.dma_queues))
    rule_error(op, fmt::format("DMA queue {} does not exist", queue));
  int64_t f = src.free_size();
  std::span<float> row = scratch(0, f);
  std::span<float> current = scratch(1, f);
  int64_t written = 0;  // rows
  for (int64_t p = 0; p < indices.partitions(); ++p) {
    int32_t index;
    std::memcpy(&index, element_base(indices, p), 4);
    if (index < 0 && negative == NegativeIndex::kSkip) continue;
    ++written;
    if (index < 0 || index >= table.partitions())
      rule_error(op, fmt::format("index {} at partition {} is outside table '{}' of {} rows", index,
                                 p, allocation_name(table), table.partitions()));
    load(src.rows(p, 1), row.data());
    View target = table.rows(index, 1);
    if (accumulate) {
      load(target, current.data());
      for (int64_t i = 0; i < f; ++i) row[i] += current[i];
    }
    store(target, row.data());
  }
  Accesses acc;
  acc.read(region_of(src));
  acc.read(region_of(indices));
  acc.write(region_of(table));
  // Only the rows written move (a skipped row's descriptor carries nothing).
  int64_t n = written * f;
  int64_t table_bytes = n * dtype_bytes(table.dtype());
  int64_t bytes = n * std::max(dtype_bytes(table.dtype()), dtype_bytes(src.dtype()));
  schedule_dma(op, queue, acc, bytes, accumulate ? table_bytes : 0, table_bytes, 1.0);
}

}  // namespace switchyard::neuron
