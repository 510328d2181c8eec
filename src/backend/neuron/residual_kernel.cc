#include "backend/neuron/residual_kernel.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using ::switchyard::dtype_bytes;
using ::switchyard::nki_dtype_name;
using ::switchyard::is_float;

constexpr int64_t kMinSplitCols = 512;       // narrower adds are not worth a second engine

// An HBM float tensor of n elements stored back to back.
// out = a + b over flat tensors (out may be a: accumulate). a's tiles, which hold the sums, are
// `sum_dtype`; b's are `compute`.
void add_flat(NeuronCore& core, const char* name, const View& out, const View& a, const View& b,
              DType compute, DType sum_dtype) {
  const int64_t n = a.elements();
  if (n == 0) return;
  KernelScope scope(core, name);
  TilePool pool(core);
  DmaQueues queues(core, 1.0 / 3);  // two loads per store
  const std::vector<FlatBlock> blocks = flat_blocks(n, kResidualBlockCols);
  int64_t partitions = 1, cols = 1;
  for (const FlatBlock& blk : blocks) {
    partitions = std::max(partitions, blk.rows);
    cols = std::max(cols, blk.cols);
  }
  std::array<View, 2> ta, tb;
  for (int i = 0; i < 2; ++i) {
    ta[i] = pool.sbuf(partitions, {cols}, sum_dtype, std::string(name) + ".a" + std::to_string(i));
    tb[i] = pool.sbuf(partitions, {cols}, compute, std::string(name) + ".b" + std::to_string(i));
  }
  // VectorE adds two bf16 SBUF tensors at one element per cycle (two cycles for fp32); GpSimd
  // at two cycles per element on its faster clock. Each takes its share of a block's columns.
  const auto& cfg = core.config();
  const bool bf16 = compute == DType::kBF16 && sum_dtype == DType::kBF16;
  const double vector_rate = cfg.vector_ghz / (bf16 ? 1.0 : 2.0);
  const double gpsimd_rate = cfg.gpsimd_ghz / 2.0;
  const double vector_share = vector_rate / (vector_rate + gpsimd_rate);

  auto tile = [&](const std::array<View, 2>& buf, size_t i) {
    return buf[i % 2].rows(0, blocks[i].rows).cols(0, blocks[i].cols);
  };
  auto load = [&](size_t i) {
    auto q = [&] { return queues.load(); };
    split_copy(core, tile(ta, i), block_view(a, blocks[i]), queues.loads(), q);
    split_copy(core, tile(tb, i), block_view(b, blocks[i]), queues.loads(), q);
  };
  load(0);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i + 1 < blocks.size()) load(i + 1);
    const View x = tile(ta, i);
    const View y = tile(tb, i);
    const int64_t f = blocks[i].cols;
    const int64_t split =
        f < kMinSplitCols ? f : std::clamp<int64_t>(std::llround(f * vector_share), 1, f - 1);
    core.tensor_tensor(x.cols(0, split), x.cols(0, split), AluOp::kAdd, y.cols(0, split));
    if (split < f) {
      core.tensor_tensor(x.cols(split, f - split), x.cols(split, f - split), AluOp::kAdd,
                         y.cols(split, f - split), Engine::kGpSimd);
    }
    split_copy(core, block_view(out, blocks[i]), x, queues.stores(),
               [&] { return queues.store(); });
  }
}

}  // namespace

void residual_forward(NeuronCore& core, const View& out, const View& a, const View& b,
                      DType compute) {
  const char* kName = "residual_forward";
  require_compute(kName, compute);
  const int64_t n = a.elements();
  require_flat(kName, "a", a, n);
  require_flat(kName, "b", b, n);
  require_flat(kName, "out", out, n);
  add_flat(core, kName, out, a, b, compute, compute);
}

void accumulate(NeuronCore& core, const View& dst, const View& src, DType compute) {
  const char* kName = "accumulate";
  require_compute(kName, compute);
  const int64_t n = dst.elements();
  require_flat(kName, "dst", dst, n);
  require_flat(kName, "src", src, n);
  // An fp32 destination (a parameter gradient) keeps its precision: the sum is taken in fp32.
  add_flat(core, kName, dst, dst, src, compute, dst.dtype() == DType::kF32 ? DType::kF32 : compute);
}

}  // namespace switchyard::backend::neuron
