#include "serve/response_json.h"

namespace switchyard::serve {

using nlohmann::json;

namespace {

json finish_or_null(std::optional<std::string_view> finish_reason) {
  return finish_reason ? json(std::string(*finish_reason)) : json(nullptr);
}

json object_head(const ResponseHeader& header, const char* object) {
  return {{"id", header.id}, {"object", object}, {"created", header.created}, {"model", header.model}};
}

}  // namespace

json usage_json(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}}};
}

json completion_response(const ResponseHeader& header, const std::string& text, json logprobs,
                         std::string_view finish_reason, const Usage& usage) {
  json response = object_head(header, "text_completion");
  response["choices"] = json::array({{{"index", 0},
                                      {"text", text},
                                      {"logprobs", std::move(logprobs)},
                                      {"finish_reason", std::string(finish_reason)}}});
  response["usage"] = usage_json(usage);
  return response;
}

json chat_response(const ResponseHeader& header, const std::string& content, const std::string& reasoning,
                   json logprobs, std::string_view finish_reason, const Usage& usage) {
  json message = {{"role", "assistant"}, {"content", content}};
  if (!reasoning.empty()) message["reasoning_content"] = reasoning;
  json response = object_head(header, "chat.completion");
  response["choices"] = json::array({{{"index", 0},
                                      {"message", std::move(message)},
                                      {"logprobs", std::move(logprobs)},
                                      {"finish_reason", std::string(finish_reason)}}});
  response["usage"] = usage_json(usage);
  return response;
}

json completion_chunk(const ResponseHeader& header, const std::string& text, json logprobs,
                      std::optional<std::string_view> finish_reason) {
  json chunk = object_head(header, "text_completion");
  chunk["choices"] = json::array(
      {{{"index", 0}, {"text", text}, {"logprobs", std::move(logprobs)}, {"finish_reason", finish_or_null(finish_reason)}}});
  return chunk;
}

json chat_chunk(const ResponseHeader& header, json delta, json logprobs, std::optional<std::string_view> finish_reason) {
  json chunk = object_head(header, "chat.completion.chunk");
  chunk["choices"] = json::array({{{"index", 0},
                                   {"delta", std::move(delta)},
                                   {"logprobs", std::move(logprobs)},
                                   {"finish_reason", finish_or_null(finish_reason)}}});
  return chunk;
}

json usage_chunk(Endpoint endpoint, const ResponseHeader& header, const Usage& usage) {
  json chunk = object_head(header, endpoint == Endpoint::kCompletions ? "text_completion" : "chat.completion.chunk");
  chunk["choices"] = json::array();
  chunk["usage"] = usage_json(usage);
  return chunk;
}

std::string dump_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& value) { return "data: " + dump_json(value) + "\n\n"; }

}  // namespace switchyard::serve
