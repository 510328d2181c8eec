// Log-probabilities in each endpoint's shape.
//
// /v1/completions:       {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}],
//                         "text_offset": [...]}
// /v1/chat/completions:  {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token",
//                         "logprob", "bytes"}]}], "refusal": null}
//
// A token's string is its bytes as UTF-8, with U+FFFD for the bytes of a character it holds only
// part of; chat's "bytes" gives the exact bytes.
#pragma once

#include <nlohmann/json.hpp>
#include <span>

#include "serve/engine.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {

// `text_offset`: where the first token's text starts in the completion's text; it advances by each
// token's bytes.
nlohmann::json completion_logprobs(std::span<const GeneratedToken> tokens, const tokenizer::Tokenizer& tokenizer,
                                   size_t text_offset);
// The "content" array of chat's logprobs.
nlohmann::json chat_logprobs_content(std::span<const GeneratedToken> tokens, const tokenizer::Tokenizer& tokenizer);
// The whole chat logprobs object around `content`.
nlohmann::json chat_logprobs(nlohmann::json content);

// Bytes of one token, and the same as valid UTF-8.
std::string token_bytes(int32_t token, const tokenizer::Tokenizer& tokenizer);
std::string token_text(int32_t token, const tokenizer::Tokenizer& tokenizer);

}  // namespace switchyard::serve
