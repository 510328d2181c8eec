// The batch-invariant product (cpu_kernels.h batch_invariant_linear; matmul_forward over bf16
// weights) on the shapes a GPT-2 124M decode step runs, at the row counts decoding and serving
// give it: 1 (one stream) to 64 (a continuous batch). Counters: GFLOP/s and the weights' read rate in GB/s (each weight byte is
// read once per call, whatever the rows). Calls rotate over copies of the weights that together
// outgrow the last-level cache, so every call streams its weights from memory as a decode step
// over a whole model does.
//
//   build/switchyard_kernel_bench --benchmark_filter=InvariantLinear
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

#include "backend/cpu/bf16_dot_linear.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/rng.h"

namespace {

using switchyard::backend::cpu::batch_invariant_linear;
using switchyard::backend::cpu::bf16_dot_linear;
using switchyard::backend::cpu::bf16_dot_linear_available;
using switchyard::backend::cpu::matmul_forward;
using switchyard::backend::cpu::WeightMatrix;

// Values on 64-byte boundaries, as the engine's buffers are (a vector load across two cache lines
// costs two).
template <typename T>
using AlignedArray = std::unique_ptr<T[], decltype(&std::free)>;

template <typename T>
AlignedArray<T> aligned_array(size_t n) {
  const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
  return AlignedArray<T>(static_cast<T*>(std::aligned_alloc(64, bytes)), &std::free);
}

AlignedArray<float> random_values(size_t n, uint64_t seed) {
  AlignedArray<float> v = aligned_array<float>(n);
  switchyard::Rng rng(seed);
  rng.fill_normal(v.get(), n, 0.02f);
  return v;
}

// Runs call(copy) for copies 0, 1, ..., copies - 1, 0, ... and reports GFLOP/s of an [N, C] x
// [C, OC] product a call and the weights' read rate (weight_bytes a call).
template <typename Call>
void time_rotating_calls(benchmark::State& state, size_t copies, double weight_bytes, int N, int C,
                         int OC, Call&& call) {
  size_t next = 0;
  for (auto _ : state) {
    call(next);
    next = (next + 1) % copies;
    benchmark::ClobberMemory();
  }
  const double calls = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * N * C * OC * calls / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes * calls / 1e9, benchmark::Counter::kIsRate);
}

// The inputs as bf16 bits (rounded), for cpu-bf16's products.
std::vector<uint16_t> narrowed(const float* values, size_t n) {
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; ++i) bits[i] = switchyard::narrow_to_bf16_bits(values[i]);
  return bits;
}

// Times product(out, inp, copy) with the weights in `Weight` (float or bf16 bits), rotating over
// copies that together outgrow the last-level cache. Arguments: rows N, inputs C, outputs OC.
template <typename Weight, typename Product>
void time_streamed_product(benchmark::State& state, Product&& product) {
  const int N = static_cast<int>(state.range(0)), C = static_cast<int>(state.range(1)),
            OC = static_cast<int>(state.range(2));
  const AlignedArray<float> inp = random_values(static_cast<size_t>(N) * C, 1);
  const size_t weight_size = static_cast<size_t>(OC) * C;
  constexpr size_t kStreamedBytes = size_t{512} << 20;
  const size_t copies = std::max<size_t>(2, kStreamedBytes / (weight_size * sizeof(Weight)));
  AlignedArray<Weight> weights = aligned_array<Weight>(copies * weight_size);
  {
    const AlignedArray<float> values = random_values(weight_size, 2);
    for (size_t i = 0; i < copies * weight_size; ++i) {
      const float value = values.get()[i % weight_size];
      if constexpr (std::is_same_v<Weight, float>) {
        weights[i] = value;
      } else {
        weights[i] = switchyard::narrow_to_bf16_bits(value);
      }
    }
  }
  std::vector<float> out(static_cast<size_t>(N) * OC);
  time_rotating_calls(state, copies, static_cast<double>(sizeof(Weight)) * C * OC, N, C, OC,
                      [&](size_t copy) {
                        const Weight* copy_weights = weights.get() + copy * weight_size;
                        product(out.data(), inp.get(), copy_weights, N, C, OC);
                        benchmark::DoNotOptimize(out.data());
                      });
}

void InvariantLinear(benchmark::State& state) {
  time_streamed_product<float>(
      state, [](float* out, const float* inp, const float* weights, int N, int C, int OC) {
        batch_invariant_linear(out, inp, weights, N, C, OC);
      });
}

// The same products over bf16 weights (matmul_forward over a WeightMatrix: decoded in registers
// as they stream), at half the bytes a call.
void InvariantLinearBf16(benchmark::State& state) {
  time_streamed_product<uint16_t>(
      state, [](float* out, const float* inp, const uint16_t* weights, int N, int C, int OC) {
        matmul_forward(out, inp, WeightMatrix{.dtype = switchyard::DType::kBF16, .data = weights},
                       nullptr, N, C, OC);
      });
}

// cpu-bf16's decoding product (bf16_dot_linear.h): bf16 inputs (the fp32 inputs rounded) and
// outputs, the weights through the bf16 dot-product instruction, at 1 to 4 rows.
void DotLinearBf16(benchmark::State& state) {
  if (!bf16_dot_linear_available()) {
    state.SkipWithError("this build's CPU kernels have no AVX-512 BF16");
    return;
  }
  std::vector<uint16_t> inp_bits, out_bits;
  time_streamed_product<uint16_t>(
      state, [&](float*, const float* inp, const uint16_t* weights, int N, int C, int OC) {
        if (inp_bits.empty()) {
          inp_bits = narrowed(inp, static_cast<size_t>(N) * C);
          out_bits.resize(static_cast<size_t>(N) * OC);
        }
        bf16_dot_linear(out_bits.data(), inp_bits.data(), weights, nullptr, N, C, OC);
      });
}

