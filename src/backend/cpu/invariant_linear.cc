// Batch-invariant fp32 products: out[n, o] = sum over c of inp[n, c] * weight[o, c], each sum
// formed in one order that does not depend on the number of rows, the tile, the vector width or
// the thread count, so a row gets the same bits alone, in a decode batch or in a 512-token prompt.
// The order (the contract every path keeps; `ordered_sum` is its definition):
//   16 chains: chain l = fused multiply-adds from zero over c = l, l + 16, l + 32, ... (ascending)
//     for c below main = C - C % 16;
//   the chains added in a fixed tree: chain l + chain l + 8 (l < 8), then those sums l + l + 4
//     (l < 4), then l + l + 2 (l < 2), then the two left;
//   then, if C % 16 > 0, plus the tail: fused multiply-adds from zero over c = main .. C - 1.
// Two kernels keep it at two shapes:
// - few rows (decoding): dot products along c, a vector of 16 lanes being the 16 chains, so the
//   weights stream once at memory bandwidth and each row's chains advance 16 values of c a step;
// - many rows (prompts): the textbook packed GEMM, vectorised over rows: inputs and weights are
//   packed with c permuted chain by chain (c = 0, 16, 32, ..., then 1, 17, ...), so each chain
//   is one contiguous segment that a register tile of (2 vectors of rows) x (a few outputs) runs
//   through; the chains run in the order that lets the tree add them as they finish.
// Weights stored as bf16 or MXFP4 (WeightMatrix) keep the same order over their values: the
// few-rows kernel decodes them in registers as they stream (weight_decode.h), the packed GEMM as
// it packs them, and the scalar path a row at a time; every decoded weight is exact, so the bits
// are the fp32 product's over the decoded weights.
#include <omp.h>

#if defined(__AVX2__)
// GCC 12 takes the deliberately undefined pass-through operand inside its AVX-512 extract
// intrinsics for an uninitialised variable.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/transpose16.h"
#include "backend/cpu/weight_decode.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

using weight_decode::Bf16Rows;
using weight_decode::F32Rows;
using weight_decode::Mxfp4Rows;

constexpr int kChains = 16;

// Where the chains stop and the tail starts.
inline int chains_end(int C) { return C - C % kChains; }

// The 16 chains' values added in the contract's tree, then the tail (if any).
inline float combine(const float (&chain)[kChains], float tail, int C) {
  float sum[kChains];
  std::copy(chain, chain + kChains, sum);
  for (int half = kChains / 2; half >= 1; half /= 2) {
    for (int l = 0; l < half; ++l) sum[l] += sum[l + half];
  }
  return C % kChains == 0 ? sum[0] : sum[0] + tail;
}

template <typename W>
float tail_chain(const float* x, typename W::Row w, int C) {
  float acc = 0.0f;
  for (int c = chains_end(C); c < C; ++c) acc = std::fma(x[c], W::value(w, c), acc);
  return acc;
}

// One output by the definition: the reference every vectorised path matches bit for bit.
[[maybe_unused]] float ordered_sum(const float* x, const float* w, int C) {
  float chain[kChains] = {};
  for (int c = 0; c < chains_end(C); ++c) {
    chain[c % kChains] = std::fma(x[c], w[c], chain[c % kChains]);
  }
  return combine(chain, tail_chain<F32Rows>(x, w, C), C);
}

// Row o of the weights as fp32: in place for fp32, otherwise decoded into `decoded`.
template <typename W>
const float* row_values(const W& weights, int o, int C, std::vector<float>& decoded) {
  if constexpr (std::is_same_v<W, F32Rows>) {
    return weights.row(o);
  } else {
    decoded.resize(C);
    const typename W::Row w = weights.row(o);
    for (int c = 0; c < C; ++c) decoded[c] = W::value(w, c);
    return decoded.data();
  }
}

#if !(defined(__AVX2__) && defined(__FMA__))

template <typename W>
void scalar_linear(float* out, const float* inp, const W& weights, int N, int C, int OC) {
  const bool parallel = static_cast<size_t>(N) * OC * C > kParallelThreshold;
#pragma omp parallel if (parallel)
  {
    std::vector<float> decoded;
#pragma omp for schedule(static)
    for (int o = 0; o < OC; ++o) {
      const float* w = row_values(weights, o, C, decoded);
      for (int n = 0; n < N; ++n) {
        out[static_cast<size_t>(n) * OC + o] = ordered_sum(inp + static_cast<size_t>(n) * C, w, C);
      }
    }
  }
}

