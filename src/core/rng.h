// Deterministic random numbers: the same seed gives the same stream on every machine and compiler,
// which std::normal_distribution does not promise. Used for weight initialisation and sampling.
#pragma once

#include <cstdint>

namespace switchyard {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  // Next 64 random bits (splitmix64).
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 24 bits of precision.
  float uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }
  // Standard normal (Box-Muller on two uniforms in (0, 1]).
  float normal();

  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

 private:
  uint64_t state_;
};

}  // namespace switchyard
