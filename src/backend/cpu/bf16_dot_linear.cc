#include "backend/cpu/bf16_dot_linear.h"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
// GCC 12 takes the deliberately undefined pass-through operand inside its AVX-512 extract
// intrinsics for an uninitialised variable.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>
#endif

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/mxfp4_bf16_decode.h"
#include "backend/cpu/weight_decode.h"
#include "core/dtype.h"
#include "core/error.h"

namespace switchyard::backend::cpu {

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
namespace {

constexpr int kValues = 32;  // bf16 values in one 64-byte vector

// Values [c, c + 32) of a bf16 row, or its last `tail` values (zeros past them, which add nothing).
__m512i load_values(const uint16_t* row, int c, __mmask32 tail) {
  return tail ? _mm512_maskz_loadu_epi16(tail, row + c) : _mm512_loadu_si512(row + c);
}

// Weights stored as bf16: a step is 32 values loaded as they are.
struct Bf16Weights {
  static constexpr int kOutputs = 2;  // weight rows a tile (see kChains)
  const uint16_t* data;
  int C;

  struct Step {
    __m512i values;
  };
  using Row = const uint16_t*;
  Row row(int o) const { return data + static_cast<size_t>(o) * C; }
  static Step load(Row row, int c, __mmask32 tail) { return {load_values(row, c, tail)}; }
  static __m512 accumulate(__m512 sum, __m512i x, const Step& w) {
    return _mm512_dpbf16_ps(sum, (__m512bh)x, (__m512bh)w.values);
  }
  // The bytes of rows [o0, o1).
  std::pair<const char*, const char*> row_bytes(int o0, int o1) const {
    return {reinterpret_cast<const char*>(data + static_cast<size_t>(o0) * C),
            reinterpret_cast<const char*>(data + static_cast<size_t>(o1) * C)};
  }
};

// Weights stored as MXFP4 (C a multiple of 32): a step is one block, decoded to bf16 unscaled in
// lane order (mxfp4_bf16_decode.h), the order the inputs were put in; its products are summed in
// a fresh vector and scaled once. The unscaled values are never below bf16's normal range, which
// the instruction would read as zero.
struct Mxfp4Weights {
  static constexpr int kOutputs = 2;  // 1 ran 10% slower; 4 as fast at 1 row, 14% slower at 4
  const uint8_t* codes;
  const uint8_t* scales;
  int C;
  __m512i table = mxfp4_bf16::lookup_table(1.0f);
  __m512i shifts = mxfp4_bf16::lane_order_shifts();

  struct Step {
    __m512i values;  // unscaled
    __m512 scale;
  };
  struct Row {
    const uint8_t* codes;
    const uint8_t* scales;
  };
  Row row(int o) const {
    const size_t first = static_cast<size_t>(o) * C;
    return {codes + first / 2, scales + first / 32};
  }
  Step load(const Row& row, int c, __mmask32 /*no tails*/) const {
    return {mxfp4_bf16::decode_block_in_lane_order(row.codes + c / 2, table, shifts),
            _mm512_set1_ps(weight_decode::kE8M0Scales[row.scales[c / 32]])};
  }
  static __m512 accumulate(__m512 sum, __m512i x, const Step& w) {
    const __m512 block = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)x, (__m512bh)w.values);
    return _mm512_fmadd_ps(block, w.scale, sum);
  }
  std::pair<const char*, const char*> row_bytes(int o0, int o1) const {
    return {reinterpret_cast<const char*>(codes + static_cast<size_t>(o0) * C / 2),
            reinterpret_cast<const char*>(codes + static_cast<size_t>(o1) * C / 2)};
  }
};

// Each (row, output) pair sums its products in kChains vectors of 16 lanes: vector v of the row
// (32 values of c, the last one masked) goes to sum v % kChains. Several sums in flight hide the
// instruction's latency with only two outputs a tile, so that a tile reads two weight rows side
// by side, streams the prefetchers follow (eight rows side by side ran ~15% slower in `bench
// generate`). A pair's order is the same whatever the tile, so a row gets the same bits alone or
// among others.
constexpr int kChains = 4;