#else

using weight_decode::Lanes;

// Register tiles: with 32 vector registers (AVX-512), 32 rows x 12 outputs for the packed GEMM
// (24 registers), and for dot products 2 rows x 8 outputs, or 4 rows x 6 outputs once there are
// 4 rows or more (24 registers: 10 loads for 24 fused multiply-adds instead of 10 for 16); with
// 16 (AVX2), 16 x 6 (12) and 2 x 2.
#if defined(__AVX512F__)
constexpr int kPanelTileOutputs = 12;
constexpr int kDecodeRows = 2, kDecodeOutputs = 8;
constexpr int kWideDecodeRows = 4, kWideDecodeOutputs = 6;
#else
constexpr int kPanelTileOutputs = 6;
constexpr int kDecodeRows = 2, kDecodeOutputs = 2;
constexpr int kWideDecodeRows = 4, kWideDecodeOutputs = 6;
#endif

using V = weight_decode::V;
constexpr int kW = Lanes::kWidth;

// ---- few rows: dot products, the weights streamed once ----

// The 16 chains of one (row, output) pair: 16 / kW vectors, lane l holding chain l, or, for weights
// decoded in paired lane order (weight_decode.h), lane 2l chain l and lane 2l + 1 chain l + 8.
struct Chains {
  V v[kChains / kW];
  void zero() {
    for (V& x : v) x = Lanes::zero();
  }
  void load(const float* p) {
    for (int i = 0; i < kChains / kW; ++i) v[i] = Lanes::load(p + i * kW);
  }
  // Weights c .. c + 15 of row w, decoded to fp32 in W's lane order.
  template <typename W>
  void decode(typename W::Row w, int c, const typename W::Block& block) {
    W::decode16(w, c, block, v);
  }
  // Makes the compiler hold these values in registers: left alone, GCC folds a weight's load into
  // each of the rows' fused multiply-adds as a memory operand, loading it once per row, and the
  // loads, not the arithmetic, then bound the tile.
  void keep_in_registers() {
    for (V& x : v) __asm__("" : "+v"(x));
  }
  // Paired lane order back to element order.
  void to_element_order() {
#if defined(__AVX512F__)
    v[0] = weight_decode::paired_to_element_order(v[0]);
#endif
  }
  void fma(const Chains& a, const Chains& b) {
    for (int i = 0; i < kChains / kW; ++i) v[i] = Lanes::fma(a.v[i], b.v[i], v[i]);
  }
  // The contract's tree over the 16 chains: halves added until one is left.
  template <bool kPaired>
  float sum() const {
#if defined(__AVX512F__)
    __m256 s8;
    if constexpr (kPaired) {
      // Chains l and l + 8 are neighbours: each pair added, then the 8 sums gathered in order.
      const __m512 pairs = _mm512_add_ps(v[0], _mm512_permute_ps(v[0], 0xB1));
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
      s8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(even, pairs));
    } else {
      s8 = _mm256_add_ps(_mm512_castps512_ps256(v[0]), _mm512_extractf32x8_ps(v[0], 1));
    }
#else
    static_assert(!kPaired, "paired lanes are an AVX-512 decoding");
    const __m256 s8 = _mm256_add_ps(v[0], v[1]);
#endif
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
  }
};

// Weight rows asked for ahead of their use a few cache lines a step of the tiles that run
// meanwhile (see spread_prefetch).
struct RowPrefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int lines_per_step = 0;
  void step() {
    for (int i = 0; i < lines_per_step && next < end; ++i, next += 64) _mm_prefetch(next, _MM_HINT_T0);
  }
  // Whatever the steps left (the tail's lines, a rounding's worth).
  void finish() {
    for (; next < end; next += 64) _mm_prefetch(next, _MM_HINT_T0);
  }
};

