#include "backend/cpu/cpu_adamw.h"

#include <bit>
#include <cmath>
#include <cstdint>

#include "core/dtype.h"
#include "core/fp32_halves.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace switchyard::backend::cpu {
namespace {

// The update's scalars, computed exactly as cpu::adamw_update computes them (double, then rounded
// to float).
struct Coefficients {
  float decay, step_size, inv_sqrt_bc2, b1, b2, one_minus_b1, one_minus_b2, eps, gs;
};

Coefficients coefficients(float learning_rate, float beta1, float beta2, float epsilon,
                          float weight_decay, int step, float grad_scale) {
  const double lr = learning_rate, wd = weight_decay;
  const float b1 = static_cast<float>(double(beta1)), b2 = static_cast<float>(double(beta2));
  return {.decay = static_cast<float>(1.0 - lr * wd),
          .step_size = static_cast<float>(lr / (1.0 - std::pow(double(beta1), step))),
          .inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(double(beta2), step))),
          .b1 = b1, .b2 = b2, .one_minus_b1 = 1.0f - b1, .one_minus_b2 = 1.0f - b2,
          .eps = static_cast<float>(double(epsilon)),
          .gs = static_cast<float>(double(grad_scale))};
}

// One parameter's update: m and v in place, the new parameter returned.
inline float updated(float p, float grad, float& m, float& v, const Coefficients& k) {
  const float g = grad * k.gs;
  const float mi = k.b1 * m + k.one_minus_b1 * g;
  const float vi = k.b2 * v + k.one_minus_b2 * g * g;
  m = mi;
  v = vi;
  return p * k.decay - k.step_size * mi / (std::sqrt(vi) * k.inv_sqrt_bc2 + k.eps);
}

#if defined(__AVX2__)

struct VectorCoefficients {
  __m256 decay, step_size, inv_sqrt_bc2, b1, b2, one_minus_b1, one_minus_b2, eps, gs;
  explicit VectorCoefficients(const Coefficients& k)
      : decay(_mm256_set1_ps(k.decay)), step_size(_mm256_set1_ps(k.step_size)),
        inv_sqrt_bc2(_mm256_set1_ps(k.inv_sqrt_bc2)), b1(_mm256_set1_ps(k.b1)),
        b2(_mm256_set1_ps(k.b2)), one_minus_b1(_mm256_set1_ps(k.one_minus_b1)),
        one_minus_b2(_mm256_set1_ps(k.one_minus_b2)), eps(_mm256_set1_ps(k.eps)),
        gs(_mm256_set1_ps(k.gs)) {}
};

// `updated` over eight parameters, float operation for float operation (no fused multiply-adds).
inline __m256 updated(__m256 p, __m256 grad, __m256& m, __m256& v, const VectorCoefficients& k) {
  const __m256 g = _mm256_mul_ps(grad, k.gs);
  m = _mm256_add_ps(_mm256_mul_ps(k.b1, m), _mm256_mul_ps(k.one_minus_b1, g));
  v = _mm256_add_ps(_mm256_mul_ps(k.b2, v), _mm256_mul_ps(_mm256_mul_ps(k.one_minus_b2, g), g));
  const __m256 denom = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(v), k.inv_sqrt_bc2), k.eps);
  return _mm256_sub_ps(_mm256_mul_ps(p, k.decay), _mm256_div_ps(_mm256_mul_ps(k.step_size, m), denom));
}

// Eight 32-bit lanes' low 16 bits packed in order: lanes of a and then of b, as 16 values.
inline __m256i pack_low_halves(__m256i a, __m256i b) {
  const __m256i packed = _mm256_packus_epi32(a, b);  // per 128-bit lane: a0-3 b0-3 | a4-7 b4-7
  return _mm256_permute4x64_epi64(packed, 0b11011000);
}

// Eight floats rounded to bf16 as float_to_bf16 rounds them: to nearest even, NaN kept quiet.
__m128i to_bf16(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  const __m256i halves = _mm256_blendv_epi8(rounded, quiet, nan);
  return _mm256_castsi256_si128(pack_low_halves(halves, halves));
}

// Eight parameters held as fp32 halves, joined (fp32_from_halves) ...
inline __m256 join_halves(const uint16_t* high, const uint16_t* low) {
  const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(high)));
  const __m256i l = _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(low)));
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(h, 16), l));
}

// ... and split again (fp32_high_half, fp32_low_half): the high halves in the low 128 bits, the
// low halves in the high 128.
inline __m256i split_halves(__m256 p) {
  const __m256i bits = _mm256_castps_si256(p);
  const __m256i high = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x8000)), 16);
  const __m256i low = _mm256_and_si256(bits, _mm256_set1_epi32(0xFFFF));
  return pack_low_halves(high, low);
}

