// How much a continuous batch's bf16 products would gain from weights kept in oneDNN's own blocked
// layout. The engine hands oneDNN's matmul the weights as they are stored, [OC, C] row-major, and
// oneDNN rearranges them inside every call; serving never changes its weights, so the rearranged
// form could be made once. Both forms are timed on GPT-2 124M's decode shapes at the row counts of
// a continuous batch beyond the weight-streaming kernel's (cpu_kernels.h kGemvMaxRows), rotating
// over weight copies that outgrow the last-level cache, as a decode step over a whole model does.
// The counter is GFLOP/s. Nothing in the engine uses the blocked form yet: this measures the
// headroom (BENCHMARKS.md, issue 15).
//
//   build/switchyard_kernel_bench --benchmark_filter=Bf16DecodeWeights
#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

using dnnl::memory;
using Type = memory::data_type;

enum Layout : int64_t { kAsStored, kBlocked };

// Arguments: the layout, rows M, inputs C, outputs OC.
void Bf16DecodeWeights(benchmark::State& state) {
  const auto layout = static_cast<Layout>(state.range(0));
  const int64_t M = state.range(1), C = state.range(2), OC = state.range(3);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::desc inp_desc({M, C}, Type::bf16, {C, 1});
  const memory::desc stored_desc({C, OC}, Type::bf16, {1, C});  // [OC, C] row-major, as B = W^T
  const memory::desc out_desc({M, OC}, Type::bf16, {OC, 1});
  const memory::desc weight_desc =
      layout == kAsStored ? stored_desc : memory::desc({C, OC}, Type::bf16, memory::format_tag::any);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(inp_desc, weight_desc, out_desc), engine);
  const dnnl::matmul product(pd);

  constexpr int64_t kStreamedBytes = int64_t{512} << 20;
  const int64_t copies = std::max<int64_t>(2, kStreamedBytes / (2 * C * OC));
  std::vector<uint16_t> inp(static_cast<size_t>(M * C), 0x3C00), out(static_cast<size_t>(M * OC));
  std::vector<std::vector<uint16_t>> stored(static_cast<size_t>(copies),
                                            std::vector<uint16_t>(static_cast<size_t>(C * OC), 0x3C23));
  std::vector<memory> weights;
  for (std::vector<uint16_t>& w : stored) {
    memory as_stored(stored_desc, engine, w.data());
    if (layout == kAsStored) {
      weights.push_back(as_stored);
      continue;
    }
    memory blocked(pd.weights_desc(), engine);
    dnnl::reorder(as_stored, blocked).execute(stream, as_stored, blocked);
    weights.push_back(blocked);
  }
  memory inp_memory(inp_desc, engine, inp.data()), out_memory(out_desc, engine, out.data());
  size_t next = 0;
  for (auto _ : state) {
    product.execute(stream, {{DNNL_ARG_SRC, inp_memory},
                             {DNNL_ARG_WEIGHTS, weights[next]},
                             {DNNL_ARG_DST, out_memory}});
    stream.wait();
    next = (next + 1) % weights.size();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(M * C * OC) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void DecodeShapes(benchmark::internal::Benchmark* b) {
  for (int64_t layout : {kAsStored, kBlocked}) {
    for (int64_t rows : {32, 64}) {
      b->Args({layout, rows, 768, 2304});   // attention q, k, v
      b->Args({layout, rows, 768, 3072});   // MLP up
      b->Args({layout, rows, 3072, 768});   // MLP down
      b->Args({layout, rows, 768, 50257});  // the logits
    }
  }
}

BENCHMARK(Bf16DecodeWeights)->Apply(DecodeShapes)->ArgNames({"blocked", "M", "C", "OC"})->UseRealTime();

}  // namespace
