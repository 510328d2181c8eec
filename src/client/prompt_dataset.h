// The prompts of a serving benchmark, read from a file: either a JSON list of prompt strings, used
// as they are, or any text, cut into consecutive pieces of about a given number of tokens.
//
// Tokens are estimated as 4 characters each (OpenAI's rule of thumb for English text), since the
// benchmark cannot know the server's tokenizer; a piece ends at a word boundary, with runs of
// whitespace written as one space. The server's own count (usage.prompt_tokens) is what the report
// uses whenever the server sends it.
#pragma once

#include <string>
#include <vector>

namespace switchyard::client {

constexpr int kCharactersPerToken = 4;

// `count` prompts from `path`: a file whose first non-blank character is '[' must be a JSON list
// of strings, repeated in order as often as `count` needs; any other file is text, cut from its
// start into pieces of about `prompt_tokens` tokens, starting over at the beginning when it runs
// out. Throws Error for an unreadable, empty or malformed file.
std::vector<std::string> load_prompts(const std::string& path, int count, int prompt_tokens);

// The same from text already in memory (`name` is used in messages).
std::vector<std::string> prompts_from_text(const std::string& text, const std::string& name, int count,
                                           int prompt_tokens);

// Tokens a prompt is estimated to hold (4 characters each, at least 1).
long estimated_tokens(const std::string& prompt);

}  // namespace switchyard::client