// Rows [n0, n0 + NR) against outputs [o0, o0 + R): NR * R pairs of chains in registers. A step
// covers W::kStep values of c (16, or a 32-value MXFP4 block): the rows' inputs are loaded, then
// each weight row's values decoded once for all NR rows. `lanes_inp` is inp in W's lane order.
template <int NR, int R, typename W, bool kPrefetchSteps = false>
void dot_tile(float* out, const float* inp, const float* lanes_inp, const W& weights, int C,
              int OC, int n0, int o0, RowPrefetch& prefetch) {
  constexpr int kSteps = W::kStep / kChains;
  const float* x[NR];
  typename W::Row w[R];
  for (int i = 0; i < NR; ++i) x[i] = lanes_inp + static_cast<size_t>(n0 + i) * C;
  for (int r = 0; r < R; ++r) w[r] = weights.row(o0 + r);
  Chains acc[NR][R];
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r) acc[i][r].zero();
  const int end = chains_end(C);  // a multiple of W::kStep (MXFP4: C, a multiple of 32)
  for (int c = 0; c < end; c += W::kStep) {
    if constexpr (kPrefetchSteps) prefetch.step();
    Chains xv[NR][kSteps];
    for (int i = 0; i < NR; ++i)
      for (int s = 0; s < kSteps; ++s) xv[i][s].load(x[i] + c + s * kChains);
    for (int r = 0; r < R; ++r) {
      const typename W::Block block = W::block(w[r], c);
      for (int s = 0; s < kSteps; ++s) {
        Chains wv;
        wv.template decode<W>(w[r], c + s * kChains, block);
        wv.keep_in_registers();
        for (int i = 0; i < NR; ++i) acc[i][r].fma(wv, xv[i][s]);
      }
    }
  }
  for (int i = 0; i < NR; ++i) {
    const float* row = inp + static_cast<size_t>(n0 + i) * C;
    for (int r = 0; r < R; ++r) {
      const float sum = acc[i][r].template sum<W::kPairedLanes>();
      out[static_cast<size_t>(n0 + i) * OC + o0 + r] =
          end == C ? sum : sum + tail_chain<W>(row, w[r], C);
    }
  }
}

// Bytes [start of row o0, start of row o1) of the weights' main stream (MXFP4: the codes).
template <typename W>
std::pair<const char*, const char*> row_span(const W& weights, int o0, int o1) {
  if constexpr (std::is_pointer_v<typename W::Row>) {
    return {reinterpret_cast<const char*>(weights.row(o0)),
            reinterpret_cast<const char*>(weights.row(o1))};
  } else {
    return {reinterpret_cast<const char*>(weights.row(o0).codes),
            reinterpret_cast<const char*>(weights.row(o1).codes)};
  }
}

// Weight rows [o0, o1) asked for ahead of their use. A tile reads R short rows side by side (an
// MXFP4 row of 2880 weights is 1.4 KB), too short for the hardware prefetcher to ramp up on each,
// so without this the stream waits on memory latency instead of running at bandwidth.
template <typename W>
void prefetch_rows(const W& weights, int o0, int o1) {
  if (o0 >= o1) return;
  const auto [begin, end] = row_span(weights, o0, o1);
  for (const char* p = begin; p < end; p += 64) _mm_prefetch(p, _MM_HINT_T0);
}

// With many tiles of rows per block of weight rows (a batch of sequences), the rows two blocks
// ahead are asked for a few lines per step of the block's tiles instead: a burst of hundreds of
// prefetches fills the core's queue of misses and stalls the arithmetic behind it (about a tenth
// of the product's time at 32 rows on a Zen 5).
constexpr int kSpreadPrefetchTiles = 4;

template <typename W>
RowPrefetch spread_prefetch(const W& weights, int o0, int o1, int steps) {
  if (o0 >= o1) return {};
  const auto [begin, end] = row_span(weights, o0, o1);
  const int lines = static_cast<int>((end - begin + 63) / 64);
  return {begin, end, (lines + steps - 1) / steps};
}

