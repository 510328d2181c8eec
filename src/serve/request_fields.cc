#include "serve/request_fields.h"

#include <fmt/format.h>

#include <cmath>

#include "serve/api_error.h"

namespace switchyard::serve {

std::string json_type_name(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: return "object";
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer";
    case nlohmann::json::value_t::number_float: return "number";
    case nlohmann::json::value_t::boolean: return "boolean";
    default: return "null";
  }
}

RequestFields::RequestFields(const nlohmann::json& object, std::string path)
    : object_(object), path_(std::move(path)) {}

std::string RequestFields::path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

const nlohmann::json* RequestFields::find(const std::string& key) const {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void RequestFields::wrong_type(const std::string& key, const char* expected) const {
  throw invalid_request(fmt::format("Invalid type for '{}': expected {}, but got {} instead.", path(key), expected,
                                    json_type_name(*find(key))),
                        path(key), "invalid_type");
}

std::optional<std::string> RequestFields::string(const std::string& key) const {
  const nlohmann::json* value = find(key);
  if (!value) return std::nullopt;
  if (!value->is_string()) wrong_type(key, "a string");
  return value->get<std::string>();
}

std::optional<int64_t> RequestFields::integer(const std::string& key) const {
  const nlohmann::json* value = find(key);
  if (!value) return std::nullopt;
  if (value->is_number_integer() && !value->is_number_unsigned()) return value->get<int64_t>();
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      throw invalid_request(fmt::format("Invalid '{}': {} is too large.", path(key), u), path(key), "invalid_value");
    }
    return static_cast<int64_t>(u);
  }
  wrong_type(key, "an integer");
}

std::optional<double> RequestFields::number(const std::string& key) const {
  const nlohmann::json* value = find(key);
  if (!value) return std::nullopt;
  if (!value->is_number()) wrong_type(key, "a number");
  const double number = value->get<double>();
  if (!std::isfinite(number)) {
    throw invalid_request(fmt::format("Invalid '{}': expected a finite number.", path(key)), path(key), "invalid_value");
  }
  return number;
}

std::optional<bool> RequestFields::boolean(const std::string& key) const {
  const nlohmann::json* value = find(key);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) wrong_type(key, "a boolean");
  return value->get<bool>();
}

}  // namespace switchyard::serve