// Rows [n0, n0 + NR) of inp against weight rows [o0, o0 + R): NR x R x kChains sums in registers
// while c advances, then added up, biased and rounded to bf16.
template <int NR, int R, typename Weights>
void dot_tile(uint16_t* out, const uint16_t* inp, const Weights& weights, const float* bias, int C,
              int OC, int n0, int o0) {
  __m512 sums[NR][R][kChains];
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < kChains; ++k) sums[i][r][k] = _mm512_setzero_ps();
  typename Weights::Row rows[R];
  for (int r = 0; r < R; ++r) rows[r] = weights.row(o0 + r);
  // Sum K is a template argument at every call, so the sums stay in registers.
  const auto step = [&]<int K>(std::integral_constant<int, K>, int c, __mmask32 tail)
                        __attribute__((always_inline)) {
    __m512i x[NR];
    for (int i = 0; i < NR; ++i) {
      x[i] = load_values(inp + static_cast<size_t>(n0 + i) * C, c, tail);
    }
    for (int r = 0; r < R; ++r) {
      const typename Weights::Step w = weights.load(rows[r], c, tail);
      for (int i = 0; i < NR; ++i) sums[i][r][K] = Weights::accumulate(sums[i][r][K], x[i], w);
    }
  };
  static_assert(kChains == 4, "four sums, named below");
  const std::integral_constant<int, 0> k0;
  const std::integral_constant<int, 1> k1;
  const std::integral_constant<int, 2> k2;
  const std::integral_constant<int, 3> k3;
  const int vectors = C / kValues;
  int v = 0;
  for (; v + kChains <= vectors; v += kChains) {
    step(k0, v * kValues, 0);
    step(k1, (v + 1) * kValues, 0);
    step(k2, (v + 2) * kValues, 0);
    step(k3, (v + 3) * kValues, 0);
  }
  // Fewer than kChains whole vectors remain, then perhaps a tail: vector v + k goes to sum k.
  const int whole = vectors - v;
  const __mmask32 tail = static_cast<__mmask32>((1ull << (C - vectors * kValues)) - 1);
  if (whole > 0) step(k0, v * kValues, 0);
  if (whole > 1) step(k1, (v + 1) * kValues, 0);
  if (whole > 2) step(k2, (v + 2) * kValues, 0);
  if (tail != 0) {
    const int c = vectors * kValues;
    if (whole == 0) step(k0, c, tail);
    if (whole == 1) step(k1, c, tail);
    if (whole == 2) step(k2, c, tail);
    if (whole == 3) step(k3, c, tail);
  }
  for (int i = 0; i < NR; ++i) {
    for (int r = 0; r < R; ++r) {
      static_assert(kChains == 4, "the sums are added as (0 + 1) + (2 + 3)");
      const __m512 all = _mm512_add_ps(_mm512_add_ps(sums[i][r][0], sums[i][r][1]),
                                       _mm512_add_ps(sums[i][r][2], sums[i][r][3]));
      const float sum = _mm512_reduce_add_ps(all) + (bias ? bias[o0 + r] : 0.0f);
      out[static_cast<size_t>(n0 + i) * OC + o0 + r] = narrow_to_bf16_bits(sum);
    }
  }
}

// Every row against weight rows [o0, o0 + R): two rows at a time, then the last one. The weight
// rows stay in L1 between the pairs.
template <int R, typename Weights>
void rows_against(uint16_t* out, const uint16_t* inp, const Weights& weights, const float* bias,
                  int N, int C, int OC, int o0) {
  int n = 0;
  for (; n + 2 <= N; n += 2) dot_tile<2, R>(out, inp, weights, bias, C, OC, n, o0);
  if (n < N) dot_tile<1, R>(out, inp, weights, bias, C, OC, n, o0);
}

