// Random inputs the tests share, deterministic per seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace switchyard {

// n floats uniform in [offset - scale, offset + scale).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f,
                                        float offset = 0.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = offset + scale * (2.0f * rng.uniform() - 1.0f);
  return v;
}

// n floats from a normal distribution of mean 0 and standard deviation `stddev`.
inline std::vector<float> normal_floats(size_t n, uint64_t seed, float stddev = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = stddev * rng.normal();
  return v;
}

// n token ids uniform in [0, vocab).
inline std::vector<int32_t> random_tokens(size_t n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> v(n);
  for (int32_t& t : v) t = static_cast<int32_t>(rng.next_u64() % vocab);
  return v;
}

}  // namespace switchyard
