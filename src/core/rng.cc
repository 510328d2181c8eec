#include "core/rng.h"

#include <cmath>

namespace switchyard {

float Rng::normal_at(uint64_t state) {
  const uint64_t a = mix(state + kIncrement), b = mix(state + 2 * kIncrement);
  double u1 = (static_cast<double>(a >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = static_cast<double>(b >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

float Rng::normal() {
  const float value = normal_at(state_);
  state_ += 2 * kIncrement;
  return value;
}

void Rng::fill_normal(float* out, size_t n, float scale) {
  // splitmix64's state only ever moves by kIncrement (mod 2^64), so value i starts at
  // state_ + 2 i kIncrement wherever it is computed.
  const uint64_t start = state_;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) out[i] = normal_at(start + 2 * kIncrement * i) * scale;
  state_ = start + 2 * kIncrement * n;
}

}  // namespace switchyard
