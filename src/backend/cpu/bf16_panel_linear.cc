#include "backend/cpu/bf16_panel_linear.h"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#include <omp.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/transpose16.h"
#include "core/error.h"

namespace switchyard::backend::cpu {

namespace {

int panel_count(int OC) { return (OC + kPanelColumns - 1) / kPanelColumns; }
// Values one panel holds: kPanelColumns outputs' C weights.
size_t panel_values(int C) { return static_cast<size_t>(C) * kPanelColumns; }

}  // namespace

size_t bf16_panel_values(int C, int OC) {
  return static_cast<size_t>(panel_count(OC)) * panel_values(C);
}

void pack_bf16_panels(uint16_t* panels, const uint16_t* weight, int C, int OC) {
  require(C % 2 == 0, "bf16 panels: C = {} must be even", C);
  const int pairs = C / 2, count = panel_count(OC);
  SWITCHYARD_OMP_FOR(schedule(static))
  for (int p = 0; p < count; ++p) {
    uint16_t* panel = panels + static_cast<size_t>(p) * panel_values(C);
    for (int k = 0; k < pairs; ++k) {
      for (int j = 0; j < kPanelColumns; ++j) {
        const int o = p * kPanelColumns + j;
        uint16_t* to = panel + (static_cast<size_t>(k) * kPanelColumns + j) * 2;
        if (o < OC) {
          std::memcpy(to, weight + static_cast<size_t>(o) * C + 2 * k, 2 * sizeof(uint16_t));
        } else {
          to[0] = to[1] = 0;
        }
      }
    }
  }
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
namespace {

constexpr int kPassRows = 32;  // rows a pass over the weights: two vectors of 16 lanes
// How far ahead of its use a panel's stream is asked for: the hardware prefetcher alone left the
// product waiting on memory (410 against 600-630 GFLOP/s streamed, 2 threads, Zen 5).
constexpr int kPrefetchBytes = 4096;

// Rows [0, rows) of inp [*, C] as [C / 2][kPassRows][2]: input pair k of every row side by side,
// rows past `rows` zero.
void pack_rows(uint16_t* packed, const uint16_t* inp, int rows, int C) {
  const int pairs = C / 2;
  for (int k = 0; k < pairs; ++k) {
    uint32_t* to = reinterpret_cast<uint32_t*>(packed) + static_cast<size_t>(k) * kPassRows;
    for (int r = 0; r < kPassRows; ++r) {
      uint32_t pair = 0;
      if (r < rows) std::memcpy(&pair, inp + static_cast<size_t>(r) * C + 2 * k, sizeof(pair));
      to[r] = pair;
    }
  }
}

// One panel's sums for kVectors x 16 rows: acc[v][j] holds output j of rows 16v .. 16v + 15.
template <int kVectors>
void accumulate_panel(__m512 (&acc)[kVectors][kPanelColumns], const uint16_t* rows,
                      const uint16_t* panel, int pairs) {
  for (auto& vectors : acc) {
    for (__m512& a : vectors) a = _mm512_setzero_ps();
  }
  const auto* weight_pairs = reinterpret_cast<const int32_t*>(panel);
  // The panel's first bytes, which the previous panel's prefetches covered only if this thread ran
  // it: a thread's pieces of panels are not contiguous.
  const char* start = reinterpret_cast<const char*>(panel);
  for (int b = 0; b < kPrefetchBytes; b += 64) _mm_prefetch(start + b, _MM_HINT_T0);
  for (int k = 0; k < pairs; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(weight_pairs + k * kPanelColumns) + kPrefetchBytes,
                 _MM_HINT_T0);
    __m512i x[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      x[v] = _mm512_loadu_si512(rows + (static_cast<size_t>(k) * kPassRows + 16 * v) * 2);
    }
#pragma GCC unroll 12
    for (int j = 0; j < kPanelColumns; ++j) {
      const __m512i w = _mm512_set1_epi32(weight_pairs[k * kPanelColumns + j]);
      for (int v = 0; v < kVectors; ++v) {
        acc[v][j] = _mm512_dpbf16_ps(acc[v][j], (__m512bh)x[v], (__m512bh)w);
      }
    }
  }
}

// The sums plus bias, rounded to bf16, into out's rows [0, rows) and columns [o0, o0 + columns):
// each 16 rows' sums transposed in registers (transpose16.h), so that a row's outputs are one
// vector, rounded and stored at once (value by value, the stores took a sixth of the product).
template <int kVectors>
void store_panel(uint16_t* out, const __m512 (&acc)[kVectors][kPanelColumns], const float* bias,
                 int rows, int OC, int o0, int columns) {
  const __mmask16 present = static_cast<__mmask16>((1u << columns) - 1);
  const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(present, bias + o0) : _mm512_setzero_ps();
  for (int v = 0; v < kVectors; ++v) {
    __m512 block[16];  // block[j]: output j of rows 16v .., then (transposed) row 16v + j's outputs
    for (int j = 0; j < 16; ++j) block[j] = j < kPanelColumns ? acc[v][j] : _mm512_setzero_ps();
    transpose16(block);
    for (int i = 0; i < 16 && 16 * v + i < rows; ++i) {
      const __m256bh values = _mm512_cvtneps_pbh(_mm512_add_ps(block[i], b));
      _mm256_mask_storeu_epi16(out + static_cast<size_t>(16 * v + i) * OC + o0, present,
                               (__m256i)values);
    }
  }
}

template <int kVectors>
void panel_product(uint16_t* out, const uint16_t* rows, const uint16_t* panels, const float* bias,
                   int count, int C, int OC, int p) {
  const int pairs = C / 2;
  __m512 acc[kVectors][kPanelColumns];
  accumulate_panel<kVectors>(acc, rows, panels + static_cast<size_t>(p) * panel_values(C), pairs);
  const int o0 = p * kPanelColumns;
  store_panel<kVectors>(out, acc, bias, count, OC, o0, std::min(kPanelColumns, OC - o0));
}

// Rows [0, count) (count <= kPassRows, packed by pack_rows) against every panel. Threads take
// pieces of consecutive panels, as the decoding product's tasks do (bf16_dot_linear.cc), so a
// thread that another process holds up leaves its later pieces to the others.
template <int kVectors>
void pass(uint16_t* out, const uint16_t* rows, const uint16_t* panels, const float* bias,
          int count, int C, int OC) {
  constexpr int kPiecesPerThread = 8;
  const int panels_in_all = panel_count(OC);
  const bool parallel = static_cast<size_t>(OC) * C > kParallelThreshold;
  const int piece = std::max(1, panels_in_all / (kPiecesPerThread * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, piece) if (parallel)
  for (int p = 0; p < panels_in_all; ++p) {
    panel_product<kVectors>(out, rows, panels, bias, count, C, OC, p);
  }
}

}  // namespace

bool bf16_panel_linear_available() { return true; }

void bf16_panel_linear(uint16_t* out, const uint16_t* inp, const uint16_t* panels,
                       const float* bias, int N, int C, int OC) {
  require(C % 2 == 0, "bf16 panel product: C = {} must be even", C);
  thread_local std::vector<uint16_t> rows;
  rows.resize(static_cast<size_t>(C) * kPassRows);
  for (int r0 = 0; r0 < N; r0 += kPassRows) {
    const int count = std::min(kPassRows, N - r0);
    pack_rows(rows.data(), inp + static_cast<size_t>(r0) * C, count, C);
    uint16_t* pass_out = out + static_cast<size_t>(r0) * OC;
    if (count <= 16) {
      pass<1>(pass_out, rows.data(), panels, bias, count, C, OC);
    } else {
      pass<2>(pass_out, rows.data(), panels, bias, count, C, OC);
    }
  }
}

#else

bool bf16_panel_linear_available() { return false; }

void bf16_panel_linear(uint16_t*, const uint16_t*, const uint16_t*, const float*, int, int, int) {
  fail("the bf16 panel product needs a build for a CPU with AVX-512 BF16");
}

#endif

}  // namespace switchyard::backend::cpu
