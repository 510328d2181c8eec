// MXFP4 blocks decoded to bf16 in vector registers, for cpu-bf16's products over MXFP4 weights
// (bf16_dot_linear.cc streams them, mxfp4_bf16_gemm.cc decodes panels for oneDNN). A block's 16
// code bytes become 32 bf16 values in element order (value 2j is byte j's low nibble, 2j + 1 its
// high one), each value one table lookup. Exact: an E2M1 value has one mantissa bit, so it, and
// its product with the block's power-of-two scale, is a bf16 value (the upper half of the fp32).
// Needs AVX-512 BW (16-bit permutes); the includer is compiled for the native ISA.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

#include <cstdint>

#include "core/dtype.h"

namespace switchyard::backend::cpu::mxfp4_bf16 {

// 32 bf16 values: entry i is E2M1 value i % 16 times `scale`, each the upper half of the fp32
// product (exact, see above). The 16 values appear twice because the lookup reads 5 index bits.
inline __m512i lookup_table(float scale) {
  const __m512 values = _mm512_mul_ps(_mm512_loadu_ps(kFp4E2M1Values), _mm512_set1_ps(scale));
  const __m256i halves =
      _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(values), 16));
  return _mm512_broadcast_i64x4(halves);
}

// The block whose 16 code bytes start at `codes`, as 32 bf16 values in element order, through
// `table` (lookup_table). Byte j is widened to 32-bit lane j and ORed with itself shifted left by
// 12: the lane's low 16 bits then hold the byte (low nibble at the bottom) and its high 16 bits
// the high nibble. The lookup reads each 16-bit word's low 5 bits; the fifth one (the high
// nibble's lowest bit, in the low word) picks the table's repeated half, so it does not matter.
inline __m512i decode_block(const uint8_t* codes, __m512i table) {
  const __m512i bytes =
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  const __m512i indices = _mm512_or_si512(bytes, _mm512_slli_epi32(bytes, 12));
  return _mm512_permutexvar_epi16(indices, table);
}

}  // namespace switchyard::backend::cpu::mxfp4_bf16

#endif
