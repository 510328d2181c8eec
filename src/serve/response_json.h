// Response bodies in OpenAI's shapes: "text_completion" objects for /v1/completions,
// "chat.completion" and "chat.completion.chunk" objects for /v1/chat/completions, the usage
// object, and server-sent events ("data: {json}\n\n", ending with "data: [DONE]\n\n").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "serve/api_request.h"
#include "serve/engine.h"

namespace switchyard::serve {

// What every object and chunk of one response repeats.
struct ResponseHeader {
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}}.
nlohmann::json usage_json(const Usage& usage);

// A whole reply. `logprobs` is null when not asked for; `reasoning` is left out when empty.
nlohmann::json completion_response(const ResponseHeader& header, const std::string& text, nlohmann::json logprobs,
                                   std::string_view finish_reason, const Usage& usage);
nlohmann::json chat_response(const ResponseHeader& header, const std::string& content, const std::string& reasoning,
                             nlohmann::json logprobs, std::string_view finish_reason, const Usage& usage);

// One streamed piece; `finish_reason` only on the last. Chat's `delta` holds role, content and/or
// reasoning_content.
nlohmann::json completion_chunk(const ResponseHeader& header, const std::string& text, nlohmann::json logprobs,
                                std::optional<std::string_view> finish_reason);
nlohmann::json chat_chunk(const ResponseHeader& header, nlohmann::json delta, nlohmann::json logprobs,
                          std::optional<std::string_view> finish_reason);
// The chunk that carries usage when stream_options.include_usage: no choices.
nlohmann::json usage_chunk(Endpoint endpoint, const ResponseHeader& header, const Usage& usage);

// "data: {json}\n\n" (text that is not valid UTF-8 is written with U+FFFD).
std::string sse_event(const nlohmann::json& value);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// JSON text for a response body (invalid UTF-8 written as U+FFFD rather than thrown).
std::string dump_json(const nlohmann::json& value);

}  // namespace switchyard::serve
