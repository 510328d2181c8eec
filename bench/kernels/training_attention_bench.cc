// Causal attention over windows of a training step (attention_kernels.h attention_forward and
// attention_backward) at GPT-2 124M's shape: 12 heads of 64, q, k and v read from one [tokens,
// 3 x 768] projection as the model lays them out, in fp32 or as bf16 bits (bf16 mode: each task
// widens its heads). B x T: 4 x 64 and 8 x 256, the shapes `bench train` reports. Counter: GFLOP/s over the products' full blocks (masked positions included, as
// the kernel computes them), so changes to the softmax's share show as a changed rate.
//
//   build/switchyard_kernel_bench --benchmark_filter=TrainingAttention
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "core/dtype.h"
#include "core/rng.h"

namespace {

using switchyard::backend::cpu::AttentionGeometry;

constexpr int kHeads = 12, kHeadDim = 64, kChannels = kHeads * kHeadDim;

template <typename Stored>
std::vector<Stored> random_values(size_t n, uint64_t seed) {
  std::vector<float> values(n);
  switchyard::Rng rng(seed);
  rng.fill_normal(values.data(), n, 1.0f);
  if constexpr (std::is_same_v<Stored, float>) {
    return values;
  } else {
    std::vector<Stored> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = switchyard::narrow_to_bf16_bits(values[i]);
    return bits;
  }
}

// Arguments: backward (0 or 1), batch B, sequence T; Stored is float or bf16 bits.
template <typename Stored>
void TrainingAttention(benchmark::State& state) {
  const bool backward = state.range(0) != 0;
  const int B = static_cast<int>(state.range(1)), T = static_cast<int>(state.range(2));
  const size_t tokens = static_cast<size_t>(B) * T;
  AttentionGeometry g;
  g.batch = B;
  g.seq = T;
  g.heads = g.kv_heads = kHeads;
  g.head_dim = kHeadDim;
  g.ldq = g.ldk = g.ldv = 3 * kChannels;
  g.ldo = kChannels;
  const std::vector<Stored> qkv = random_values<Stored>(tokens * 3 * kChannels, 1);
  const std::vector<Stored> dout = random_values<Stored>(tokens * kChannels, 2);
  std::vector<Stored> out(tokens * kChannels), dqkv(tokens * 3 * kChannels);
  std::vector<float> record(static_cast<size_t>(B) * kHeads * T * T), scratch(record.size());
  const Stored* q = qkv.data();
  const Stored* k = q + kChannels;
  const Stored* v = k + kChannels;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  switchyard::backend::cpu::attention_forward(out.data(), record.data(), q, k, v, nullptr, g,
                                              scale);
  for (auto _ : state) {
    if (backward) {
      switchyard::backend::cpu::attention_backward(dqkv.data(), dqkv.data() + kChannels,
                                                   dqkv.data() + 2 * kChannels, nullptr,
                                                   scratch.data(), dout.data(), record.data(), q,
                                                   k, v, nullptr, g, scale);
    } else {
      switchyard::backend::cpu::attention_forward(out.data(), record.data(), q, k, v, nullptr, g,
                                                  scale);
    }
    benchmark::ClobberMemory();
  }
  // Forward: scores and values, 2 x T^2 x hd each per head; backward: four products of that size.
  const double flops = (backward ? 4.0 : 2.0) * 2.0 * B * kHeads * T * T * kHeadDim;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"backward", "B", "T"});
  for (const int backward : {0, 1}) {
    b->Args({backward, 4, 64});
    b->Args({backward, 8, 256});
  }
  b->UseRealTime();
}

BENCHMARK(TrainingAttention<float>)->Name("TrainingAttention/fp32")->Apply(shapes);
BENCHMARK(TrainingAttention<uint16_t>)->Name("TrainingAttention/bf16")->Apply(shapes);

}  // namespace
