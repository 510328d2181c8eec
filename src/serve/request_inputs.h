// What a request asks the model to continue: the completions' "prompt" and the chat's "messages",
// read into an ApiRequest (api_request.h) with OpenAI's refusals.
#pragma once

#include "serve/api_request.h"
#include "serve/request_fields.h"

namespace switchyard::serve {

// "prompt": a string, an array of token ids (each below limits.vocab_size), or an array holding one
// string. Throws ApiError (400) naming the problem.
void read_prompt(const RequestFields& fields, const ServedModelLimits& limits, ApiRequest& request);
// "messages": a non-empty array of {"role", "content"}, the content a string or text parts.
void read_messages(const RequestFields& fields, ApiRequest& request);

}  // namespace switchyard::serve
