// Log-probabilities of sampled tokens: log-softmax of the logits at temperature 1 (what the model
// says, whatever temperature or top-k/top-p the request samples with), as OpenAI's API reports
// them.
#pragma once

#include <cstdint>
#include <span>

#include "serve/engine.h"

namespace switchyard::serve {

// The token with its log-probability and the `top` most likely tokens' (most likely first, the
// lower id first on ties).
GeneratedToken token_with_logprobs(std::span<const float> logits, int32_t token, int top);

}  // namespace switchyard::serve