// Outputs [o0, o1) for every row: R weight rows at a time (they stay in L1) while the rows pass NR
// at a time, then two, then one; the rows two blocks ahead are asked for meanwhile.
template <int NR, int R, typename W>
void dot_block(float* out, const float* inp, const float* lanes_inp, const W& weights, int N,
               int C, int OC, int o0, int o1) {
  constexpr bool kWide = NR == kWideDecodeRows;
  const bool spread = kWide && N / NR >= kSpreadPrefetchTiles;
  const int steps = std::max(1, N / NR * (chains_end(C) / W::kStep));
  int o = o0;
  for (; o + R <= o1; o += R) {
    if (o == o0) prefetch_rows(weights, std::min(o + R, OC), std::min(o + 2 * R, OC));
    RowPrefetch ahead;
    if (spread) {
      ahead = spread_prefetch(weights, std::min(o + 2 * R, OC), std::min(o + 3 * R, OC), steps);
    } else {
      prefetch_rows(weights, std::min(o + 2 * R, OC), std::min(o + 3 * R, OC));
    }
    int n = 0;
    for (; n + NR <= N; n += NR) {
      dot_tile<NR, R, W, kWide>(out, inp, lanes_inp, weights, C, OC, n, o, ahead);
    }
    if constexpr (NR > 2) {
      for (; n + 2 <= N; n += 2) dot_tile<2, R>(out, inp, lanes_inp, weights, C, OC, n, o, ahead);
    }
    for (; n < N; ++n) dot_tile<1, R>(out, inp, lanes_inp, weights, C, OC, n, o, ahead);
    ahead.finish();
  }
  RowPrefetch none;
  for (; o < o1; ++o) {
    for (int n = 0; n < N; ++n) dot_tile<1, 1>(out, inp, lanes_inp, weights, C, OC, n, o, none);
  }
}

// The inputs in paired lane order: in each group of 16 values of c, position 2k + h holds value
// 8h + k (the tail, if any, stays as it is). Kept per calling thread, like the packing buffers.
const float* paired_inputs(const float* inp, int N, int C) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<size_t>(N) * C) buffer.resize(static_cast<size_t>(N) * C);
  const int end = chains_end(C);
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float* p = buffer.data() + static_cast<size_t>(n) * C;
    for (int c = 0; c < end; c += kChains) {
      for (int lane = 0; lane < kChains; ++lane) p[c + lane] = x[c + 8 * (lane % 2) + lane / 2];
    }
    std::copy(x + end, x + C, p + end);
  }
  return buffer.data();
}

// The most rows the dot products take before the packed GEMM does. fp32 weights: up to 64 rows
// (a continuous batch of decoding sequences) the dot products keep pace with the packed GEMM
// (230-270 GFLOP/s on a 2-core Zen 5 in bench/kernels) without packing 50 MB of weights a step;
// bf16 and MXFP4 weights are decoded once per tile of rows there, so they switch at 16.
template <typename W>
constexpr int few_rows_max() {
  return std::is_same_v<W, F32Rows> ? 64 : 16;
}

// Tasks of a few register tiles' outputs, handed out in pieces of consecutive tasks: a thread
// streams each piece's weights front to back, and a thread that another process preempts (a
// server's HTTP thread waking for every token on a machine whose cores all compute) leaves its
// later pieces to the others instead of making them wait at the barrier for its half.
constexpr int kPiecesPerThread = 8;

