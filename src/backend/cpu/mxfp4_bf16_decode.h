// MXFP4 blocks decoded to bf16 in vector registers, for cpu-bf16's products over MXFP4 weights
// (bf16_dot_linear.cc streams them, mxfp4_bf16_gemm.cc decodes panels for oneDNN). A block's 16
// code bytes become 32 bf16 values, each one table lookup: in element order for the panels (value
// 2j is byte j's low nibble, 2j + 1 its high one), in lane order for the streamed product. Exact: an E2M1 value has one mantissa bit, so it, and
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

// Lane order: the order in which decode_block_in_lane_order leaves a block's values. Position
// 8 * L + w (128-bit lane L, word w) holds value 4 * w + L. A dot product may take its two operands
// in any one order, so the inputs are put in this order once (permute_to_lane_order) and every
// weight block is decoded into it with one instruction fewer than element order costs.
inline __m512i lane_order_indices() {
  alignas(64) static constexpr uint16_t kValueAt[32] = {
      0, 4, 8,  12, 16, 20, 24, 28, 1, 5, 9,  13, 17, 21, 25, 29,
      2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
  return _mm512_load_si512(kValueAt);
}

// 32 bf16 values [c, c + 32) of a row put in lane order (`indices`: lane_order_indices()).
inline __m512i permute_to_lane_order(__m512i values, __m512i indices) {
  return _mm512_permutexvar_epi16(indices, values);
}

// Per-word right shifts that bring nibble L of each 16-bit word to the bottom in lane L.
inline __m512i lane_order_shifts() {
  return _mm512_set_epi64(0x000C000C000C000C, 0x000C000C000C000C, 0x0008000800080008,
                          0x0008000800080008, 0x0004000400040004, 0x0004000400040004, 0, 0);
}

// The block whose 16 code bytes start at `codes`, as 32 bf16 values in lane order, through
// `table` (lookup_table) and `shifts` (lane_order_shifts). The 16 bytes are copied to each 128-bit
// lane by the load itself; word w of a lane holds bytes 2w and 2w + 1, that is nibbles 4w to
// 4w + 3, and lane L shifts it right by 4L, leaving nibble 4w + L at the bottom of the word for
// the lookup (which reads 5 bits, as in decode_block).
inline __m512i decode_block_in_lane_order(const uint8_t* codes, __m512i table, __m512i shifts) {
  const __m512i bytes =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  return _mm512_permutexvar_epi16(_mm512_srlv_epi16(bytes, shifts), table);
}

}  // namespace switchyard::backend::cpu::mxfp4_bf16

#endif