// Weight rows [o0, o1) asked for ahead of their use: rows of a few kilobytes are too short for the
// hardware prefetcher to reach bandwidth on each (as in the batch-invariant product). An MXFP4
// row's scales (one byte a block) are left to the prefetcher: they are a thirty-second of its
// bytes, in one stream.
template <typename Weights>
void prefetch_rows(const Weights& weights, int o0, int o1) {
  const auto [begin, end] = weights.row_bytes(o0, o1);
  for (const char* p = begin; p < end; p += 64) _mm_prefetch(p, _MM_HINT_T0);
}

// Tiles of kOutputs outputs, handed out in pieces of consecutive tiles (a preempted thread's later
// pieces go to the other threads); each tile asks for the rows two tiles ahead. An odd last output
// on its own.
template <typename Weights>
void product(uint16_t* out, const uint16_t* inp, const Weights& weights, const float* bias, int N,
             int C, int OC) {
  constexpr int kOutputs = Weights::kOutputs;
  constexpr int kPiecesPerThread = 8;
  const int tiles = OC / kOutputs;
  const bool parallel = static_cast<size_t>(OC) * C > kParallelThreshold;
  const int piece = std::max(1, tiles / (kPiecesPerThread * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, piece) if (parallel)
  for (int t = 0; t < tiles; ++t) {
    const int o0 = t * kOutputs;
    prefetch_rows(weights, std::min(o0 + 2 * kOutputs, OC), std::min(o0 + 3 * kOutputs, OC));
    rows_against<kOutputs>(out, inp, weights, bias, N, C, OC, o0);
  }
  for (int o = tiles * kOutputs; o < OC; ++o) rows_against<1>(out, inp, weights, bias, N, C, OC, o);
}

// inp [N, C] (C a multiple of 32) with each block of 32 values put in lane order, in a buffer
// of the calling thread's that the next call reuses. Its vectors lie on cache lines: a load across
// two lines costs two.
const uint16_t* in_lane_order(const uint16_t* inp, int N, int C) {
  struct alignas(64) Vector {
    uint16_t values[kValues];
  };
  thread_local std::vector<Vector> permuted;
  const size_t vectors = static_cast<size_t>(N) * C / kValues;
  if (permuted.size() < vectors) permuted.resize(vectors);
  const __m512i indices = mxfp4_bf16::lane_order_indices();
  for (size_t v = 0; v < vectors; ++v) {
    const __m512i values = _mm512_loadu_si512(inp + v * kValues);
    _mm512_store_si512(permuted[v].values, mxfp4_bf16::permute_to_lane_order(values, indices));
  }
  return permuted.data()->values;
}

}  // namespace

bool bf16_dot_linear_available() { return true; }

void bf16_dot_linear(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias,
                     int N, int C, int OC) {
  if (N > 0 && OC > 0) product(out, inp, Bf16Weights{weight, C}, bias, N, C, OC);
}

void bf16_dot_linear(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                     const float* bias, int N, int C, int OC) {
  if (weight.dtype == DType::kBF16) {
    bf16_dot_linear(out, inp, static_cast<const uint16_t*>(weight.data), bias, N, C, OC);
    return;
  }
  require(weight.dtype == DType::kMXFP4, "bf16_dot_linear: weights must be bf16 or mxfp4, got {}",
          dtype_name(weight.dtype));
  require(weight.scales != nullptr && C % 32 == 0,
          "bf16_dot_linear: mxfp4 weights need their scales and C a multiple of 32 (C = {})", C);
  const Mxfp4Weights weights{static_cast<const uint8_t*>(weight.data), weight.scales, C};
  if (N > 0 && OC > 0) product(out, in_lane_order(inp, N, C), weights, bias, N, C, OC);
}

#else

bool bf16_dot_linear_available() { return false; }

void bf16_dot_linear(uint16_t*, const uint16_t*, const uint16_t*, const float*, int, int, int) {
  fail("bf16_dot_linear: this build's CPU kernels have no AVX-512 BF16 (rebuild on such a CPU)");
}

void bf16_dot_linear(uint16_t*, const uint16_t*, const WeightMatrix&, const float*, int, int, int) {
  fail("bf16_dot_linear: this build's CPU kernels have no AVX-512 BF16 (rebuild on such a CPU)");
}

#endif

}  // namespace switchyard::backend::cpu
