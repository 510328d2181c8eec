// A 16 x 16 block of floats transposed in AVX-512 registers, for kernels that need a matrix's
// columns as vectors (packing GEMM panels).
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

namespace switchyard::backend::cpu {

// The 16 x 16 floats r[0..15] transposed in place: r[i] lane j becomes r[j] lane i. Pairs of rows
// interleave within 128-bit lanes, then quads, then the 128-bit lanes move in two rounds.
inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + m]: rows i .. i + 3 at column m of each 128-bit lane
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int half = 0; half < 16; half += 8) {  // t[half + m], t[half + 4 + m]: lanes 0/2, 1/3
    for (int m = 0; m < 4; ++m) {
      t[half + m] = _mm512_shuffle_f32x4(u[half + m], u[half + 4 + m], 0x88);
      t[half + 4 + m] = _mm512_shuffle_f32x4(u[half + m], u[half + 4 + m], 0xDD);
    }
  }
  for (int m = 0; m < 8; ++m) {
    const int column = (m % 4) + 4 * (m / 4);  // t[m] holds columns `column` and `column + 8`
    r[column] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
    r[column + 8] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xDD);
  }
}

}  // namespace switchyard::backend::cpu

#endif  // __AVX512F__
