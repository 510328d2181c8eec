#include "neuron/matmul_kernel.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace switchyard::neuron {

namespace {

// Operand elements: fp32 values, or bf16 bit patterns (the upper half of an fp32).
inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t bf16) { return std::bit_cast<float>(static_cast<uint32_t>(bf16) << 16); }

// One output element at a time; used for edges (and everywhere without AVX2/FMA).
template <typename T>
void scalar_block(float* c, int64_t ldc, const T* s, int64_t lds, const T* v, int64_t ldv,
                  int m0, int m1, int n0, int n1, int K) {
  for (int m = m0; m < m1; ++m) {
    for (int n = n0; n < n1; ++n) {
      float acc = c[m * ldc + n];
      for (int k = 0; k < K; ++k) acc = std::fma(to_f32(s[k * lds + m]), to_f32(v[k * ldv + n]), acc);
      c[m * ldc + n] = acc;
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
constexpr int kRows = 6;   // rows of c per register block
constexpr int kCols = 16;  // columns of c per register block (two 8-float vectors)

// 6 rows x 16 columns of c held in 12 registers across the whole k loop, from packed operands:
// sp holds the block's 6 stationary columns as [K][6], vp the 16 moving columns as [K][16], so
// both stream through consecutive addresses (the unpacked rows are 2^n bytes apart and thrash a
// few L1 sets). Named variables, not an array: GCC keeps an array of vectors on the stack.
// clang-format off
void block_6x16(float* c, int64_t ldc, const float* sp, const float* vp, int K,
                const float* next_c) {
#define SY_LOAD_ROW(i)                                \
  __m256 c##i##0 = _mm256_loadu_ps(c + (i) * ldc);    \
  __m256 c##i##1 = _mm256_loadu_ps(c + (i) * ldc + 8)
#define SY_FMA_ROW(i)                                 \
  do {                                                \
    const __m256 a = _mm256_broadcast_ss(sp + (i));   \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);        \
    c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);        \
  } while (0)
#define SY_STORE_ROW(i)                               \
  _mm256_storeu_ps(c + (i) * ldc, c##i##0);           \
  _mm256_storeu_ps(c + (i) * ldc + 8, c##i##1)
  SY_LOAD_ROW(0); SY_LOAD_ROW(1); SY_LOAD_ROW(2);
  SY_LOAD_ROW(3); SY_LOAD_ROW(4); SY_LOAD_ROW(5);
  // The next block's rows of c are 16 KiB apart in PSUM and conflict in the caches: fetch them
  // while this block computes.
  for (int i = 0; i < kRows; ++i) _mm_prefetch(reinterpret_cast<const char*>(next_c + i * ldc), _MM_HINT_T0);
  for (int k = 0; k < K; ++k, sp += kRows, vp += kCols) {
    const __m256 b0 = _mm256_load_ps(vp);
    const __m256 b1 = _mm256_load_ps(vp + 8);
    SY_FMA_ROW(0); SY_FMA_ROW(1); SY_FMA_ROW(2);
    SY_FMA_ROW(3); SY_FMA_ROW(4); SY_FMA_ROW(5);
  }
  SY_STORE_ROW(0); SY_STORE_ROW(1); SY_STORE_ROW(2);
  SY_STORE_ROW(3); SY_STORE_ROW(4); SY_STORE_ROW(5);
#undef SY_LOAD_ROW
#undef SY_FMA_ROW
#undef SY_STORE_ROW
}
// clang-format on

// The last ROWS (< 6) rows x 16 columns (stationary unpacked, moving packed as [K][16]); a
// template so the accumulators stay in registers.
template <int ROWS, typename T>
void block_tail_x16(float* c, int64_t ldc, const T* s, int64_t lds, const float* vp, int K) {
  __m256 acc[ROWS][2];
  for (int i = 0; i < ROWS; ++i) {
    acc[i][0] = _mm256_loadu_ps(c + i * ldc);
    acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
  }
  for (int k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(vp + k * kCols);
    const __m256 b1 = _mm256_load_ps(vp + k * kCols + 8);
    for (int i = 0; i < ROWS; ++i) {
      const __m256 a = _mm256_set1_ps(to_f32(s[k * lds + i]));
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < ROWS; ++i) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}

template <typename T>
void block_rx16(float* c, int64_t ldc, const T* s, int64_t lds, const float* vp, int rows,
                int K) {
  switch (rows) {
    case 1: return block_tail_x16<1, T>(c, ldc, s, lds, vp, K);
    case 2: return block_tail_x16<2, T>(c, ldc, s, lds, vp, K);
    case 3: return block_tail_x16<3, T>(c, ldc, s, lds, vp, K);
    case 4: return block_tail_x16<4, T>(c, ldc, s, lds, vp, K);
    default: return block_tail_x16<5, T>(c, ldc, s, lds, vp, K);
  }
}

// Packing buffers, reused across calls (the simulator calls this for every matmul).
struct PackBuffers {
  std::vector<float> s;  // stationary panels: [M / 6][K][6], or [M / 8][K][8] for AVX-512
  float* v = nullptr;    // [K][16], 64-byte aligned (whole AVX-512 vectors)
  std::vector<float> v_storage;
  void reserve_moving(int K) {
    const size_t floats = static_cast<size_t>(K) * kCols + 16;
    if (v_storage.size() < floats) {
      v_storage.resize(floats);
      const uintptr_t base = reinterpret_cast<uintptr_t>(v_storage.data());
      v = reinterpret_cast<float*>((base + 63) & ~uintptr_t{63});
    }
  }
};

PackBuffers& buffers_of_this_thread() {
  thread_local PackBuffers buffers;
  return buffers;
}

// 2 * M * N * K from which a product is split between threads.
constexpr int64_t kMinThreadedFlops = int64_t{1} << 21;

// 16 consecutive moving-operand elements as fp32 into vp[0..16).
inline void pack_16(float* vp, const float* v) {
  _mm256_store_ps(vp, _mm256_loadu_ps(v));
  _mm256_store_ps(vp + 8, _mm256_loadu_ps(v + 8));
}
inline void pack_16(float* vp, const uint16_t* v) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
  const __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(bits)), 16);
  const __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(bits, 1)), 16);
  _mm256_store_ps(vp, _mm256_castsi256_ps(lo));
  _mm256_store_ps(vp + 8, _mm256_castsi256_ps(hi));
}
#endif

