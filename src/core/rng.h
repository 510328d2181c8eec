// Deterministic random numbers: the same seed gives the same stream on every machine and compiler,
// which std::normal_distribution does not promise. Used for weight initialisation and sampling.
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchyard {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  // Next 64 random bits (splitmix64).
  uint64_t next_u64() { return mix(state_ += kIncrement); }
  // Uniform in [0, 1) with 24 bits of precision.
  float uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }
  // Standard normal (Box-Muller on two uniforms in (0, 1]).
  float normal();
  // out[i] = normal() * scale for i in [0, n): the same values, and the same state afterwards, as
  // n calls in a row, computed on all cores (each value depends only on its place in the stream).
  void fill_normal(float* out, size_t n, float scale);

  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

 private:
  static constexpr uint64_t kIncrement = 0x9E3779B97F4A7C15ull;
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // The normal deviate from the two draws after `state` (as normal() does from state_).
  static float normal_at(uint64_t state);

  uint64_t state_;
};

}  // namespace switchyard
