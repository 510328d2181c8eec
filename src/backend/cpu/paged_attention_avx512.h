// The AVX-512 steps of paged attention (paged_attention_kernels.h): a chunk's scores read straight
// from the cache rows, without transposing the keys first, its max and sum, and its values
// absorbed into a row's output. They take fp32 math with head_dim a whole number of vectors; the
// cache holds fp32 or bf16 bits (C = uint16_t), widened as they are read.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define SWITCHYARD_PAGED_AVX512 1

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace switchyard::backend::cpu {

// 16 cached values from p, widened to fp32 (bf16 bits shift into the high half); lanes outside
// `mask` read nothing and are zero.
template <typename C>
inline __m512 load_cached16(const C* p, __mmask16 mask = 0xFFFF) {
  if constexpr (std::is_same_v<C, uint16_t>) {
    const __m256i bits = _mm256_maskz_loadu_epi16(mask, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  } else {
    return _mm512_maskz_loadu_ps(mask, p);
  }
}

// _mm512_shuffle_f32x4, spelled as its all-lanes masked form: GCC 12 takes the unmasked
// intrinsic's deliberately undefined pass-through operand for an uninitialised variable. The
// instruction is the same.
template <int kOrder>
inline __m512 shuffle_quarters(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, kOrder);
}

// Lane j of the result: the sum of a[j]'s 16 lanes. Every sum is added in the same tree (the
// 128-bit quarters' halves, then quarters, then pairs within them), so its bits depend on a[j]
// alone. Four rounds of pairing, each leaving half as many vectors carrying twice as many sums.
inline __m512 sum_lanes16(const __m512 (&a)[16]) {
  __m512 w[8], x[4], y[2];
  for (int p = 0; p < 8; ++p) {  // w[p]: quarters 0-1 a[2p]'s, 2-3 a[2p + 1]'s, 8 partial sums each
    const __m512 lo = shuffle_quarters<_MM_SHUFFLE(1, 0, 1, 0)>(a[2 * p], a[2 * p + 1]);
    const __m512 hi = shuffle_quarters<_MM_SHUFFLE(3, 2, 3, 2)>(a[2 * p], a[2 * p + 1]);
    w[p] = _mm512_add_ps(lo, hi);
  }
  for (int p = 0; p < 4; ++p) {  // x[p]: quarter i holds 4 partial sums of a[4p + i]
    const __m512 lo = shuffle_quarters<_MM_SHUFFLE(2, 0, 2, 0)>(w[2 * p], w[2 * p + 1]);
    const __m512 hi = shuffle_quarters<_MM_SHUFFLE(3, 1, 3, 1)>(w[2 * p], w[2 * p + 1]);
    x[p] = _mm512_add_ps(lo, hi);
  }
  for (int p = 0; p < 2; ++p) {  // y[p]: quarter i holds 2 partial sums of a[8p + i], 2 of a[8p + 4 + i]
    const __m512 lo = _mm512_shuffle_ps(x[2 * p], x[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_ps(x[2 * p], x[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2));
    y[p] = _mm512_add_ps(lo, hi);
  }
  // Lane 4i + k now holds the whole sum of a[4k + i]; the permute puts a[j]'s in lane j.
  const __m512 lo = _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 hi = _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512 sums = _mm512_add_ps(lo, hi);
  return _mm512_mask_permutexvar_ps(sums, 0xFFFF, order, sums);  // all lanes: as above
}

// The chunk positions [j0, j1) as a lane mask.
inline __mmask16 position_lanes(int j0, int j1) {
  return static_cast<__mmask16>(((1u << j1) - 1) & ~((1u << j0) - 1));
}

// Partial sums of q . k[j], one chain of fused multiply-adds per lane (lane l sums dimensions l,
// l + 16, ...), for positions j < 16 (kWhole) or j < n (the others left zero).
template <bool kWhole, typename C>
inline void score_lanes(__m512 (&acc)[16], const float* q, const C* k, int n, size_t row, int hd) {
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
  const __mmask16 present = position_lanes(0, kWhole ? 16 : n);
  for (int d0 = 0; d0 < hd; d0 += 16) {
    const __m512 qv = _mm512_loadu_ps(q + d0);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      const C* kj = k + j * row + d0;
      if constexpr (kWhole) {
        acc[j] = _mm512_fmadd_ps(load_cached16(kj), qv, acc[j]);
      } else {
        const __mmask16 lanes = (present >> j) & 1 ? 0xFFFF : 0;
        acc[j] = _mm512_fmadd_ps(load_cached16(kj, lanes), qv, acc[j]);
      }
    }
  }
}

// scores[j] = q . k[j] for the chunk's n <= 16 positions (rows `row` apart), 0 after them: each
// position's lane sums (score_lanes), added across lanes by sum_lanes16. The 16 positions' chains
// are independent, so a single query row keeps the FMA units busy without transposing the keys.
template <typename C>
inline void vector_chunk_scores(const float* q, const C* k, int n, size_t row, int hd,
                                float* scores) {
  __m512 acc[16];
  if (n == 16) {
    score_lanes<true>(acc, q, k, n, row, hd);
  } else {
    score_lanes<false>(acc, q, k, n, row, hd);
  }
  _mm512_storeu_ps(scores, sum_lanes16(acc));
}

// The greatest of x[j0 .. j1) and the sum of p[j0 .. j1), the sum in one fixed tree whatever the
// range (lanes outside it add zeros).
inline float vector_max_of(const float* x, int j0, int j1) {
  return _mm512_mask_reduce_max_ps(position_lanes(j0, j1), _mm512_loadu_ps(x));
}
inline float vector_sum_of(const float* p, int j0, int j1) {
  return _mm512_reduce_add_ps(_mm512_maskz_loadu_ps(position_lanes(j0, j1), p));
}

// V vectors of outputs o[0 .. 16V) = o * shrink + sum over j in [j0, j1) of p[j] * v[j], the sum in
// ascending j, each step one fused multiply-add, the outputs in registers while the values pass.
template <int V, typename C>
inline void absorb_value_vectors(float* o, __m512 shrink, const float* p, int j0, int j1,
                                 const C* v, size_t row) {
  __m512 acc[V];
  for (int i = 0; i < V; ++i) acc[i] = _mm512_mul_ps(_mm512_loadu_ps(o + 16 * i), shrink);
  for (int j = j0; j < j1; ++j) {
    const __m512 pj = _mm512_set1_ps(p[j]);
    const C* vj = v + j * row;
    for (int i = 0; i < V; ++i) acc[i] = _mm512_fmadd_ps(pj, load_cached16(vj + 16 * i), acc[i]);
  }
  for (int i = 0; i < V; ++i) _mm512_storeu_ps(o + 16 * i, acc[i]);
}

// o[d] = o[d] * shrink + sum over j in [j0, j1) of p[j] * v[j][d] for the whole head, 64 outputs at
// a time (the count a template argument, so that they stay in registers).
template <typename C>
inline void vector_absorb_values(float* o, float shrink, const float* p, int j0, int j1, const C* v,
                                 size_t row, int hd) {
  const __m512 scale = _mm512_set1_ps(shrink);
  int d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) absorb_value_vectors<4>(o + d0, scale, p, j0, j1, v + d0, row);
  switch ((hd - d0) / 16) {
    case 3: absorb_value_vectors<3>(o + d0, scale, p, j0, j1, v + d0, row); break;
    case 2: absorb_value_vectors<2>(o + d0, scale, p, j0, j1, v + d0, row); break;
    case 1: absorb_value_vectors<1>(o + d0, scale, p, j0, j1, v + d0, row); break;
    default: break;
  }
}

}  // namespace switchyard::backend::cpu

#endif
