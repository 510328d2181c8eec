// Request bodies of POST /v1/completions and POST /v1/chat/completions, parsed and checked.
//
// parse_api_request is a pure function of the body text (and of what it is told about the served
// model): it either returns the request or throws ApiError with OpenAI's status, message, type,
// param and code. Fields it does not know are ignored, as OpenAI's API ignores them; a known field
// of the wrong type, or with a value out of range, is refused naming the field. Checks that need
// the tokenizer (the prompt's length against the context) come later, in the handler.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/sampler.h"
#include "tokenizer/harmony.h"

namespace switchyard::serve {

enum class Endpoint { kCompletions, kChatCompletions };

enum class ChatRole { kSystem, kDeveloper, kUser, kAssistant };

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;  // the text (a list of text parts joined)
};

// What the parser is told about the served model.
struct ServedModelLimits {
  std::string name;        // the name requests must use in "model"
  int context_length = 0;  // tokens; max_tokens must leave room for at least one prompt token
  int vocab_size = 0;      // token ids in a prompt must be below it
};

// Most stop strings a request may give (OpenAI's limit).
inline constexpr int kMaxStopStrings = 4;
// Most alternatives per token: completions' logprobs, chat's top_logprobs (OpenAI's limits).
inline constexpr int kMaxCompletionLogprobs = 5;
inline constexpr int kMaxChatTopLogprobs = 20;

struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;

  // /v1/completions: the prompt as text, or as token ids when prompt_text is absent.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_tokens;

  // /v1/chat/completions.
  std::vector<ChatMessage> messages;
  tokenizer::ReasoningEffort reasoning_effort = tokenizer::ReasoningEffort::kMedium;

  std::optional<int> max_tokens;  // absent: 16 for completions, the rest of the context for chat
  model::SamplingOptions sampling;
  std::optional<int64_t> seed;    // absent: a fresh random stream
  std::vector<std::string> stop;  // up to kMaxStopStrings, none empty
  // -1: no log-probabilities; otherwise the chosen token's and this many alternatives' (the
  // completions' "logprobs", the chat's "top_logprobs" with "logprobs": true).
  int top_logprobs = -1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string user;
};

// Throws ApiError: 400 for malformed JSON, a wrong type or a bad value (naming the param), 404
// (code model_not_found) for a model other than limits.name.
ApiRequest parse_api_request(Endpoint endpoint, std::string_view body, const ServedModelLimits& limits);

}  // namespace switchyard::serve