template <int NR, int R, typename W>
void dot_tasks(float* out, const float* inp, const float* lanes_inp, const W& weights, int N,
               int C, int OC) {
  constexpr int kOutputs = 2 * R;
  const int tasks = (OC + kOutputs - 1) / kOutputs;
  const bool parallel = static_cast<size_t>(OC) * C > kParallelThreshold;
  const int piece = std::max(1, tasks / (kPiecesPerThread * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, piece) if (parallel)
  for (int t = 0; t < tasks; ++t) {
    const int o0 = t * kOutputs, o1 = std::min(OC, o0 + kOutputs);
    dot_block<NR, R>(out, inp, lanes_inp, weights, N, C, OC, o0, o1);
  }
}

template <typename W>
void few_rows_linear(float* out, const float* inp, const W& weights, int N, int C, int OC) {
  const float* lanes_inp = W::kPairedLanes ? paired_inputs(inp, N, C) : inp;
  if (N >= kWideDecodeRows) {
    dot_tasks<kWideDecodeRows, kWideDecodeOutputs>(out, inp, lanes_inp, weights, N, C, OC);
  } else {
    dot_tasks<kDecodeRows, kDecodeOutputs>(out, inp, lanes_inp, weights, N, C, OC);
  }
}

// ---- many rows: packed panels, c permuted chain by chain ----

constexpr int kPanelRows = 2 * kW, kPanelOutputs = kPanelTileOutputs;

// The packed position k of each c: chain l's values of c (l, l + 16, ...) are positions
// l * (main / 16) onwards, and the tail keeps its place after them.
inline int permuted_c(int k, int C) {
  const int end = chains_end(C), per_chain = end / kChains;
  return k >= end ? k : (k % per_chain) * kChains + k / per_chain;
}

// Rows [n0, n0 + kPanelRows) of inp, transposed and permuted: panel[k * kPanelRows + r] =
// inp[n0 + r][permuted_c(k)], zeros for rows past N (their lanes are computed and never stored).
void pack_rows(float* panel, const float* inp, int N, int C, int n0) {
  const int rows = std::min(kPanelRows, N - n0);
  for (int k = 0; k < C; ++k) {
    const int c = permuted_c(k, C);
    float* p = panel + static_cast<size_t>(k) * kPanelRows;
    for (int r = 0; r < kPanelRows; ++r) p[r] = r < rows ? inp[static_cast<size_t>(n0 + r) * C + c] : 0.0f;
  }
}

#if defined(__AVX512F__)
// The chains' part of pack_outputs, 16 values of c at a time: the panel's 12 rows of c .. c + 15
// transposed, so that each chain's value is one store of 12 outputs.
void pack_output_chains(float* panel, const float* weight, int C, int outputs) {
  static_assert(kPanelOutputs <= 16);
  const int per_chain = chains_end(C) / kChains;
  const __mmask16 store_mask = (1u << kPanelOutputs) - 1;
  for (int g = 0; g < per_chain; ++g) {
    __m512 r[16];
    for (int j = 0; j < 16; ++j) {
      r[j] = j < outputs ? _mm512_loadu_ps(weight + static_cast<size_t>(j) * C + g * kChains)
                         : _mm512_setzero_ps();
    }
    transpose16(r);
    for (int l = 0; l < kChains; ++l) {
      _mm512_mask_storeu_ps(panel + static_cast<size_t>(l * per_chain + g) * kPanelOutputs,
                            store_mask, r[l]);
    }
  }
}
#else
// The chains' part of pack_outputs, chain by chain: position k = l * per_chain + g holds
// c = g * 16 + l.
void pack_output_chains(float* panel, const float* weight, int C, int outputs) {
  const int per_chain = chains_end(C) / kChains;
  for (int l = 0; l < kChains; ++l) {
    for (int g = 0; g < per_chain; ++g) {
      float* p = panel + static_cast<size_t>(l * per_chain + g) * kPanelOutputs;
      const int c = g * kChains + l;
      for (int j = 0; j < kPanelOutputs; ++j) {
        p[j] = j < outputs ? weight[static_cast<size_t>(j) * C + c] : 0.0f;
      }
    }
  }
}
#endif

// Outputs [o0, o0 + kPanelOutputs) interleaved and permuted: panel[k * kPanelOutputs + j] =
// weight[o0 + j][permuted_c(k)], zeros for outputs past OC.
void pack_outputs(float* panel, const float* weight, int C, int OC, int o0) {
  const int outputs = std::min(kPanelOutputs, OC - o0);
  const float* first = weight + static_cast<size_t>(o0) * C;
  pack_output_chains(panel, first, C, outputs);
  for (int k = chains_end(C); k < C; ++k) {  // the tail keeps its place
    float* p = panel + static_cast<size_t>(k) * kPanelOutputs;
    for (int j = 0; j < kPanelOutputs; ++j) {
      p[j] = j < outputs ? first[static_cast<size_t>(j) * C + k] : 0.0f;
    }
  }
}

// Outputs [o0, o0 + kPanelOutputs) of weights in any dtype, packed as pack_outputs packs fp32:
// rows other than fp32 are decoded into `decoded` first (16 weights at a time, as the few-rows
// kernel decodes them), a cost the packed GEMM spreads over all its rows.
template <typename W>
void pack_weights(float* panel, const W& weights, int C, int OC, int o0,
                  std::vector<float>& decoded) {
  if constexpr (std::is_same_v<W, F32Rows>) {
    pack_outputs(panel, weights.data, C, OC, o0);
  } else {
    const int outputs = std::min(kPanelOutputs, OC - o0), end = chains_end(C);
    decoded.resize(static_cast<size_t>(outputs) * C);
    for (int j = 0; j < outputs; ++j) {
      const typename W::Row w = weights.row(o0 + j);
      float* row = decoded.data() + static_cast<size_t>(j) * C;
      for (int c = 0; c < end; c += W::kStep) {
        const typename W::Block block = W::block(w, c);
        for (int s = c; s < c + W::kStep; s += kChains) {
          Chains values;
          values.template decode<W>(w, s, block);
          if constexpr (W::kPairedLanes) values.to_element_order();
          for (int i = 0; i < kChains / kW; ++i) Lanes::store(row + s + i * kW, values.v[i]);
        }
      }
      for (int c = end; c < C; ++c) row[c] = W::value(w, c);
    }
    pack_outputs(panel, decoded.data(), C, outputs, 0);
  }
}

// The register tile over packed positions [k0, k1): fresh chains from zero.
struct Tile {
  V lo[kPanelOutputs], hi[kPanelOutputs];
};

inline void run_segment(Tile& t, const float* rows, const float* outputs, int k0, int k1) {
  for (int j = 0; j < kPanelOutputs; ++j) t.lo[j] = t.hi[j] = Lanes::zero();
  for (int k = k0; k < k1; ++k) {
    const V x_lo = Lanes::load(rows + static_cast<size_t>(k) * kPanelRows);
    const V x_hi = Lanes::load(rows + static_cast<size_t>(k) * kPanelRows + kW);
    const float* w = outputs + static_cast<size_t>(k) * kPanelOutputs;
    for (int j = 0; j < kPanelOutputs; ++j) {
      const V b = Lanes::broadcast(w + j);
      t.lo[j] = Lanes::fma(x_lo, b, t.lo[j]);
      t.hi[j] = Lanes::fma(x_hi, b, t.hi[j]);
    }
  }
}

inline void add_tiles(Tile& sum, const Tile& t) {
  for (int j = 0; j < kPanelOutputs; ++j) {
    sum.lo[j] = Lanes::add(sum.lo[j], t.lo[j]);
    sum.hi[j] = Lanes::add(sum.hi[j], t.hi[j]);
  }
}

// Chains in bit-reversed order (0, 8, 4, 12, 2, ...): the contract's tree then adds each
// adjacent pair of finished sums, like a binary counter carrying, with at most four pending.
constexpr int kChainOrder[kChains] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

// Every sum of a row panel against an output panel: the 16 chains one segment each, added in the
// tree as they finish, then the tail.
void panel_tile(float* out, const float* rows, const float* outputs, int N, int C, int OC, int n0,
                int o0) {
  const int end = chains_end(C), per_chain = end / kChains;
  Tile pending[5];  // pending[level]: a sum of 2^level chains waiting for its partner
  for (int i = 0; i < kChains; ++i) {
    const int l = kChainOrder[i];
    Tile t;
    run_segment(t, rows, outputs, l * per_chain, (l + 1) * per_chain);
    int level = 0;
    for (int done = i + 1; done % 2 == 0; done /= 2, ++level) add_tiles(t, pending[level]);
    pending[level] = t;
  }
  Tile& sum = pending[4];
  if (end < C) {
    Tile tail;
    run_segment(tail, rows, outputs, end, C);
    add_tiles(sum, tail);
  }
  alignas(64) float tile[kPanelOutputs][kPanelRows];
  for (int j = 0; j < kPanelOutputs; ++j) {
    Lanes::store(tile[j], sum.lo[j]);
    Lanes::store(tile[j] + kW, sum.hi[j]);
  }
  const int valid_rows = std::min(kPanelRows, N - n0);
  const int valid_outputs = std::min(kPanelOutputs, OC - o0);
  for (int r = 0; r < valid_rows; ++r) {
    float* o = out + static_cast<size_t>(n0 + r) * OC + o0;
    for (int j = 0; j < valid_outputs; ++j) o[j] = tile[j][r];
  }
}

// Buffers that grow to the largest product seen and are kept, per calling thread: allocating
// megabytes per call would cost page faults on every layer.
std::vector<float>& packed_rows_buffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}
std::vector<float>& packed_outputs_buffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}
std::vector<float>& decoded_outputs_buffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}

