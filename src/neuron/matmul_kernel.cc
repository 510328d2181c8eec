#include "neuron/matmul_kernel.h"

#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace switchyard::neuron {

namespace {

// One output element at a time; used for edges (and everywhere without AVX2/FMA).
void scalar_block(float* c, int64_t ldc, const float* s, int64_t lds, const float* v, int64_t ldv,
                  int m0, int m1, int n0, int n1, int K) {
  for (int m = m0; m < m1; ++m) {
    for (int n = n0; n < n1; ++n) {
      float acc = c[m * ldc + n];
      for (int k = 0; k < K; ++k) acc = std::fma(s[k * lds + m], v[k * ldv + n], acc);
      c[m * ldc + n] = acc;
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// 6 rows x 16 columns of c held in 12 registers across the whole k loop. Named variables, not
// an array: GCC keeps an array of vectors on the stack.
// clang-format off
void block_6x16(float* c, int64_t ldc, const float* s, int64_t lds, const float* v, int64_t ldv,
                int K) {
#define SY_LOAD_ROW(i)                                \
  __m256 c##i##0 = _mm256_loadu_ps(c + (i) * ldc);    \
  __m256 c##i##1 = _mm256_loadu_ps(c + (i) * ldc + 8)
#define SY_FMA_ROW(i)                                 \
  do {                                                \
    const __m256 a = _mm256_broadcast_ss(sr + (i));   \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);        \
    c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);        \
  } while (0)
#define SY_STORE_ROW(i)                               \
  _mm256_storeu_ps(c + (i) * ldc, c##i##0);           \
  _mm256_storeu_ps(c + (i) * ldc + 8, c##i##1)
  SY_LOAD_ROW(0); SY_LOAD_ROW(1); SY_LOAD_ROW(2);
  SY_LOAD_ROW(3); SY_LOAD_ROW(4); SY_LOAD_ROW(5);
  for (int k = 0; k < K; ++k) {
    const float* vr = v + k * ldv;
    const __m256 b0 = _mm256_loadu_ps(vr);
    const __m256 b1 = _mm256_loadu_ps(vr + 8);
    const float* sr = s + k * lds;
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

// Up to 5 remaining rows x 16 columns.
void block_rx16(float* c, int64_t ldc, const float* s, int64_t lds, const float* v, int64_t ldv,
                int rows, int K) {
  __m256 acc[5][2];
  for (int i = 0; i < rows; ++i) {
    acc[i][0] = _mm256_loadu_ps(c + i * ldc);
    acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
  }
  for (int k = 0; k < K; ++k) {
    const float* vr = v + k * ldv;
    __m256 b0 = _mm256_loadu_ps(vr);
    __m256 b1 = _mm256_loadu_ps(vr + 8);
    for (int i = 0; i < rows; ++i) {
      __m256 a = _mm256_broadcast_ss(s + k * lds + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < rows; ++i) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}
#endif

}  // namespace

void matmul_accumulate(float* c, int64_t ldc, const float* s, int64_t lds, const float* v,
                       int64_t ldv, int M, int N, int K) {
#if defined(__AVX2__) && defined(__FMA__)
  int n_vec = N / 16 * 16;
  for (int n0 = 0; n0 < n_vec; n0 += 16) {
    int m0 = 0;
    for (; m0 + 6 <= M; m0 += 6) block_6x16(c + m0 * ldc + n0, ldc, s + m0, lds, v + n0, ldv, K);
    if (m0 < M) block_rx16(c + m0 * ldc + n0, ldc, s + m0, lds, v + n0, ldv, M - m0, K);
  }
  if (n_vec < N) scalar_block(c, ldc, s, lds, v, ldv, 0, M, n_vec, N, K);
#else
  scalar_block(c, ldc, s, lds, v, ldv, 0, M, 0, N, K);
#endif
}

}  // namespace switchyard::neuron
