#include "backend/neuron/cast_kernel.h"

#include "backend/neuron/fill_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr int64_t kCastCols = 4096;  // 2 MiB of fp32 per block: pieces of 128 KiB and more

}  // namespace

void cast(NeuronCore& core, const View& out, const View& inp) {
  const char* kName = "cast";
  const int64_t n = contiguous_elements(out, kName, "out");
  require(contiguous_elements(inp, kName, "inp") == n,
          "{}: inp has {} elements, out {}: they must match", kName, inp.elements(), n);
  require(::switchyard::is_float(out.dtype()) && ::switchyard::is_float(inp.dtype()),
          "{}: out and inp must be float tensors, got {} and {}", kName, out.describe(),
          inp.describe());
  const std::vector<FlatBlock> blocks = contiguous_blocks(n, kCastCols);
  if (blocks.empty()) return;

  KernelScope scope(core, kName);
  DmaSpreader dma(core, 0, core.config().dma_queues);
  for (const FlatBlock& b : blocks) dma.copy(block_view(out, b), block_view(inp, b));
}

}  // namespace switchyard::backend::neuron
