#include "backend/cpu/bf16_dot_linear.h"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#include <omp.h>
#endif

#include <algorithm>
#include <cstddef>

#include "backend/cpu/cpu_kernels.h"
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

// Each (row, output) pair sums its products in kChains vectors of 16 lanes: vector v of the row
// (32 values of c, the last one masked) goes to sum v % kChains. Several sums in flight hide the
// instruction's latency with only two outputs a tile, so that a tile reads two weight rows side
// by side, streams the prefetchers follow (eight rows side by side ran ~15% slower in `bench
// generate`). A pair's order is the same whatever the tile, so a row gets the same bits alone or
// among others.
constexpr int kChains = 4;

// Rows [n0, n0 + NR) of inp against weight rows [o0, o0 + R): NR x R x kChains sums in registers
// while c advances, then added up, biased and rounded to bf16.
template <int NR, int R>
void dot_tile(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias, int C,
              int OC, int n0, int o0) {
  __m512 sums[NR][R][kChains];
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < kChains; ++k) sums[i][r][k] = _mm512_setzero_ps();
  const auto step = [&](int c, int k, __mmask32 tail) {
    __m512i x[NR];
    for (int i = 0; i < NR; ++i) {
      x[i] = load_values(inp + static_cast<size_t>(n0 + i) * C, c, tail);
    }
    for (int r = 0; r < R; ++r) {
      const __m512i w = load_values(weight + static_cast<size_t>(o0 + r) * C, c, tail);
      for (int i = 0; i < NR; ++i) {
        sums[i][r][k] = _mm512_dpbf16_ps(sums[i][r][k], (__m512bh)x[i], (__m512bh)w);
      }
    }
  };
  const int vectors = C / kValues;
  int v = 0;
  for (; v + kChains <= vectors; v += kChains) {
    for (int k = 0; k < kChains; ++k) step((v + k) * kValues, k, 0);
  }
  for (; v < vectors; ++v) step(v * kValues, v % kChains, 0);
  if (vectors * kValues < C) {
    step(vectors * kValues, vectors % kChains,
         static_cast<__mmask32>((1ull << (C - vectors * kValues)) - 1));
  }
  for (int i = 0; i < NR; ++i) {
    for (int r = 0; r < R; ++r) {
      static_assert(kChains == 4, "the sums are added as (0 + 1) + (2 + 3)");
      const __m512* s = sums[i][r];
      const __m512 all = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
      const float sum = _mm512_reduce_add_ps(all) + (bias ? bias[o0 + r] : 0.0f);
      out[static_cast<size_t>(n0 + i) * OC + o0 + r] = narrow_to_bf16_bits(sum);
    }
  }
}

// Every row against weight rows [o0, o0 + R): two rows at a time, then the last one. The weight
// rows stay in L1 between the pairs.
template <int R>
void rows_against(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias,
                  int N, int C, int OC, int o0) {
  int n = 0;
  for (; n + 2 <= N; n += 2) dot_tile<2, R>(out, inp, weight, bias, C, OC, n, o0);
  if (n < N) dot_tile<1, R>(out, inp, weight, bias, C, OC, n, o0);
}

constexpr int kOutputs = 2;  // weight rows a tile

// Weight rows [o0, o1) asked for ahead of their use: rows of a few kilobytes are too short for the
// hardware prefetcher to reach bandwidth on each (as in the batch-invariant product).
void prefetch_rows(const uint16_t* weight, int C, int o0, int o1) {
  const char* begin = reinterpret_cast<const char*>(weight + static_cast<size_t>(o0) * C);
  const char* end = reinterpret_cast<const char*>(weight + static_cast<size_t>(o1) * C);
  for (const char* p = begin; p < end; p += 64) _mm_prefetch(p, _MM_HINT_T0);
}

// Tiles of kOutputs outputs, handed out in pieces of consecutive tiles (a preempted thread's later
// pieces go to the other threads); each tile asks for the rows two tiles ahead. An odd last output
// on its own.
void product(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias, int N,
             int C, int OC) {
  constexpr int kPiecesPerThread = 8;
  const int tiles = OC / kOutputs;
  const bool parallel = static_cast<size_t>(OC) * C > kParallelThreshold;
  const int piece = std::max(1, tiles / (kPiecesPerThread * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, piece) if (parallel)
  for (int t = 0; t < tiles; ++t) {
    const int o0 = t * kOutputs;
    prefetch_rows(weight, C, std::min(o0 + 2 * kOutputs, OC), std::min(o0 + 3 * kOutputs, OC));
    rows_against<kOutputs>(out, inp, weight, bias, N, C, OC, o0);
  }
  if (OC % kOutputs != 0) rows_against<1>(out, inp, weight, bias, N, C, OC, OC - 1);
}

}  // namespace

bool bf16_dot_linear_available() { return true; }

void bf16_dot_linear(uint16_t* out, const uint16_t* inp, const uint16_t* weight, const float* bias,
                     int N, int C, int OC) {
  if (N > 0 && OC > 0) product(out, inp, weight, bias, N, C, OC);
}

#else

bool bf16_dot_linear_available() { return false; }

void bf16_dot_linear(uint16_t*, const uint16_t*, const uint16_t*, const float*, int, int, int) {
  fail("bf16_dot_linear: this build's CPU kernels have no AVX-512 BF16 (rebuild on such a CPU)");
}

#endif

}  // namespace switchyard::backend::cpu
