// Rotary position embeddings in the half-split style (dimension i pairs with i + head_dim / 2) with
// optional YaRN context scaling, as gpt-oss uses them (theta 150000, YaRN factor 32 over an
// original context of 4096, beta_fast 32, beta_slow 1, the correction range not rounded).
//
// YaRN keeps the frequencies of the fast-rotating dimension pairs, divides those of the slow ones
// by the factor, and ramps linearly in between, over the pairs whose wavelength fits between
// beta_fast and beta_slow rotations of the original context; cos and sin are multiplied by the
// attention factor 0.1 ln(factor) + 1.
#pragma once

#include <cstdint>
#include <vector>

namespace switchyard::model {

struct RopeConfig {
  int head_dim = 0;
  double theta = 10000.0;
  double yarn_factor = 1.0;          // 1: plain RoPE
  int64_t original_context = 0;      // YaRN: the context the model was trained at
  double beta_fast = 32.0, beta_slow = 1.0;
  bool truncate = true;              // round the ramp's ends to whole pairs (gpt-oss: false)

  // Throws Error naming the first invalid field.
  void validate() const;
};

struct RopeFrequencies {
  std::vector<double> inv_freq;  // [head_dim / 2]: radians per position of each dimension pair
  double attention_factor = 1.0;  // multiplies cos and sin
};

RopeFrequencies rope_frequencies(const RopeConfig& config);

// cos and sin of position p and pair i at [p * head_dim / 2 + i], times the attention factor,
// for positions [0, positions). Angles are formed in double and rounded once to float.
struct RopeTables {
  int64_t positions = 0;
  int pairs = 0;
  std::vector<float> cos, sin;
};
RopeTables rope_tables(const RopeConfig& config, int64_t positions);

}  // namespace switchyard::model
