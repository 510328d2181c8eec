#include "serve/logprobs_json.h"

#include "tokenizer/utf8_stream.h"

namespace switchyard::serve {

using nlohmann::json;

std::string token_bytes(int32_t token, const tokenizer::Tokenizer& tokenizer) {
  return tokenizer.decode(std::span(&token, 1));
}

std::string token_text(int32_t token, const tokenizer::Tokenizer& tokenizer) {
  tokenizer::Utf8Stream utf8;
  std::string text = utf8.push(token_bytes(token, tokenizer));
  return text + utf8.flush();
}

json completion_logprobs(std::span<const GeneratedToken> tokens, const tokenizer::Tokenizer& tokenizer,
                         size_t text_offset) {
  json strings = json::array(), logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const GeneratedToken& t : tokens) {
    strings.push_back(token_text(t.token, tokenizer));
    logprobs.push_back(t.chosen ? json(t.chosen->logprob) : json(nullptr));
    json alternatives = json::object();
    for (const TokenLogprob& alternative : t.top) {
      alternatives[token_text(alternative.token, tokenizer)] = alternative.logprob;
    }
    top.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += token_bytes(t.token, tokenizer).size();
  }
  return {{"tokens", strings}, {"token_logprobs", logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

namespace {

json chat_entry(int32_t token, float logprob, const tokenizer::Tokenizer& tokenizer) {
  const std::string bytes = token_bytes(token, tokenizer);
  json byte_values = json::array();
  for (const char b : bytes) byte_values.push_back(static_cast<unsigned char>(b));
  return {{"token", token_text(token, tokenizer)}, {"logprob", logprob}, {"bytes", byte_values}};
}

}  // namespace

json chat_logprobs_content(std::span<const GeneratedToken> tokens, const tokenizer::Tokenizer& tokenizer) {
  json content = json::array();
  for (const GeneratedToken& t : tokens) {
    json entry = chat_entry(t.token, t.chosen ? t.chosen->logprob : 0.0f, tokenizer);
    json top = json::array();
    for (const TokenLogprob& alternative : t.top) top.push_back(chat_entry(alternative.token, alternative.logprob, tokenizer));
    entry["top_logprobs"] = top;
    content.push_back(entry);
  }
  return content;
}

json chat_logprobs(json content) { return {{"content", std::move(content)}, {"refusal", nullptr}}; }

}  // namespace switchyard::serve
