// The weight rows batch_invariant_linear reads (invariant_linear.cc is the only includer: what is
// here depends on the ISA that file is compiled for): [OC, C] row-major in fp32, bf16 or MXFP4,
// each able to give one weight as fp32 (`value`) and, with AVX2, 16 consecutive weights decoded
// into vector registers (`decode16`), so that a product reads the stored bytes once, as they are,
// at memory bandwidth. Decoding is exact (a bf16 is the upper half of an fp32; an E2M1 value times
// a power of two is representable), so a product over decoded weights is the fp32 product over the
// weights' values, bit for bit.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace switchyard::backend::cpu::weight_decode {

#if defined(__AVX2__) && defined(__FMA__)
#if defined(__AVX512F__)
// 16 lanes: the 16 chains of a dot product are one vector.
struct Lanes {
  using V = __m512;
  static constexpr int kWidth = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};
#else
// 8 lanes: the 16 chains of a dot product are two vectors.
struct Lanes {
  using V = __m256;
  static constexpr int kWidth = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
#endif
using V = Lanes::V;
constexpr int kWidth = Lanes::kWidth;
// Vectors that hold 16 consecutive weights.
constexpr int kVectors = 16 / kWidth;
#define SWITCHYARD_DECODE16 1
#endif

// An E8M0 scale byte as the fp32 it stands for, built from its bits: 2^(bits - 127) is the fp32
// exponent field itself for bits 1..254; bits 0 is 2^-127, below fp32's normals (the subnormal
// 0x00400000); 255 is NaN. The same values as core's e8m0_to_float.
constexpr float e8m0_scale(uint8_t bits) {
  const uint32_t f32 = bits == 0 ? 0x00400000u : bits == 255 ? 0x7FC00000u : uint32_t{bits} << 23;
  return std::bit_cast<float>(f32);
}

// Every scale byte's value, so that a block's scale is one load.
inline constexpr std::array<float, 256> kE8M0Scales = [] {
  std::array<float, 256> scales{};
  for (int bits = 0; bits < 256; ++bits) scales[bits] = e8m0_scale(static_cast<uint8_t>(bits));
  return scales;
}();

inline float widen_bf16(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

struct F32Rows {
  using Row = const float*;
  const float* data;
  int C;

  Row row(int o) const { return data + static_cast<size_t>(o) * C; }
  static float value(Row w, int c) { return w[c]; }
#ifdef SWITCHYARD_DECODE16
  static void decode16(Row w, int c, V* out) {
    for (int i = 0; i < kVectors; ++i) out[i] = Lanes::load(w + c + i * kWidth);
  }
#endif
};

struct Bf16Rows {
  using Row = const uint16_t*;
  const uint16_t* data;
  int C;

  Row row(int o) const { return data + static_cast<size_t>(o) * C; }
  static float value(Row w, int c) { return widen_bf16(w[c]); }
#ifdef SWITCHYARD_DECODE16
  // Each 16-bit value zero-extended to 32 bits, then moved to the upper half.
  static void decode16(Row w, int c, V* out) {
#if defined(__AVX512F__)
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c));
    out[0] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
#else
    for (int i = 0; i < kVectors; ++i) {
      const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c + i * kWidth));
      out[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
    }
#endif
  }
#endif
};

// C is a multiple of 32, so 16 weights from c (a multiple of 16) are 8 code bytes of one block.
struct Mxfp4Rows {
  struct Row {
    const uint8_t* codes;   // C / 2 bytes
    const uint8_t* scales;  // C / 32 bytes
  };
  const uint8_t* codes;
  const uint8_t* scales;
  int C;

  Row row(int o) const {
    return {codes + static_cast<size_t>(o) * (C / 2), scales + static_cast<size_t>(o) * (C / 32)};
  }
  static float value(Row w, int c) {
    const uint8_t byte = w.codes[c / 2];
    const int code = c % 2 == 0 ? byte & 0xF : byte >> 4;
    return kFp4E2M1Values[code] * kE8M0Scales[w.scales[c / 32]];
  }
#ifdef SWITCHYARD_DECODE16
  // Element c + i is nibble i % 8 of the 32-bit word of code bytes i / 8: each lane gets its word,
  // a shift brings its nibble to the bottom, and a table lookup that reads only the low bits of
  // each lane gives the E2M1 value, which the block's scale (a power of two) multiplies exactly.
  static void decode16(Row w, int c, V* out) {
    const uint8_t* bytes = w.codes + c / 2;
    uint32_t words[2];
    std::memcpy(words, bytes, sizeof(words));
    const float scale = kE8M0Scales[w.scales[c / 32]];
#if defined(__AVX512F__)
    const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i both = _mm512_mask_set1_epi32(_mm512_set1_epi32(static_cast<int>(words[0])),
                                                0xFF00, static_cast<int>(words[1]));
    const __m512i nibbles = _mm512_srlv_epi32(both, shifts);
    const __m512 values = _mm512_permutexvar_ps(nibbles, _mm512_loadu_ps(kFp4E2M1Values));
    out[0] = _mm512_mul_ps(values, _mm512_set1_ps(scale));
#else
    // AVX2's permute takes 8 entries: the magnitude from codes 0-7, then the code's sign bit (bit
    // 3) moved to the fp32 sign (the table's negative half is the positive half with the sign set,
    // -0 included).
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256 magnitudes = _mm256_loadu_ps(kFp4E2M1Values);
    const __m256i sign_bit = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    for (int i = 0; i < kVectors; ++i) {
      const __m256i nibbles =
          _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(words[i])), shifts);
      const __m256 magnitude = _mm256_permutevar8x32_ps(magnitudes, nibbles);
      const __m256 sign =
          _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(nibbles, 28), sign_bit));
      out[i] = _mm256_mul_ps(_mm256_xor_ps(magnitude, sign), _mm256_set1_ps(scale));
    }
#endif
  }
#endif
};

}  // namespace switchyard::backend::cpu::weight_decode
