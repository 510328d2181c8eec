// JSON schema -> the TypeScript-like type text that harmony uses to declare a function's argument
// (`type get_weather = (_: {...}) => any;`), following OpenAI's harmony renderer: object properties
// one per line with descriptions, titles and examples as `//` comments above them, `?` after
// optional ones and `// default: ...` after them; string enums as unions of literals; integers as
// number; arrays as `T[]`; `nullable` as `| null`; oneOf as a union, one variant per line. Anything
// else is `any`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace switchyard::tokenizer {

// The type text of `schema`, its continuation lines indented by `indent`.
std::string schema_to_typescript(const nlohmann::ordered_json& schema, const std::string& indent);

}  // namespace switchyard::tokenizer
