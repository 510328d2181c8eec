// Choosing the next token from a row of logits (model/sampler.h) over GPT-2's vocabulary: greedy,
// a temperature draw over every token, and top-p draws, from logits spread as a near-uniform
// untrained model's (standard deviation 2) or a peaked trained model's (6) are. A server draws one
// per sequence per step.
//
//   build/switchyard_kernel_bench --benchmark_filter=SampleToken
#include <benchmark/benchmark.h>

#include <vector>

#include "core/rng.h"
#include "model/sampler.h"

namespace {

// Arguments: the logits' standard deviation, temperature x 10, top_p x 100.
void SampleToken(benchmark::State& state) {
  std::vector<float> logits(50257);
  switchyard::Rng rng(1);
  rng.fill_normal(logits.data(), logits.size(), static_cast<float>(state.range(0)));
  const switchyard::model::SamplingOptions options{
      .temperature = static_cast<float>(state.range(1)) / 10.0f, .top_k = 0,
      .top_p = static_cast<float>(state.range(2)) / 100.0f};
  for (auto _ : state) {
    benchmark::DoNotOptimize(switchyard::model::sample_token(logits, options, rng));
  }
}

BENCHMARK(SampleToken)
    ->ArgNames({"spread", "temperature_x10", "top_p_x100"})
    ->Args({2, 0, 100})
    ->Args({2, 10, 100})
    ->Args({2, 10, 90})
    ->Args({6, 10, 90})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
