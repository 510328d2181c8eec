// The weight rows batch_invariant_linear reads: [OC, C] row-major in fp32, bf16 or MXFP4, each
// able to give one weight as fp32 (`value`) and, where AVX2 is there, 16 weights decoded into
// vector registers (`decode16`), so that a product reads the stored bytes once, as they are, at
// memory bandwidth. Decoding is exact (a bf16 is the upper half of an fp32; an E2M1 value times a
// power of two is representable), so a product over decoded weights is the fp32 product over the
// weights' values, bit for bit. The vector part depends on the ISA the includer is compiled for:
// invariant_linear.cc (native ISA) is the only user of it.
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
#define SWITCHYARD_WEIGHT_DECODE_VECTORS 1
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


// Each kind of rows below gives:
//   Row, row(o): where output o's weights are;
//   value(w, c): weight c of row w as fp32 (any c);
// and where the vector kernels are built (SWITCHYARD_WEIGHT_DECODE_VECTORS):
//   kStep: the weights a step of the dot products covers (16, or 32 for a whole MXFP4 block);
//   Block, block(w, c): what decoding the step from c needs once per row (MXFP4: the block's
//     E2M1 table already times its scale);
//   decode16(w, c, block, out): weights c .. c + 15 (c a multiple of 16 inside the step) into
//     16 / kWidth vectors;
//   kPairedLanes: false when lane l holds weight c + l; true when lane 2k + h holds weight
//     c + 8h + k (a decoder that saves work that way; the kernels then read the inputs in the same
//     order, and paired_to_element_order restores element order).

struct F32Rows {
  using Row = const float*;
  const float* data;
  int C;

  Row row(int o) const { return data + static_cast<size_t>(o) * C; }
  static float value(Row w, int c) { return w[c]; }
#ifdef SWITCHYARD_WEIGHT_DECODE_VECTORS
  static constexpr int kStep = 16;
  static constexpr bool kPairedLanes = false;
  struct Block {};
  static Block block(Row, int) { return {}; }
  static void decode16(Row w, int c, Block, V* out) {
    for (int i = 0; i < kVectors; ++i) out[i] = Lanes::load(w + c + i * kWidth);
  }
#endif
};

struct Bf16Rows {
  using Row = const uint16_t*;
  const uint16_t* data;
  int C;

  Row row(int o) const { return data + static_cast<size_t>(o) * C; }
  static float value(Row w, int c) { return widen_bf16_bits(w[c]); }
#ifdef SWITCHYARD_WEIGHT_DECODE_VECTORS
  static constexpr int kStep = 16;
  static constexpr bool kPairedLanes = false;
  struct Block {};
  static Block block(Row, int) { return {}; }
  // Each 16-bit value zero-extended to 32 bits, then moved to the upper half.
  static void decode16(Row w, int c, Block, V* out) {
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

// C is a multiple of 32: a step is one block, 16 code bytes and a scale.
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
#ifdef SWITCHYARD_WEIGHT_DECODE_VECTORS
  static constexpr int kStep = 32;
  // Every E2M1 value times the block's scale: a power of two, so each product is exact and is the
  // decoded weight itself, and a weight is one table lookup.
  struct Block {
    V table;
  };
#if defined(__AVX512F__)
  static constexpr bool kPairedLanes = true;
  static Block block(Row w, int c) {
    return {_mm512_mul_ps(_mm512_loadu_ps(kFp4E2M1Values),
                          _mm512_set1_ps(kE8M0Scales[w.scales[c / 32]]))};
  }
  // The 8 code bytes as a 64-bit word in every lane pair: lane 2k + h takes its 32-bit half h
  // (weights c + 8h .. c + 8h + 7) and shifts it by 4k, leaving weight c + 8h + k's code at the
  // bottom; the lookup reads only a lane's low 4 bits. One broadcast load, one shift, one permute
  // (in element order, each lane's half would need one more operation to put in place).
  static void decode16(Row w, int c, const Block& b, V* out) {
    long long word;
    std::memcpy(&word, w.codes + c / 2, sizeof(word));
    const __m512i shifts =
        _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    const __m512i codes = _mm512_srlv_epi32(_mm512_set1_epi64(word), shifts);
    out[0] = _mm512_permutexvar_ps(codes, b.table);
  }
#else
  // AVX2's permute takes 8 entries: the table holds the magnitudes (codes 0-7) times the scale,
  // and the code's bit 3, moved to the fp32 sign, negates (the E2M1 table's negative half is its
  // positive half with the sign set, -0 included).
  static constexpr bool kPairedLanes = false;
  static Block block(Row w, int c) {
    return {_mm256_mul_ps(_mm256_loadu_ps(kFp4E2M1Values),
                          _mm256_set1_ps(kE8M0Scales[w.scales[c / 32]]))};
  }
  // Lane l of vector i takes the 32-bit word i of the code bytes (weights c + 8i ..) and shifts
  // it by 4l.
  static void decode16(Row w, int c, const Block& b, V* out) {
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i sign_bit = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    for (int i = 0; i < kVectors; ++i) {
      int word;
      std::memcpy(&word, w.codes + c / 2 + 4 * i, sizeof(word));
      const __m256i codes = _mm256_srlv_epi32(_mm256_set1_epi32(word), shifts);
      const __m256 magnitude = _mm256_permutevar8x32_ps(b.table, codes);
      const __m256 sign =
          _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(codes, 28), sign_bit));
      out[i] = _mm256_xor_ps(magnitude, sign);
    }
  }
#endif
#endif
};

#if defined(SWITCHYARD_WEIGHT_DECODE_VECTORS) && defined(__AVX512F__)
// 16 values in paired lane order (lane 2k + h holds value 8h + k) back in element order.
inline V paired_to_element_order(V v) {
  const __m512i lane_of_element =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  return _mm512_permutexvar_ps(lane_of_element, v);
}
#endif

}  // namespace switchyard::backend::cpu::weight_decode