template <typename W>
void many_rows_linear(float* out, const float* inp, const W& weights, int N, int C, int OC) {
  const int row_panels = (N + kPanelRows - 1) / kPanelRows;
  const size_t row_panel_size = static_cast<size_t>(kPanelRows) * C;
  std::vector<float>& rows = packed_rows_buffer();
  if (rows.size() < row_panels * row_panel_size) rows.resize(row_panels * row_panel_size);
  // A task packs a few output panels (up to 256 KiB of weights, kept in L2) and runs every row
  // panel against them.
  const int panels_per_task =
      std::clamp(256 * 1024 / static_cast<int>(sizeof(float) * kPanelOutputs * C), 1, 8);
  const int output_panels = (OC + kPanelOutputs - 1) / kPanelOutputs;
  const int tasks = (output_panels + panels_per_task - 1) / panels_per_task;
  const size_t output_panel_size = static_cast<size_t>(kPanelOutputs) * C;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int p = 0; p < row_panels; ++p) {
      pack_rows(rows.data() + p * row_panel_size, inp, N, C, p * kPanelRows);
    }
    std::vector<float>& outputs = packed_outputs_buffer();
    if (outputs.size() < panels_per_task * output_panel_size) {
      outputs.resize(panels_per_task * output_panel_size);
    }
    std::vector<float>& decoded = decoded_outputs_buffer();
