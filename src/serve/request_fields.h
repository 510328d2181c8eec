// Typed reads of one JSON object of a request body. A field that is absent or null reads as
// nullopt (OpenAI's API takes null for "not given"); a field of the wrong type throws ApiError
// (400) naming it by its path, such as "messages[2].content".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace switchyard::serve {

// "object", "array", "string", "integer", "number", "boolean" or "null": how errors name a type.
std::string json_type_name(const nlohmann::json& value);

class RequestFields {
 public:
  // `path` is the object's own path ("" for the body, "messages[0]" for a message).
  RequestFields(const nlohmann::json& object, std::string path);

  // The field's path, as errors name it.
  std::string path(const std::string& key) const;
  // The field, or nullptr when it is absent or null.
  const nlohmann::json* find(const std::string& key) const;

  std::optional<std::string> string(const std::string& key) const;
  std::optional<int64_t> integer(const std::string& key) const;
  std::optional<double> number(const std::string& key) const;
  std::optional<bool> boolean(const std::string& key) const;

  // Throws "Invalid type for '{path}': expected {expected}, but got {type} instead."
  [[noreturn]] void wrong_type(const std::string& key, const char* expected) const;

 private:
  const nlohmann::json& object_;
  std::string path_;
};

}  // namespace switchyard::serve
