#include "serve/api_request.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/untrusted_json.h"
#include "serve/api_error.h"
#include "serve/request_fields.h"
#include "serve/request_inputs.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

// Request bodies nest a few levels (messages[i].content[j].text); far deeper is refused.
constexpr int kMaxRequestDepth = 16;

json parse_body(std::string_view body) {
  json value;
  try {
    value = parse_untrusted_json(body, "the request body", kMaxRequestDepth);
  } catch (const json::exception& e) {
    throw invalid_request(fmt::format("We could not parse the JSON body of your request ({}). The body must be "
                                      "valid JSON (UTF-8).",
                                      e.what()));
  } catch (const Error& e) {
    throw invalid_request(fmt::format("We could not parse the JSON body of your request: {}.", e.what()));
  }
  if (!value.is_object()) {
    throw invalid_request(
        fmt::format("The request body must be a JSON object, but it is {}.", json_type_name(value)));
  }
  return value;
}

ApiError out_of_range(const std::string& param, const std::string& expected, const std::string& got) {
  return invalid_request(fmt::format("Invalid value for '{}': expected {}, but got {}.", param, expected, got), param,
                         "invalid_value");
}

void read_max_tokens(const RequestFields& fields, const ServedModelLimits& limits, ApiRequest& request) {
  // Chat's newer name wins over the older one, which it replaces.
  std::string key = "max_tokens";
  if (request.endpoint == Endpoint::kChatCompletions && fields.find("max_completion_tokens")) {
    key = "max_completion_tokens";
  }
  const std::optional<int64_t> max_tokens = fields.integer(key);
  if (!max_tokens) return;
  if (*max_tokens < 1) throw out_of_range(key, "an integer of at least 1", std::to_string(*max_tokens));
  // At least one prompt token must fit too.
  if (*max_tokens > limits.context_length - 1) {
    throw invalid_request(fmt::format("Invalid value for '{}': {} tokens do not fit in this model's context of {} "
                                      "tokens (at most {} with a one-token prompt).",
                                      key, *max_tokens, limits.context_length, limits.context_length - 1),
                          key, "context_length_exceeded");
  }
  request.max_tokens = static_cast<int>(*max_tokens);
}

void read_sampling(const RequestFields& fields, ApiRequest& request) {
  if (const std::optional<double> t = fields.number("temperature")) {
    if (*t < 0 || *t > 2) throw out_of_range("temperature", "a number from 0 to 2", fields.find("temperature")->dump());
    request.sampling.temperature = static_cast<float>(*t);
  }
  if (const std::optional<double> p = fields.number("top_p")) {
    if (!(*p > 0 && *p <= 1)) throw out_of_range("top_p", "a number in (0, 1]", fields.find("top_p")->dump());
    request.sampling.top_p = static_cast<float>(*p);
  }
  if (const std::optional<int64_t> k = fields.integer("top_k")) {  // vLLM's extension; -1 or 0: off
    if (*k < -1 || *k > INT32_MAX) throw out_of_range("top_k", "-1, 0 or a positive integer", std::to_string(*k));
    request.sampling.top_k = *k < 0 ? 0 : static_cast<int>(*k);
  }
  request.seed = fields.integer("seed");
}

void read_stop(const RequestFields& fields, ApiRequest& request) {
  const json* stop = fields.find("stop");
  if (!stop) return;
  const auto add = [&](const json& item) {
    if (!item.is_string()) {
      throw invalid_request(fmt::format("Invalid type for 'stop': expected a string or an array of strings, but got "
                                        "{}{} instead.",
                                        stop->is_array() ? "an array holding " : "", json_type_name(item)),
                            "stop", "invalid_type");
    }
    if (item.get<std::string>().empty()) {
      throw invalid_request("Invalid 'stop': a stop sequence cannot be empty.", "stop", "invalid_value");
    }
    request.stop.push_back(item.get<std::string>());
  };
  if (stop->is_array()) {
    if (stop->size() > static_cast<size_t>(kMaxStopStrings)) {
      throw invalid_request(fmt::format("Invalid 'stop': at most {} stop sequences, but got {}.", kMaxStopStrings,
                                        stop->size()),
                            "stop", "invalid_value");
    }
    for (const json& item : *stop) add(item);
  } else {
    add(*stop);
  }
}

