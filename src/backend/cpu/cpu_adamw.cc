#include "backend/cpu/cpu_adamw.h"

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace switchyard::backend::cpu {

#if defined(__AVX2__)
namespace {

// Eight floats rounded to bf16 as float_to_bf16 rounds them: to nearest even, NaN kept quiet.
__m128i to_bf16(__m256 x) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  const __m256i halves = _mm256_blendv_epi8(rounded, quiet, nan);
  // Pack the eight 16-bit values (each 128-bit lane packs its own four) into the low 128 bits.
  const __m256i packed = _mm256_packus_epi32(halves, halves);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0b1000));
}

}  // namespace
#endif

bool adamw_update_streaming(float* params, const float* grads, float* m, float* v, size_t N,
                            float learning_rate, float beta1, float beta2, float epsilon,
                            float weight_decay, int step, float grad_scale,
                            uint16_t* params_bf16) {
#if defined(__AVX2__)
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 32 == 0; };
  if (!aligned(params) || !aligned(grads) || !aligned(m) || !aligned(v)) return false;
  if (params_bf16 && reinterpret_cast<uintptr_t>(params_bf16) % 16 != 0) return false;
  // Scalars computed exactly as cpu::adamw_update computes them (double, then rounded to float).
  const double lr = learning_rate, wd = weight_decay;
  const float decay = static_cast<float>(1.0 - lr * wd);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(double(beta1), step)));
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(double(beta2), step)));
  const float b1 = static_cast<float>(double(beta1)), b2 = static_cast<float>(double(beta2));
  const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2;
  const float eps = static_cast<float>(double(epsilon)), gs = static_cast<float>(double(grad_scale));

  const size_t vector_end = N / 8 * 8;
#pragma omp parallel
  {
    const __m256 vdecay = _mm256_set1_ps(decay), vstep = _mm256_set1_ps(step_size),
                 vbc2 = _mm256_set1_ps(inv_sqrt_bc2), vb1 = _mm256_set1_ps(b1),
                 vb2 = _mm256_set1_ps(b2), v1b1 = _mm256_set1_ps(one_minus_b1),
                 v1b2 = _mm256_set1_ps(one_minus_b2), veps = _mm256_set1_ps(eps),
                 vgs = _mm256_set1_ps(gs);
#pragma omp for schedule(static)
    for (size_t i = 0; i < vector_end; i += 8) {
      const __m256 g = _mm256_mul_ps(_mm256_load_ps(grads + i), vgs);
      const __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_load_ps(m + i)), _mm256_mul_ps(v1b1, g));
      const __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_load_ps(v + i)),
                                      _mm256_mul_ps(_mm256_mul_ps(v1b2, g), g));
      const __m256 denom = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), vbc2), veps);
      const __m256 p = _mm256_sub_ps(_mm256_mul_ps(_mm256_load_ps(params + i), vdecay),
                                     _mm256_div_ps(_mm256_mul_ps(vstep, mi), denom));
      _mm256_stream_ps(m + i, mi);
      _mm256_stream_ps(v + i, vi);
      _mm256_stream_ps(params + i, p);
      if (params_bf16) _mm_stream_si128(reinterpret_cast<__m128i*>(params_bf16 + i), to_bf16(p));
    }
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the region ends
  }
  for (size_t i = vector_end; i < N; ++i) {
    const float g = grads[i] * gs;
    const float mi = b1 * m[i] + one_minus_b1 * g;
    const float vi = b2 * v[i] + one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    if (params_bf16) params_bf16[i] = float_to_bf16(params[i]);
  }
  return true;
#else
  return false;
#endif
}

}  // namespace switchyard::backend::cpu
