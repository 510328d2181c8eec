// Checks for cpu-bf16's product kernels (bf16_dot_linear.h, bf16_panel_linear.h): random bf16
// values, and a product's outputs against a double-precision reference over the same bf16 values,
// within fp32 summation's error and one rounding to bf16.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"

namespace switchyard::backend::cpu {

inline std::vector<uint16_t> random_bf16(size_t n, unsigned seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<uint16_t> bits(n);
  for (uint16_t& b : bits) b = narrow_to_bf16_bits(normal(gen));
  return bits;
}

// out [N, OC] against the exact product of inp [N, C] (bf16) with the weights weight_value(o, c)
// gives, plus bias (if not null): within fp32 summation's error and one rounding to bf16, and
// `absolute` more.
template <typename WeightValue>
void expect_exact_product(const std::vector<uint16_t>& out, const std::vector<uint16_t>& inp,
                          WeightValue&& weight_value, const float* bias, int N, int C, int OC,
                          double absolute = 0.0) {
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < OC; ++o) {
      double exact = bias ? bias[o] : 0.0, magnitude = std::fabs(exact);
      for (int c = 0; c < C; ++c) {
        const double p = double(widen_bf16_bits(inp[size_t(n) * C + c])) * double(weight_value(o, c));
        exact += p;
        magnitude += std::fabs(p);
      }
      const double got = widen_bf16_bits(out[size_t(n) * OC + o]);
      // fp32 sums of C + 1 terms, then one rounding to bf16 (2^-9 relative).
      const double bound = std::fabs(exact) * std::ldexp(1.0, -8) +
                           magnitude * (C + 2) * std::ldexp(1.0, -23) + absolute;
      EXPECT_LE(std::fabs(got - exact), bound)
          << "N " << N << " C " << C << " row " << n << " output " << o;
    }
  }
}

// The same over bf16 weights [OC, C].
inline void expect_bf16_product(const std::vector<uint16_t>& out, const std::vector<uint16_t>& inp,
                                const std::vector<uint16_t>& weight, const float* bias, int N,
                                int C, int OC) {
  expect_exact_product(
      out, inp, [&](int o, int c) { return widen_bf16_bits(weight[size_t(o) * C + c]); }, bias, N,
      C, OC);
}

}  // namespace switchyard::backend::cpu
