#include "serve/response_builder.h"

#include "serve/api_error.h"
#include "serve/logprobs_json.h"

namespace switchyard::serve {

using nlohmann::json;

ApiError invalid_model_output(const std::string& reason) {
  return ApiError(500, "The model's reply is not in its chat format: " + reason, "server_error", "",
                  "invalid_model_output");
}

ResponseBuilder::ResponseBuilder(const ApiRequest& request, ResponseHeader header, const tokenizer::Tokenizer& tokenizer)
    : endpoint_(request.endpoint),
      header_(std::move(header)),
      tokenizer_(tokenizer),
      logprobs_(request.top_logprobs >= 0),
      include_usage_(request.include_usage) {
  if (endpoint_ == Endpoint::kCompletions) {
    logprobs_json_ = {{"tokens", json::array()}, {"token_logprobs", json::array()},
                      {"top_logprobs", json::array()}, {"text_offset", json::array()}};
  } else {
    logprobs_json_ = json::array();
  }
}

json ResponseBuilder::logprobs_of(const Generation::Update& update) {
  if (endpoint_ == Endpoint::kChatCompletions) return chat_logprobs_content(update.tokens, tokenizer_);
  json part = completion_logprobs(update.tokens, tokenizer_, text_offset_);
  for (const GeneratedToken& t : update.tokens) text_offset_ += token_bytes(t.token, tokenizer_).size();
  return part;
}

void ResponseBuilder::add(const Generation::Update& update) {
  content_ += update.delta.content;
  reasoning_ += update.delta.reasoning;
  if (logprobs_ && !update.tokens.empty()) {
    const json part = logprobs_of(update);
    if (endpoint_ == Endpoint::kChatCompletions) {
      for (const json& entry : part) logprobs_json_.push_back(entry);
    } else {
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
        for (const json& entry : part[key]) logprobs_json_[key].push_back(entry);
      }
    }
  }
  if (update.done) {
    finish_reason_ = update.finish_reason;
    usage_ = update.usage;
    format_error_ = update.format_error;
  }
}

json ResponseBuilder::body() const {
  if (!format_error_.empty()) throw invalid_model_output(format_error_);
  const json logprobs = !logprobs_                           ? json(nullptr)
                        : endpoint_ == Endpoint::kCompletions ? logprobs_json_
                                                              : chat_logprobs(logprobs_json_);
  if (endpoint_ == Endpoint::kCompletions) {
    return completion_response(header_, content_, logprobs, finish_reason_, usage_);
  }
  return chat_response(header_, content_, reasoning_, logprobs, finish_reason_, usage_);
}

std::string ResponseBuilder::stream_start() const {
  if (endpoint_ == Endpoint::kCompletions) return "";
  return sse_event(chat_chunk(header_, {{"role", "assistant"}, {"content", ""}}, nullptr, std::nullopt));
}

json ResponseBuilder::chunk(const Generation::Update& update, bool last) {
  const std::optional<std::string_view> finish =
      last ? std::optional<std::string_view>(update.finish_reason) : std::nullopt;
  json logprobs = nullptr;
  if (logprobs_ && !update.tokens.empty()) {
    logprobs = logprobs_of(update);
    if (endpoint_ == Endpoint::kChatCompletions) logprobs = chat_logprobs(logprobs);
  }
  if (endpoint_ == Endpoint::kCompletions) return completion_chunk(header_, update.delta.content, logprobs, finish);
  json delta = json::object();
  if (!update.delta.content.empty()) delta["content"] = update.delta.content;
  if (!update.delta.reasoning.empty()) delta["reasoning_content"] = update.delta.reasoning;
  return chat_chunk(header_, delta, logprobs, finish);
}

std::string ResponseBuilder::stream_events(const Generation::Update& update) {
  std::string events;
  const bool shows = !update.delta.content.empty() || !update.delta.reasoning.empty() ||
                     (logprobs_ && !update.tokens.empty());
  if (!update.done) return shows ? sse_event(chunk(update, false)) : "";
  if (!update.format_error.empty()) {
    events += sse_event(error_body(invalid_model_output(update.format_error)));
  } else {
    events += sse_event(chunk(update, true));
  }
  if (include_usage_) events += sse_event(usage_chunk(endpoint_, header_, update.usage));
  events += kSseDone;
  return events;
}

}  // namespace switchyard::serve
