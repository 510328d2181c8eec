// cpu-bf16's expert products over MXFP4 weights at the row counts a prompt gives an expert
// (gpt-oss-20b: 512 tokens, top 4 of 32 experts, about 64 rows each): panels decoded to bf16 and
// multiplied by oneDNN (mxfp4_bf16_gemm.h), against oneDNN's bf16 product over the same weights
// decoded beforehand (what the panels cost on top), rotating over weight copies that outgrow the
// last-level cache as a prompt's pass over every expert does. Counter: GFLOP/s.
//
//   build/switchyard_kernel_bench --benchmark_filter=ExpertProduct
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/mxfp4_bf16_gemm.h"
#include "core/dtype.h"
#include "core/rng.h"

namespace {

using switchyard::DType;
using switchyard::backend::cpu::bf16_gemm;
using switchyard::backend::cpu::decode_mxfp4_rows_to_bf16;
using switchyard::backend::cpu::mxfp4_bf16_gemm;
using switchyard::backend::cpu::WeightMatrix;

enum Weights : int64_t { kMxfp4Panels, kBf16Decoded };

// Arguments: the weights' form, rows M, inputs C, outputs OC.
void ExpertProduct(benchmark::State& state) {
  const auto form = static_cast<Weights>(state.range(0));
  const int M = static_cast<int>(state.range(1)), C = static_cast<int>(state.range(2)),
            OC = static_cast<int>(state.range(3));
  const size_t code_bytes = static_cast<size_t>(OC) * C / 2, scale_bytes = code_bytes / 16;
  constexpr size_t kStreamedBytes = size_t{256} << 20;
  const size_t copies = std::max<size_t>(2, kStreamedBytes / (code_bytes + scale_bytes));
  std::vector<uint8_t> codes(copies * code_bytes), scales(copies * scale_bytes);
  switchyard::Rng rng(5);
  for (uint8_t& b : codes) b = static_cast<uint8_t>(rng.next_u64());
  for (uint8_t& s : scales) s = static_cast<uint8_t>(119 + rng.next_u64() % 6);
  const auto matrix = [&](size_t copy) {
    return WeightMatrix{.dtype = DType::kMXFP4,
                        .data = codes.data() + copy * code_bytes,
                        .scales = scales.data() + copy * scale_bytes};
  };
  std::vector<std::vector<uint16_t>> decoded;
  if (form == kBf16Decoded) {
    const size_t bf16_copies = std::max<size_t>(2, kStreamedBytes / (2 * size_t(OC) * C));
    for (size_t copy = 0; copy < bf16_copies; ++copy) {
      decoded.emplace_back(static_cast<size_t>(OC) * C);
      decode_mxfp4_rows_to_bf16(decoded.back().data(), matrix(copy % copies), 0, OC, C);
    }
  }
  std::vector<uint16_t> inp(static_cast<size_t>(M) * C, 0x3C00), out(static_cast<size_t>(M) * OC);
  size_t next = 0;
  for (auto _ : state) {
    if (form == kMxfp4Panels) {
      mxfp4_bf16_gemm(out.data(), inp.data(), matrix(next % copies), nullptr, M, C, OC);
    } else {
      bf16_gemm(false, true, M, OC, C, inp.data(), C, decoded[next % decoded.size()].data(), C,
                out.data(), DType::kBF16, OC, false, nullptr);
    }
    ++next;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * M * C * OC * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// gpt-oss-20b's gate and up projection (interleaved) and its down projection.
BENCHMARK(ExpertProduct)
    ->ArgsProduct({{kMxfp4Panels, kBf16Decoded}, {16, 64, 128}, {2880}, {5760, 2880}})
    ->ArgNames({"weights", "M", "C", "OC"})
    ->UseRealTime();

}  // namespace