// MXFP4 weights [OC, C] (random codes, scales around 2^-4), rotating over copies that together
// outgrow the last-level cache, or (a fourth argument of 0) one copy that stays in the cache, which
// times the decoding alone; `product` gets each copy as a WeightMatrix. The weights' read rate
// counts codes and scales (17 bytes a block of 32).
template <typename Product>
void time_streamed_mxfp4_product(benchmark::State& state, Product&& product) {
  const int N = static_cast<int>(state.range(0)), C = static_cast<int>(state.range(1)),
            OC = static_cast<int>(state.range(2));
  const bool streamed = state.range(3) != 0;
  const AlignedArray<float> inp = random_values(static_cast<size_t>(N) * C, 1);
  const size_t code_bytes = static_cast<size_t>(OC) * C / 2, scale_bytes = code_bytes / 16;
  constexpr size_t kStreamedBytes = size_t{512} << 20;
  const size_t copies =
      streamed ? std::max<size_t>(2, kStreamedBytes / (code_bytes + scale_bytes)) : 1;
  AlignedArray<uint8_t> codes = aligned_array<uint8_t>(copies * code_bytes);
  AlignedArray<uint8_t> scales = aligned_array<uint8_t>(copies * scale_bytes);
  switchyard::Rng rng(3);
  for (size_t i = 0; i < copies * code_bytes; ++i) codes[i] = static_cast<uint8_t>(rng.next_u64());
  for (size_t i = 0; i < copies * scale_bytes; ++i) {
    scales[i] = static_cast<uint8_t>(119 + rng.next_u64() % 6);
  }
  std::vector<float> out(static_cast<size_t>(N) * OC);
  time_rotating_calls(state, copies, static_cast<double>(code_bytes + scale_bytes), N, C, OC,
                      [&](size_t copy) {
                        const WeightMatrix weight{.dtype = switchyard::DType::kMXFP4,
                                                  .data = codes.get() + copy * code_bytes,
                                                  .scales = scales.get() + copy * scale_bytes};
                        product(out.data(), inp.get(), weight, N, C, OC);
                        benchmark::DoNotOptimize(out.data());
                      });
}

// fp32 mode's product over MXFP4 weights: decoded to fp32 in registers as they stream.
void InvariantLinearMxfp4(benchmark::State& state) {
  time_streamed_mxfp4_product(
      state, [](float* out, const float* inp, const WeightMatrix& weight, int N, int C, int OC) {
        matmul_forward(out, inp, weight, nullptr, N, C, OC);
      });
}

// cpu-bf16's decoding product over MXFP4 weights: each block decoded to bf16 in registers.
void DotLinearMxfp4(benchmark::State& state) {
  if (!bf16_dot_linear_available()) {
    state.SkipWithError("this build's CPU kernels have no AVX-512 BF16");
    return;
  }
  std::vector<uint16_t> inp_bits, out_bits;
  time_streamed_mxfp4_product(
      state, [&](float*, const float* inp, const WeightMatrix& weight, int N, int C, int OC) {
        if (inp_bits.empty()) {
          inp_bits = narrowed(inp, static_cast<size_t>(N) * C);
          out_bits.resize(static_cast<size_t>(N) * OC);
        }
        bf16_dot_linear(out_bits.data(), inp_bits.data(), weight, nullptr, N, C, OC);
      });
}

void Gpt2DecodeShapes(benchmark::internal::Benchmark* b) {
  for (int rows : {1, 4, 8, 16, 24, 32, 48, 64}) {
    b->Args({rows, 768, 2304});    // attention q, k, v
    b->Args({rows, 768, 3072});    // MLP up
    b->Args({rows, 3072, 768});    // MLP down
    b->Args({rows, 768, 50257});   // the logits
  }
}

BENCHMARK(InvariantLinear)->Apply(Gpt2DecodeShapes)->ArgNames({"N", "C", "OC"})->UseRealTime();
BENCHMARK(InvariantLinearBf16)->Apply(Gpt2DecodeShapes)->ArgNames({"N", "C", "OC"})->UseRealTime();
BENCHMARK(DotLinearBf16)
    ->ArgsProduct({{1, 4}, {768}, {2304, 3072, 50257}})
    ->Args({1, 3072, 768})
    ->Args({4, 3072, 768})
    ->ArgNames({"N", "C", "OC"})
    ->UseRealTime();
// gpt-oss-20b's expert products (gate and up interleaved, then down) at 1 and 4 rows, streamed;
// and 256 outputs of them in cache (368 KiB), where the decoding bounds the rate. fp32 mode also
// at 1,024 outputs (1.5 MiB, half in each core's L2) and 5,760 (8.4 MiB, in L3): the rate its
// instructions allow once the fork and join of a call no longer weigh, against which the streamed
// rate shows how much of the memory wait the prefetches hide.
BENCHMARK(InvariantLinearMxfp4)
    ->ArgsProduct({{1, 4}, {2880}, {5760, 2880}, {1}})
    ->ArgsProduct({{1}, {2880}, {256, 1024, 5760}, {0}})
    ->ArgNames({"N", "C", "OC", "streamed"})
    ->UseRealTime();
BENCHMARK(DotLinearMxfp4)
    ->ArgsProduct({{1, 4}, {2880}, {5760, 2880}, {1}})
    ->ArgsProduct({{1, 4}, {2880}, {256}, {0}})
    ->ArgNames({"N", "C", "OC", "streamed"})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
