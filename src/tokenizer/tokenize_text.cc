#include "tokenizer/tokenize_text.h"

#include <charconv>

#include "core/error.h"
#include "tokenizer/data_path.h"
#include "tokenizer/o200k.h"

namespace switchyard::tokenizer {

std::string find_gpt2_vocab_directory(const std::string& explicit_directory) {
  return find_data_path(explicit_directory,
                        {.env = "SWITCHYARD_GPT2_VOCAB",
                         .relative = "../shared/data/gpt2",
                         .directory = true,
                         .what = "GPT-2 vocabulary directory",
                         .hint = "pass --vocab DIR (a directory holding encoder.json + vocab.bpe or "
                                 "vocab.json + merges.txt)"});
}

std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name, const std::string& vocab) {
  if (name == "gpt2") return load_gpt2_tokenizer(find_gpt2_vocab_directory(vocab));
  if (name == "o200k") return load_o200k_tokenizer(find_o200k_file(vocab));
  if (name == "byte") return make_byte_tokenizer();
  fail("unknown tokenizer \"{}\"; expected gpt2, o200k or byte", name);
}

std::string format_ids(std::span<const int32_t> ids) {
  std::string out;
  out.reserve(ids.size() * 6 + 1);
  char buffer[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out.push_back(' ');
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, ids[i]);
    out.append(buffer, result.ptr);
  }
  out.push_back('\n');
  return out;
}

std::vector<int32_t> parse_ids(std::string_view text) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  std::vector<int32_t> ids;
  size_t i = 0;
  while (true) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    const std::string_view word = text.substr(start, i - start);
    int32_t id = 0;
    const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), id);
    require(error != std::errc::result_out_of_range,
            "token id \"{}\" (word {}) is out of range for a 32-bit integer", word, ids.size() + 1);
    require(error == std::errc() && end == word.data() + word.size(),
            "\"{}\" (word {}) is not a token id; expected whitespace-separated integers", word,
            ids.size() + 1);
    ids.push_back(id);
  }
  return ids;
}

std::string run_tokenize(const TokenizeOptions& options, std::string_view input) {
  const auto tokenizer = make_tokenizer(options.tokenizer, options.vocab);
  if (options.decode) return tokenizer->decode(parse_ids(input));
  return format_ids(options.special_tokens ? tokenizer->encode_with_special_tokens(input)
                                           : tokenizer->encode(input));
}

}  // namespace switchyard::tokenizer
