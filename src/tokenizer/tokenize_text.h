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

// "gpt2" (loaded from find_gpt2_vocab_directory(vocab_directory)) or "byte"; Error otherwise.
std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, const std::string& vocab_directory);

// Ids as decimal numbers separated by single spaces, ending in a newline.
std::string format_ids(std::span<const int32_t> ids);
// Parses whitespace-separated decimal integers (a leading '-' allowed, so that decode can name an
// out-of-range id); throws Error naming the first word that is not an integer in int32 range.
std::vector<int32_t> parse_ids(std::string_view text);

struct TokenizeOptions {
  std::string tokenizer = "gpt2";  // "gpt2" or "byte"
  std::string vocab_directory;     // empty: see find_gpt2_vocab_directory
  bool decode = false;
};

// Encodes `input` to format_ids() text, or with options.decode parses ids from `input` and returns
// the decoded bytes.
std::string run_tokenize(const TokenizeOptions& options, std::string_view input);

}  // namespace switchyard::tokenizer
