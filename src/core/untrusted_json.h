// JSON from files a user hands us (checkpoint indexes, tokenizer.json), parsed by nlohmann::json
// with two refusals that its parse() lacks:
//
// - An object that names a key twice. parse() keeps the last value without a word, so the file
//   would mean something other than what a person reading it sees (a tensor placed in two shards,
//   a token given two ids).
// - Nesting deeper than a limit. Nothing we read nests more than a handful of levels, and a file of
//   a million '[' would make any later recursive walk of the value (dump, copy, comparison)
//   overflow the stack.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace switchyard {

// Nesting (objects and arrays) deeper than this is refused.
inline constexpr int kMaxUntrustedJsonDepth = 64;

// Parses `text`. Throws Error naming `where` on a repeated key or deeper nesting than `max_depth`;
// a syntax error is thrown as nlohmann's json::parse_error, for the caller to word as it words its
// other messages.
nlohmann::json parse_untrusted_json(std::string_view text, const std::string& where,
                                    int max_depth = kMaxUntrustedJsonDepth);

}  // namespace switchyard
