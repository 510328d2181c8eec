#include "serve/request_inputs.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

ChatRole role_from(const RequestFields& fields, const std::string& name) {
  if (name == "system") return ChatRole::kSystem;
  if (name == "developer") return ChatRole::kDeveloper;
  if (name == "user") return ChatRole::kUser;
  if (name == "assistant") return ChatRole::kAssistant;
  throw invalid_request(fmt::format("Invalid value for '{}': '{}' is not a supported role (system, developer, user "
                                    "or assistant; this server runs no tools).",
                                    fields.path("role"), name),
                        fields.path("role"), "invalid_value");
}

// A message's "content": a string, or an array of {"type": "text", "text": ...} parts.
std::string content_of(const RequestFields& fields, ChatRole role) {
  const json* content = fields.find("content");
  if (!content) {
    if (role == ChatRole::kAssistant) return "";  // an assistant turn may carry no text
    throw invalid_request(fmt::format("Missing required parameter: '{}'.", fields.path("content")),
                          fields.path("content"), "missing_required_parameter");
  }
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) fields.wrong_type("content", "a string or an array of text parts");
  std::string text;
  for (size_t i = 0; i < content->size(); ++i) {
    const json& part = (*content)[i];
    const std::string path = fmt::format("{}[{}]", fields.path("content"), i);
    if (!part.is_object()) {
      throw invalid_request(fmt::format("Invalid type for '{}': expected an object, but got {} instead.", path,
                                        json_type_name(part)),
                            path, "invalid_type");
    }
    const RequestFields part_fields(part, path);
    const std::optional<std::string> type = part_fields.string("type");
    if (type != "text") {
      throw invalid_request(fmt::format("Invalid value for '{}': only text parts are supported, not '{}'.",
                                        part_fields.path("type"), type.value_or("(none)")),
                            part_fields.path("type"), "invalid_value");
    }
    const std::optional<std::string> part_text = part_fields.string("text");
    if (!part_text) {
      throw invalid_request(fmt::format("Missing required parameter: '{}'.", part_fields.path("text")),
                            part_fields.path("text"), "missing_required_parameter");
    }
    text += *part_text;
  }
  return text;
}

}  // namespace

void read_prompt(const RequestFields& fields, const ServedModelLimits& limits, ApiRequest& request) {
  const json* prompt = fields.find("prompt");
  if (!prompt) throw invalid_request("You must provide a prompt.", "prompt", "missing_required_parameter");
  if (prompt->is_string()) {
    request.prompt_text = prompt->get<std::string>();
    return;
  }
  if (!prompt->is_array()) fields.wrong_type("prompt", "a string or an array");
  if (prompt->empty()) throw invalid_request("Invalid 'prompt': the array is empty.", "prompt", "invalid_value");
  if (prompt->size() == 1 && prompt->front().is_string()) {
    request.prompt_text = prompt->front().get<std::string>();
    return;
  }
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& item = (*prompt)[i];
    if (item.is_string() || item.is_array()) {
      throw invalid_request(
          "Invalid 'prompt': this server takes one prompt per request (a string, an array of token ids, or an "
          "array of one string); send several prompts as several requests.",
          "prompt", "invalid_value");
    }
    if (!item.is_number_integer()) {
      throw invalid_request(fmt::format("Invalid type for 'prompt[{}]': expected an integer token id, but got {} "
                                        "instead.",
                                        i, json_type_name(item)),
                            "prompt", "invalid_type");
    }
    const bool in_range = item.is_number_unsigned() ? item.get<uint64_t>() < static_cast<uint64_t>(limits.vocab_size)
                                                    : item.get<int64_t>() >= 0 &&
                                                          item.get<int64_t>() < limits.vocab_size;
    if (!in_range) {
      throw invalid_request(fmt::format("Invalid 'prompt[{}]': token id {} is outside the model's vocabulary [0, {}).",
                                        i, item.dump(), limits.vocab_size),
                            "prompt", "invalid_value");
    }
    request.prompt_tokens.push_back(static_cast<int32_t>(item.get<int64_t>()));
  }
}

void read_messages(const RequestFields& fields, ApiRequest& request) {
  const json* messages = fields.find("messages");
  if (!messages) throw invalid_request("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
  if (!messages->is_array()) fields.wrong_type("messages", "an array");
  if (messages->empty()) {
    throw invalid_request("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages",
                          "empty_array");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    const std::string path = fmt::format("messages[{}]", i);
    if (!message.is_object()) {
      throw invalid_request(fmt::format("Invalid type for '{}': expected an object, but got {} instead.", path,
                                        json_type_name(message)),
                            path, "invalid_type");
    }
    const RequestFields message_fields(message, path);
    const std::optional<std::string> role = message_fields.string("role");
    if (!role) {
      throw invalid_request(fmt::format("Missing required parameter: '{}.role'.", path), path + ".role",
                            "missing_required_parameter");
    }
    ChatMessage parsed;
    parsed.role = role_from(message_fields, *role);
    parsed.content = content_of(message_fields, parsed.role);
    request.messages.push_back(std::move(parsed));
  }
}

}  // namespace switchyard::serve
