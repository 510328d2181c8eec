#include "tokenizer/harmony_schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <vector>

namespace switchyard::tokenizer {
namespace {

using Json = nlohmann::ordered_json;

// The string at schema[key], or nullptr when the schema is not an object or the field is not a
// string.
const std::string* string_field(const Json& schema, const char* key) {
  if (!schema.is_object()) return nullptr;
  const auto it = schema.find(key);
  return it != schema.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

const Json* field(const Json& schema, const char* key) {
  if (!schema.is_object()) return nullptr;
  const auto it = schema.find(key);
  return it != schema.end() ? &*it : nullptr;
}

bool is_enum(const Json& schema) {
  const Json* values = field(schema, "enum");
  return values != nullptr && values->is_array() && !values->empty();
}

bool is_nullable(const Json& schema) {
  const Json* nullable = field(schema, "nullable");
  return nullable != nullptr && nullable->is_boolean() && nullable->get<bool>();
}

// A string default is quoted unless the schema is an enum (whose values are already literals).
std::string default_comment(const Json& value, bool enum_schema) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    return enum_schema ? "default: " + text : "default: \"" + text + "\"";
  }
  return "default: " + value.dump();
}

// A variant's type with " | null" added when it is nullable and does not say null already.
std::string variant_type(const Json& variant, const std::string& indent) {
  std::string type = schema_to_typescript(variant, indent);
  if (is_nullable(variant) && type.find("null") == std::string::npos) type += " | null";
  return type;
}

// Trailing " // description default: ..." of a oneOf variant; `skip_description` when the
// property's own description stands above it.
std::string variant_comments(const Json& variant, const std::string* property_description,
                             bool skip_description) {
  std::vector<std::string> comments;
  const std::string* description = string_field(variant, "description");
  if (!skip_description && description != nullptr &&
      (property_description == nullptr || *description != *property_description)) {
    comments.push_back(*description);
  }
  if (const Json* value = field(variant, "default")) comments.push_back(default_comment(*value, is_enum(variant)));
  return comments.empty() ? "" : " // " + fmt::to_string(fmt::join(comments, " "));
}

// A schema that is itself a oneOf: each variant on a line of its own, starting with " | ".
std::string one_of_union(const Json& variants, const std::string& indent) {
  std::string out;
  for (const Json& variant : variants) {
    out += "\n" + indent + " | " + variant_type(variant, indent + "   ");
    out += variant_comments(variant, nullptr, false);
  }
  return out;
}

// A property whose schema is a oneOf: comments, then "name:" and the variants one per line.
std::string one_of_property(const std::string& key, const Json& property, bool required,
                            const std::string& indent) {
  const Json& variants = property["oneOf"];
  const std::string* description = string_field(property, "description");
  const std::string* first_description = variants.empty() ? nullptr : string_field(variants[0], "description");
  const bool description_above =
      description != nullptr && !(first_description != nullptr && *first_description == *description);
  std::string out;
  if (description_above) out += indent + "// " + *description + "\n";
  if (const Json* value = field(property, "default")) {
    out += indent + "// " + default_comment(*value, is_enum(property)) + "\n";
  }
  out += indent + key + (required ? "" : "?") + ":\n";
  for (size_t i = 0; i < variants.size(); ++i) {
    out += indent + " | " + variant_type(variants[i], indent + "   ");
    out += variant_comments(variants[i], description, i == 0 && description_above);
    out += "\n";
  }
  return out + indent + ",\n";
}

std::string object_type(const Json& schema, const std::string& indent) {
  std::string out;
  if (const std::string* description = string_field(schema, "description")) {
    out += indent + "// " + *description + "\n";
  }
  out += "{\n";
  const Json* properties = field(schema, "properties");
  if (properties != nullptr && properties->is_object()) {
    std::vector<std::string> required;
    if (const Json* names = field(schema, "required"); names != nullptr && names->is_array()) {
      for (const Json& name : *names) {
        if (name.is_string()) required.push_back(name.get<std::string>());
      }
    }
    for (const auto& [key, property] : properties->items()) {
      const bool is_required = std::find(required.begin(), required.end(), key) != required.end();
      const Json* one_of = field(property, "oneOf");
      if (const std::string* title = string_field(property, "title")) {
        out += indent + "// " + *title + "\n" + indent + "//\n";
      }
      if (one_of == nullptr) {
        if (const std::string* description = string_field(property, "description")) {
          out += indent + "// " + *description + "\n";
        }
      }
      if (const Json* examples = field(property, "examples"); examples != nullptr && examples->is_array() &&
                                                                !examples->empty()) {
        out += indent + "// Examples:\n";
        for (const Json& example : *examples) {
          if (example.is_string()) out += indent + "// - \"" + example.get<std::string>() + "\"\n";
        }
      }
      if (one_of != nullptr && one_of->is_array()) {
        out += one_of_property(key, property, is_required, indent);
        continue;
      }
      out += indent + key + (is_required ? "" : "?") + ": " + variant_type(property, indent + "    ") + ",";
      if (one_of == nullptr) {
        if (const Json* value = field(property, "default")) out += " // " + default_comment(*value, is_enum(property));
      }
      out += "\n";
    }
  }
  return out + indent + "}";
}

std::string named_type(const std::string& type, const Json& schema, const std::string& indent) {
  if (type == "object") return object_type(schema, indent);
  if (type == "string") {
    std::vector<std::string> literals;
    if (const Json* values = field(schema, "enum"); values != nullptr && values->is_array()) {
      for (const Json& value : *values) {
        if (value.is_string()) literals.push_back(fmt::format("\"{}\"", value.get_ref<const std::string&>()));
      }
    }
    return literals.empty() ? "string" : fmt::to_string(fmt::join(literals, " | "));
  }
  if (type == "number" || type == "integer") return "number";
  if (type == "boolean") return "boolean";
  if (type == "array") {
    const Json* items = field(schema, "items");
    return items != nullptr ? schema_to_typescript(*items, indent) + "[]" : "Array<any>";
  }
  return "any";
}

}  // namespace

std::string schema_to_typescript(const Json& schema, const std::string& indent) {
  if (const Json* one_of = field(schema, "oneOf"); one_of != nullptr && one_of->is_array()) {
    return one_of_union(*one_of, indent);
  }
  const Json* type = field(schema, "type");
  if (type == nullptr) return "any";
  if (type->is_array()) {
    std::vector<std::string> names;
    for (const Json& name : *type) {
      if (name.is_string()) names.push_back(name == "integer" ? "number" : name.get<std::string>());
    }
    if (!names.empty()) return fmt::to_string(fmt::join(names, " | "));
  }
  return type->is_string() ? named_type(type->get<std::string>(), schema, indent) : "any";
}

}  // namespace switchyard::tokenizer
