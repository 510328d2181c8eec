#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace switchyard::model {

void RopeConfig::validate() const {
  require(head_dim > 0 && head_dim % 2 == 0, "RoPE: head_dim must be positive and even, got {}",
          head_dim);
  require(theta > 1.0, "RoPE: theta must be above 1, got {}", theta);
  require(yarn_factor >= 1.0, "RoPE: the YaRN factor must be at least 1, got {}", yarn_factor);
  if (yarn_factor > 1.0) {
    require(original_context > 0, "RoPE: YaRN needs the original context, got {}",
            original_context);
    require(beta_fast > beta_slow && beta_slow > 0.0,
            "RoPE: YaRN needs beta_fast > beta_slow > 0, got {} and {}", beta_fast, beta_slow);
  }
}

namespace {

// The (fractional) dimension pair whose wavelength makes `rotations` turns over the original
// context.
double correction_pair(const RopeConfig& c, double rotations) {
  return c.head_dim * std::log(static_cast<double>(c.original_context) /
                               (2.0 * std::numbers::pi * rotations)) /
         (2.0 * std::log(c.theta));
}

}  // namespace

RopeFrequencies rope_frequencies(const RopeConfig& c) {
  c.validate();
  const int pairs = c.head_dim / 2;
  RopeFrequencies f;
  f.inv_freq.resize(static_cast<size_t>(pairs));
  for (int i = 0; i < pairs; ++i) f.inv_freq[i] = std::pow(c.theta, -2.0 * i / c.head_dim);
  if (c.yarn_factor == 1.0) return f;

  double low = correction_pair(c, c.beta_fast), high = correction_pair(c, c.beta_slow);
  if (c.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, c.head_dim - 1.0);
  if (low == high) high += 0.001;  // a one-pair ramp: avoid dividing by zero
  for (int i = 0; i < pairs; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    f.inv_freq[i] = f.inv_freq[i] * (1.0 - ramp) + f.inv_freq[i] / c.yarn_factor * ramp;
  }
  f.attention_factor = 0.1 * std::log(c.yarn_factor) + 1.0;
  return f;
}

RopeTables rope_tables(const RopeConfig& config, int64_t positions) {
  require(positions >= 0, "RoPE: positions must not be negative, got {}", positions);
  const RopeFrequencies f = rope_frequencies(config);
  RopeTables t;
  t.positions = positions;
  t.pairs = config.head_dim / 2;
  const size_t size = static_cast<size_t>(positions) * t.pairs;
  t.cos.resize(size);
  t.sin.resize(size);
  for (int64_t p = 0; p < positions; ++p) {
    for (int i = 0; i < t.pairs; ++i) {
      const double angle = static_cast<double>(p) * f.inv_freq[i];
      const size_t at = static_cast<size_t>(p) * t.pairs + i;
      t.cos[at] = static_cast<float>(std::cos(angle) * f.attention_factor);
      t.sin[at] = static_cast<float>(std::sin(angle) * f.attention_factor);
    }
  }
  return t;
}

}  // namespace switchyard::model
