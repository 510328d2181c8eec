// An API request turned into the engine's terms: the prompt as tokens (the completions' prompt
// encoded, or the chat's messages rendered in harmony), the token budget, sampling and stop tokens.
// The checks that need the tokenizer happen here: the prompt's length against the context.
#pragma once

#include <cstdint>

#include "serve/api_request.h"
#include "serve/engine.h"
#include "serve/served_model.h"

namespace switchyard::serve {

struct PreparedRequest {
  GenerationRequest generation;
  bool harmony = false;  // the reply is in the harmony format (gpt-oss chat)
};

// Throws ApiError: 400 for a chat request to a model without a chat format, a prompt that leaves
// no room in the context, or max_tokens past the room left (code context_length_exceeded).
// `seed` is used when the request gives none.
PreparedRequest prepare_request(const ApiRequest& request, const ServedModel& model, uint64_t seed);

}  // namespace switchyard::serve