inline bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The halves' update over [0, vector_end), eight at a time. kStream: every array aligned for
// streaming stores (see the header), which skip reading the destinations first.
template <bool kStream>
void update_halves_vectors(uint16_t* high, uint16_t* low, const float* grads, float* m, float* v,
                           size_t vector_end, const Coefficients& coefficients) {
#pragma omp parallel
  {
    const VectorCoefficients k(coefficients);
#pragma omp for schedule(static)
    for (size_t i = 0; i < vector_end; i += 8) {
      __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
      const __m256 p = updated(join_halves(high + i, low + i), _mm256_loadu_ps(grads + i), mi, vi, k);
      const __m256i halves = split_halves(p);
      auto* h = reinterpret_cast<__m128i*>(high + i);
      auto* l = reinterpret_cast<__m128i*>(low + i);
      if constexpr (kStream) {
        _mm256_stream_ps(m + i, mi);
        _mm256_stream_ps(v + i, vi);
        _mm_stream_si128(h, _mm256_castsi256_si128(halves));
        _mm_stream_si128(l, _mm256_extracti128_si256(halves, 1));
      } else {
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm_storeu_si128(h, _mm256_castsi256_si128(halves));
        _mm_storeu_si128(l, _mm256_extracti128_si256(halves, 1));
      }
    }
    if constexpr (kStream) _mm_sfence();  // streaming stores are weakly ordered
  }
}

#endif  // __AVX2__

}  // namespace

bool adamw_update_streaming(float* params, const float* grads, float* m, float* v, size_t N,
                            float learning_rate, float beta1, float beta2, float epsilon,
                            float weight_decay, int step, float grad_scale,
                            uint16_t* params_bf16) {
#if defined(__AVX2__)
  if (!aligned(params, 32) || !aligned(grads, 32) || !aligned(m, 32) || !aligned(v, 32)) return false;
  if (params_bf16 && !aligned(params_bf16, 16)) return false;
  const Coefficients k = coefficients(learning_rate, beta1, beta2, epsilon, weight_decay, step,
                                      grad_scale);
  const size_t vector_end = N / 8 * 8;
#pragma omp parallel
  {
    const VectorCoefficients vk(k);
#pragma omp for schedule(static)
    for (size_t i = 0; i < vector_end; i += 8) {
      __m256 mi = _mm256_load_ps(m + i), vi = _mm256_load_ps(v + i);
      const __m256 p = updated(_mm256_load_ps(params + i), _mm256_load_ps(grads + i), mi, vi, vk);
      _mm256_stream_ps(m + i, mi);
      _mm256_stream_ps(v + i, vi);
      _mm256_stream_ps(params + i, p);
      if (params_bf16) _mm_stream_si128(reinterpret_cast<__m128i*>(params_bf16 + i), to_bf16(p));
    }
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the region ends
  }
  for (size_t i = vector_end; i < N; ++i) {
    params[i] = updated(params[i], grads[i], m[i], v[i], k);
    if (params_bf16) params_bf16[i] = float_to_bf16(params[i]);
  }
  return true;
#else
  (void)params, (void)grads, (void)m, (void)v, (void)N, (void)learning_rate, (void)beta1;
  (void)beta2, (void)epsilon, (void)weight_decay, (void)step, (void)grad_scale, (void)params_bf16;
  return false;
#endif
}

void adamw_update_halves(uint16_t* high, uint16_t* low, const float* grads, float* m, float* v,
                         size_t N, float learning_rate, float beta1, float beta2, float epsilon,
                         float weight_decay, int step, float grad_scale) {
  const Coefficients k = coefficients(learning_rate, beta1, beta2, epsilon, weight_decay, step,
                                      grad_scale);
  size_t vector_end = 0;
#if defined(__AVX2__)
  vector_end = N / 8 * 8;
  if (aligned(grads, 32) && aligned(m, 32) && aligned(v, 32) && aligned(high, 16) &&
      aligned(low, 16)) {
    update_halves_vectors<true>(high, low, grads, m, v, vector_end, k);
  } else {
    update_halves_vectors<false>(high, low, grads, m, v, vector_end, k);
  }
#endif
  for (size_t i = vector_end; i < N; ++i) {
    const float p = updated(fp32_from_halves(high[i], low[i]), grads[i], m[i], v[i], k);
    const uint32_t bits = std::bit_cast<uint32_t>(p);
    high[i] = fp32_high_half(bits);
    low[i] = fp32_low_half(bits);
  }
}

}  // namespace switchyard::backend::cpu
