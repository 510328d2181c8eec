// How much a continuous batch's bf16 products would gain from weights kept in oneDNN's own blocked
// layout. The engine hands oneDNN's matmul the weights as they are stored, [OC, C] row-major, and
// oneDNN rearranges them inside every call; serving never changes its weights, so the rearranged
// form could be made once. Both forms are timed on GPT-2 124M's decode shapes at the row counts of
// a continuous batch beyond the weight-streaming kernel's (cpu_kernels.h kGemvMaxRows), rotating
// over weight copies that outgrow the last-level cache, as a decode step over a whole model does.
// The counter is GFLOP/s. Layout 2 is the column panels of bf16_panel_linear.h, multiplied by
// its kernel (what the engine runs where the CPU has AVX-512 BF16); layout 1 is what it runs
// elsewhere (BENCHMARKS.md, issue 15).
//
//   build/switchyard_kernel_bench --benchmark_filter=Bf16DecodeWeights
#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/bf16_panel_linear.h"

namespace {

using dnnl::memory;
using Type = memory::data_type;

enum Layout : int64_t { kAsStored, kBlocked, kPanels };

constexpr int64_t kStreamedBytes = int64_t{512} << 20;

// The panel kernel over copies of the weights packed as it reads them.
void time_panels(benchmark::State& state, int64_t M, int64_t C, int64_t OC) {
  using namespace switchyard::backend::cpu;
  if (!bf16_panel_linear_available()) {
    state.SkipWithError("this build's CPU kernels have no AVX-512 BF16");
    return;
  }
  const int64_t copies = std::max<int64_t>(2, kStreamedBytes / (2 * C * OC));
  const std::vector<uint16_t> stored(static_cast<size_t>(C * OC), 0x3C23);
  std::vector<std::vector<uint16_t>> panels(static_cast<size_t>(copies));
  for (std::vector<uint16_t>& p : panels) {
    p.resize(bf16_panel_values(int(C), int(OC)));
    pack_bf16_panels(p.data(), stored.data(), int(C), int(OC));
  }
  std::vector<uint16_t> inp(static_cast<size_t>(M * C), 0x3C00), out(static_cast<size_t>(M * OC));
  size_t next = 0;
  for (auto _ : state) {
    bf16_panel_linear(out.data(), inp.data(), panels[next].data(), nullptr, int(M), int(C), int(OC));
    next = (next + 1) % panels.size();
  }
}

// Arguments: the layout, rows M, inputs C, outputs OC.
void Bf16DecodeWeights(benchmark::State& state) {
  const auto layout = static_cast<Layout>(state.range(0));
  const int64_t M = state.range(1), C = state.range(2), OC = state.range(3);
  const auto rate = [&] {
    state.counters["GFLOP/s"] = benchmark::Counter(
        2.0 * static_cast<double>(M * C * OC) * static_cast<double>(state.iterations()) / 1e9,
        benchmark::Counter::kIsRate);
  };
  if (layout == kPanels) {
    time_panels(state, M, C, OC);
    rate();
    return;
  }
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::desc inp_desc({M, C}, Type::bf16, {C, 1});
  const memory::desc stored_desc({C, OC}, Type::bf16, {1, C});  // [OC, C] row-major, as B = W^T
  const memory::desc out_desc({M, OC}, Type::bf16, {OC, 1});
  const memory::desc weight_desc =
      layout == kAsStored ? stored_desc : memory::desc({C, OC}, Type::bf16, memory::format_tag::any);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(inp_desc, weight_desc, out_desc), engine);
  const dnnl::matmul product(pd);

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
  rate();
}

void DecodeShapes(benchmark::internal::Benchmark* b) {
  for (int64_t layout : {kAsStored, kBlocked, kPanels}) {
    for (int64_t rows : {32, 64}) {
      b->Args({layout, rows, 768, 2304});   // attention q, k, v
      b->Args({layout, rows, 768, 3072});   // MLP up
      b->Args({layout, rows, 3072, 768});   // MLP down
      b->Args({layout, rows, 768, 50257});  // the logits
    }
  }
}

BENCHMARK(Bf16DecodeWeights)->Apply(DecodeShapes)->ArgNames({"layout", "M", "C", "OC"})->UseRealTime();

}  // namespace
