// Picks the next token from logits: greedy at temperature 0, otherwise softmax(logits / temperature)
// restricted to the top-k tokens and then to the smallest set whose probability reaches top_p.
#pragma once

#include <cstdint>
#include <span>

#include "core/rng.h"

namespace switchyard::model {

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
};

// Throws Error for a negative temperature, negative top_k or top_p outside (0, 1].
void validate(const SamplingOptions& options);
// Greedy's pick: the index of the first greatest value, as std::max_element gives it (a NaN only
// where it comes first), in two passes the compiler vectorises.
int32_t first_greatest(std::span<const float> x);

// weights[i] = exp((logits[i] - max_logit) / temperature), each within a few ulp of std::exp's (0
// for -inf or below e^-708), and their total (NaN if any logit is NaN). max_logit must be the
// greatest logit, so that no weight exceeds 1.
double softmax_weights(std::span<const float> logits, double max_logit, double temperature,
                       std::span<double> weights);

int32_t sample_token(std::span<const float> logits, const SamplingOptions& options, Rng& rng);

}  // namespace switchyard::model