// The first panels * ROWS stationary columns as [panel][K][ROWS] fp32, so that a register block
// reads its ROWS values of each k from consecutive addresses.
template <int ROWS, typename T>
void pack_stationary(float* out, const T* s, int64_t lds, int panels, int K) {
  for (int p = 0; p < panels; ++p)
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < ROWS; ++i) *out++ = to_f32(s[k * lds + p * ROWS + i]);
}

// Sets c[m * ldc + n] = 0 for m < M, n0 <= n < n1.
void zero_columns(float* c, int64_t ldc, int M, int n0, int n1) {
  for (int m = 0; m < M; ++m) std::fill(c + m * ldc + n0, c + m * ldc + n1, 0.0f);
}

#if defined(__AVX512F__)
// AVX-512, for products whose M is a multiple of 8 and N of 32 (a full 128-partition instruction
// over a PSUM bank): 8 rows x 32 columns of c in 16 registers, from the stationary operand packed
// as [panel][K][8] and the moving one as [K][32]. Each element is still one fused multiply-add
// per k in ascending k, so the results are bit for bit those of the AVX2 blocks. On a
// 128x512x128 bf16 instruction it ran 10-25% faster than them on one Zen 4 core; on both cores
// the gain was within the VM's noise (BENCHMARKS.md).
constexpr int kRows512 = 8;
constexpr int kCols512 = 32;

// clang-format off
void block_8x32(float* c, int64_t ldc, const float* sp, const float* vp, int K) {
#define SY_LOAD(i) \
  __m512 c##i##0 = _mm512_loadu_ps(c + (i) * ldc), c##i##1 = _mm512_loadu_ps(c + (i) * ldc + 16)
#define SY_FMA(i)                                   \
  do {                                              \
    const __m512 a = _mm512_set1_ps(sp[i]);         \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);      \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);      \
  } while (0)
