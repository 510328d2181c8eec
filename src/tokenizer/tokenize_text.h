// What `switchyard tokenize` does, kept out of the CLI so that it can be tested and reused.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

// The GPT-2 vocabulary directory to use: `explicit_directory` when it is not empty, else the first
// of $SWITCHYARD_GPT2_VOCAB and ../shared/data/gpt2 (relative to the current directory) that
// exists. Throws Error listing the places tried and suggesting --vocab when none does.
std::string find_gpt2_vocab_directory(const std::string& explicit_directory);

// "gpt2" (loaded from find_gpt2_vocab_directory(vocab)), "o200k" (loaded from find_o200k_file(vocab),
// see o200k.h) or "byte"; Error otherwise.
std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, const std::string& vocab);

// Ids as decimal numbers separated by single spaces, ending in a newline.
std::string format_ids(std::span<const int32_t> ids);
// Parses whitespace-separated decimal integers (a leading '-' allowed, so that decode can name an
// out-of-range id); throws Error naming the first word that is not an integer in int32 range.
std::vector<int32_t> parse_ids(std::string_view text);

struct TokenizeOptions {
  std::string tokenizer = "gpt2";  // "gpt2", "o200k" or "byte"
  std::string vocab;               // empty: see find_gpt2_vocab_directory, find_o200k_file
  bool decode = false;
  bool special_tokens = false;     // encode with encode_with_special_tokens

};

// Encodes `input` to format_ids() text (recognising special-token strings with
// options.special_tokens), or with options.decode parses ids from `input` and returns
// the decoded bytes.
std::string run_tokenize(const TokenizeOptions& options, std::string_view input);

}  // namespace switchyard::tokenizer
