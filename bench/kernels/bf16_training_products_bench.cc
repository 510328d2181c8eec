// The bf16 products of one GPT-2 training step (cpu_kernels.h bf16_gemm), one linear layer's
// products at a time: the forward product (bf16 out), the input gradient (bf16, set) and the
// weight gradient (fp32, K = the step's tokens), set as in a step's first micro-batch and added to
// as in the others (the sum reads the fp32 gradient back). Rows are the step's tokens: 256 for
// B4 x T64, 2,048 for B8 x T256. The counter is GFLOP/s, to compare against the machine's bf16 rate
// at 2048^3 that `bench train` reports as its GEMM bound.
//
//   build/switchyard_kernel_bench --benchmark_filter=Bf16Training
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/rng.h"

namespace {

using switchyard::DType;
using switchyard::backend::cpu::bf16_gemm;

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  std::vector<float> values(n);
  switchyard::Rng rng(seed);
  rng.fill_normal(values.data(), n, 0.02f);
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; ++i) bits[i] = switchyard::narrow_to_bf16_bits(values[i]);
  return bits;
}

enum Product : int64_t { kForward, kInputGradient, kWeightGradient, kWeightGradientAdded };

// Arguments: the product, tokens N, inputs C, outputs OC.
void Bf16Training(benchmark::State& state) {
  const auto product = static_cast<Product>(state.range(0));
  const int N = static_cast<int>(state.range(1)), C = static_cast<int>(state.range(2)),
            OC = static_cast<int>(state.range(3));
  const std::vector<uint16_t> inp = random_bf16(static_cast<size_t>(N) * C, 1);
  const std::vector<uint16_t> weight = random_bf16(static_cast<size_t>(OC) * C, 2);
  const std::vector<uint16_t> dout = random_bf16(static_cast<size_t>(N) * OC, 3);
  std::vector<uint16_t> out(static_cast<size_t>(N) * OC), dinp(static_cast<size_t>(N) * C);
  std::vector<float> dweight(static_cast<size_t>(OC) * C);
  for (auto _ : state) {
    switch (product) {
      case kForward:  // out[N, OC] = inp @ weight^T
        bf16_gemm(false, true, N, OC, C, inp.data(), C, weight.data(), C, out.data(),
                  DType::kBF16, OC, false, nullptr);
        break;
      case kInputGradient:  // dinp[N, C] = dout @ weight
        bf16_gemm(false, false, N, C, OC, dout.data(), OC, weight.data(), C, dinp.data(),
                  DType::kBF16, C, false, nullptr);
        break;
      case kWeightGradient:  // dweight[OC, C] = dout^T @ inp
      case kWeightGradientAdded:  // dweight[OC, C] += dout^T @ inp
        bf16_gemm(true, false, OC, C, N, dout.data(), OC, inp.data(), C, dweight.data(),
                  DType::kF32, C, product == kWeightGradientAdded, nullptr);
        break;
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * N * C * OC * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void Gpt2TrainingShapes(benchmark::internal::Benchmark* b) {
  for (int tokens : {256, 2048}) {
    for (int64_t product : {kForward, kInputGradient, kWeightGradient, kWeightGradientAdded}) {
      b->Args({product, tokens, 768, 2304});   // attention q, k, v
      b->Args({product, tokens, 768, 768});    // attention out
      b->Args({product, tokens, 768, 3072});   // MLP up
      b->Args({product, tokens, 3072, 768});   // MLP down
      b->Args({product, tokens, 768, 50257});  // the logits
    }
  }
}

BENCHMARK(Bf16Training)
    ->Apply(Gpt2TrainingShapes)
    ->ArgNames({"product", "N", "C", "OC"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