#define SY_STORE(i)                                 \
  _mm512_storeu_ps(c + (i) * ldc, c##i##0);         \
  _mm512_storeu_ps(c + (i) * ldc + 16, c##i##1)
  SY_LOAD(0); SY_LOAD(1); SY_LOAD(2); SY_LOAD(3);
  SY_LOAD(4); SY_LOAD(5); SY_LOAD(6); SY_LOAD(7);
  for (int k = 0; k < K; ++k, sp += kRows512, vp += kCols512) {
    const __m512 b0 = _mm512_load_ps(vp), b1 = _mm512_load_ps(vp + 16);
    SY_FMA(0); SY_FMA(1); SY_FMA(2); SY_FMA(3);
    SY_FMA(4); SY_FMA(5); SY_FMA(6); SY_FMA(7);
  }
  SY_STORE(0); SY_STORE(1); SY_STORE(2); SY_STORE(3);
  SY_STORE(4); SY_STORE(5); SY_STORE(6); SY_STORE(7);
#undef SY_LOAD
#undef SY_FMA
#undef SY_STORE
}
// clang-format on

template <typename T>
void matmul_accumulate_512(float* c, int64_t ldc, const T* s, int64_t lds, const T* v,
                           int64_t ldv, int M, int N, int K, bool overwrite) {
  PackBuffers& buffers = buffers_of_this_thread();
  const int panels = M / kRows512;
  buffers.s.resize(static_cast<size_t>(M) * K);
  pack_stationary<kRows512>(buffers.s.data(), s, lds, panels, K);
  const float* s_packed = buffers.s.data();
  const bool threaded = static_cast<int64_t>(M) * N * K >= kMinThreadedFlops / 2;
#pragma omp parallel for schedule(dynamic, 1) if (threaded)
  for (int n0 = 0; n0 < N; n0 += kCols512) {
    PackBuffers& local = buffers_of_this_thread();
    local.reserve_moving(2 * K);  // room for [K][32]
    if (overwrite) zero_columns(c, ldc, M, n0, n0 + kCols512);
    float* vp = local.v;
    for (int k = 0; k < K; ++k) {
      pack_16(vp + k * kCols512, v + k * ldv + n0);
      pack_16(vp + k * kCols512 + 16, v + k * ldv + n0 + 16);
    }
    for (int p = 0; p < panels; ++p) {
      block_8x32(c + p * kRows512 * ldc + n0, ldc, s_packed + static_cast<size_t>(p) * K * kRows512,
                 vp, K);
    }
  }
}
#endif

template <typename T>
void matmul_accumulate_impl(float* c, int64_t ldc, const T* s, int64_t lds, const T* v,
                            int64_t ldv, int M, int N, int K, bool overwrite) {
#if defined(__AVX512F__)
  if (M > 0 && N > 0 && M % kRows512 == 0 && N % kCols512 == 0) {
    return matmul_accumulate_512(c, ldc, s, lds, v, ldv, M, N, K, overwrite);
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  PackBuffers& buffers = buffers_of_this_thread();
  const int panels = M / kRows;
  const int m_full = panels * kRows;
  const int n_vec = N / kCols * kCols;
  if (n_vec > 0 && panels > 0) {
    buffers.s.resize(static_cast<size_t>(panels) * K * kRows);
    pack_stationary<kRows>(buffers.s.data(), s, lds, panels, K);
  }
  const float* s_packed = buffers.s.data();
  // Column strips are independent: share them between threads when the product is big enough
  // to repay waking them (a full 128x128x512 instruction is ~17 MFLOP), two strips at a time as
  // threads come free (see parallel.h).
  const bool threaded = static_cast<int64_t>(M) * N * K >= kMinThreadedFlops / 2;
#pragma omp parallel for schedule(dynamic, 2) if (threaded)
  for (int n0 = 0; n0 < n_vec; n0 += kCols) {
    PackBuffers& local = buffers_of_this_thread();
    local.reserve_moving(K);
    // Each thread clears the strip it is about to accumulate, so the rows are in its cache.
    if (overwrite) zero_columns(c, ldc, M, n0, n0 + kCols);
    float* vp = local.v;
    for (int k = 0; k < K; ++k) pack_16(vp + k * kCols, v + k * ldv + n0);
    for (int p = 0; p < panels; ++p) {
      // Prefetch target: the next panel's rows, or the first panel's in the next strip.
      const float* next_c = p + 1 < panels ? c + (p + 1) * kRows * ldc + n0 : c + n0 + kCols;
      block_6x16(c + p * kRows * ldc + n0, ldc, s_packed + static_cast<size_t>(p) * K * kRows,
                 vp, K, next_c);
    }
    if (m_full < M) block_rx16(c + m_full * ldc + n0, ldc, s + m_full, lds, vp, M - m_full, K);
  }
  if (n_vec < N) {
    if (overwrite) zero_columns(c, ldc, M, n_vec, N);
    scalar_block(c, ldc, s, lds, v, ldv, 0, M, n_vec, N, K);
  }
#else
  if (overwrite) zero_columns(c, ldc, M, 0, N);
  scalar_block(c, ldc, s, lds, v, ldv, 0, M, 0, N, K);
#endif
}

}  // namespace

void matmul_accumulate(float* c, int64_t ldc, const float* s, int64_t lds, const float* v,
                       int64_t ldv, int M, int N, int K, bool overwrite) {
  matmul_accumulate_impl(c, ldc, s, lds, v, ldv, M, N, K, overwrite);
}

void matmul_accumulate_bf16(float* c, int64_t ldc, const uint16_t* s, int64_t lds,
                            const uint16_t* v, int64_t ldv, int M, int N, int K, bool overwrite) {
  matmul_accumulate_impl(c, ldc, s, lds, v, ldv, M, N, K, overwrite);
}

}  // namespace switchyard::neuron