void read_logprobs(const RequestFields& fields, ApiRequest& request) {
  if (request.endpoint == Endpoint::kCompletions) {
    const std::optional<int64_t> logprobs = fields.integer("logprobs");
    if (!logprobs) return;
    if (*logprobs < 0 || *logprobs > kMaxCompletionLogprobs) {
      throw out_of_range("logprobs", fmt::format("an integer from 0 to {}", kMaxCompletionLogprobs),
                         std::to_string(*logprobs));
    }
    request.top_logprobs = static_cast<int>(*logprobs);
    return;
  }
  const bool logprobs = fields.boolean("logprobs").value_or(false);
  const std::optional<int64_t> top = fields.integer("top_logprobs");
  if (top && (*top < 0 || *top > kMaxChatTopLogprobs)) {
    throw out_of_range("top_logprobs", fmt::format("an integer from 0 to {}", kMaxChatTopLogprobs),
                       std::to_string(*top));
  }
  if (top && !logprobs) {
    throw invalid_request("Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is given.",
                          "top_logprobs", "invalid_value");
  }
  if (logprobs) request.top_logprobs = static_cast<int>(top.value_or(0));
}

void read_streaming(const RequestFields& fields, ApiRequest& request) {
  request.stream = fields.boolean("stream").value_or(false);
  const json* options = fields.find("stream_options");
  if (!options) return;
  if (!options->is_object()) fields.wrong_type("stream_options", "an object");
  if (!request.stream) {
    throw invalid_request("The 'stream_options' parameter is only allowed when 'stream' is true.", "stream_options",
                          "invalid_value");
  }
  request.include_usage = RequestFields(*options, "stream_options").boolean("include_usage").value_or(false);
}

void read_reasoning_effort(const RequestFields& fields, ApiRequest& request) {
  const std::optional<std::string> effort = fields.string("reasoning_effort");
  if (!effort) return;
  if (*effort == "low") {
    request.reasoning_effort = tokenizer::ReasoningEffort::kLow;
  } else if (*effort == "medium") {
    request.reasoning_effort = tokenizer::ReasoningEffort::kMedium;
  } else if (*effort == "high") {
    request.reasoning_effort = tokenizer::ReasoningEffort::kHigh;
  } else {
    throw out_of_range("reasoning_effort", "'low', 'medium' or 'high'", "'" + *effort + "'");
  }
}

}  // namespace

ApiRequest parse_api_request(Endpoint endpoint, std::string_view body, const ServedModelLimits& limits) {
  const json value = parse_body(body);
  const RequestFields fields(value, "");
  ApiRequest request;
  request.endpoint = endpoint;

  const std::optional<std::string> model = fields.string("model");
  if (!model) throw invalid_request("You must provide a model parameter.", "model", "missing_required_parameter");
  if (*model != limits.name) {
    throw ApiError(404, fmt::format("The model `{}` does not exist or you do not have access to it.", *model),
                   "invalid_request_error", "", "model_not_found");
  }
  request.model = *model;

  if (const std::optional<int64_t> n = fields.integer("n"); n && *n != 1) {
    throw out_of_range("n", "1 (this server returns one choice per request)", std::to_string(*n));
  }
  if (endpoint == Endpoint::kCompletions) {
    read_prompt(fields, limits, request);
  } else {
    read_messages(fields, request);
    read_reasoning_effort(fields, request);
  }
  read_max_tokens(fields, limits, request);
  read_sampling(fields, request);
  read_stop(fields, request);
  read_logprobs(fields, request);
  read_streaming(fields, request);
  request.user = fields.string("user").value_or("");
  return request;
}

}  // namespace switchyard::serve