#pragma omp for schedule(static)
    for (int task = 0; task < tasks; ++task) {
      const int first = task * panels_per_task;
      const int count = std::min(panels_per_task, output_panels - first);
      for (int i = 0; i < count; ++i) {
        pack_weights(outputs.data() + i * output_panel_size, weights, C, OC,
                     (first + i) * kPanelOutputs, decoded);
      }
      for (int p = 0; p < row_panels; ++p) {
        for (int i = 0; i < count; ++i) {
          panel_tile(out, rows.data() + p * row_panel_size, outputs.data() + i * output_panel_size,
                     N, C, OC, p * kPanelRows, (first + i) * kPanelOutputs);
        }
      }
    }
  }
}

#endif  // AVX2 and FMA

template <typename W>
void invariant_product(float* out, const float* inp, const W& weights, int N, int C, int OC) {
  if (N == 0 || OC == 0) return;
#if defined(__AVX2__) && defined(__FMA__)
  // Up to a few dozen rows the weights are best streamed once; past that the packed panels, whose
  // row lanes would be mostly empty below 2 vectors of rows, take over.
  if (N <= few_rows_max<W>()) {
    few_rows_linear(out, inp, weights, N, C, OC);
  } else {
    many_rows_linear(out, inp, weights, N, C, OC);
  }
#else
  scalar_linear(out, inp, weights, N, C, OC);
#endif
}

}  // namespace

void batch_invariant_linear(float* out, const float* inp, const float* weight, int N, int C,
                            int OC) {
  invariant_product(out, inp, F32Rows{weight, C}, N, C, OC);
}

void batch_invariant_linear(float* out, const float* inp, const WeightMatrix& weight, int N, int C,
                            int OC) {
  switch (weight.dtype) {
    case DType::kF32:
      invariant_product(out, inp, F32Rows{static_cast<const float*>(weight.data), C}, N, C, OC);
      return;
    case DType::kBF16:
      invariant_product(out, inp, Bf16Rows{static_cast<const uint16_t*>(weight.data), C}, N, C,
                        OC);
      return;
    case DType::kMXFP4:
      require(C % 32 == 0 && weight.scales != nullptr,
              "batch_invariant_linear: MXFP4 weights need C a multiple of 32 (got {}) and scales",
              C);
      invariant_product(
          out, inp, Mxfp4Rows{static_cast<const uint8_t*>(weight.data), weight.scales, C}, N, C,
          OC);
      return;
    default:
      fail("batch_invariant_linear: weights must be fp32, bf16 or mxfp4, got {}",
           dtype_name(weight.dtype));
  }
}

}  // namespace switchyard::backend::cpu
