// Turns a Generation's updates into the response body of one endpoint: all at once (one
// text_completion or chat.completion object), or streamed (server-sent events: chunks as text
// comes, a last chunk with finish_reason, a usage chunk when asked for, then [DONE]).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "serve/api_error.h"
#include "serve/api_request.h"
#include "serve/generation.h"
#include "serve/response_json.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {

class ResponseBuilder {
 public:
  // The tokenizer must outlive the builder.
  ResponseBuilder(const ApiRequest& request, ResponseHeader header, const tokenizer::Tokenizer& tokenizer);

  // Whole responses: add every update, then take the body. A reply that broke its format gives an
  // ApiError (500) instead.
  void add(const Generation::Update& update);
  nlohmann::json body() const;

  // Streams: the events that open the stream (chat: the assistant's role), then those of each
  // update (empty when it adds nothing to show); the last update's end with [DONE].
  std::string stream_start() const;
  std::string stream_events(const Generation::Update& update);

 private:
  nlohmann::json logprobs_of(const Generation::Update& update);
  nlohmann::json chunk(const Generation::Update& update, bool last);

  Endpoint endpoint_;
  ResponseHeader header_;
  const tokenizer::Tokenizer& tokenizer_;
  bool logprobs_;
  bool include_usage_;
  size_t text_offset_ = 0;  // completions' logprobs: bytes of the tokens so far
  std::string content_, reasoning_;
  nlohmann::json logprobs_json_;  // completions: the object; chat: the content array
  std::string finish_reason_;
  std::string format_error_;
  Usage usage_;
};

// The ApiError (500) for a reply that broke its format (the model wrote something harmony cannot read).
ApiError invalid_model_output(const std::string& reason);

}  // namespace switchyard::serve
