// Finds special-token strings (such as "<|start|>") in text, for encode_with_special_tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_vocabulary.h"

namespace switchyard::tokenizer {

class SpecialTokenMatcher {
 public:
  explicit SpecialTokenMatcher(const std::vector<SpecialToken>& specials);

  struct Match {
    size_t begin;
    size_t length;
    int32_t id;
  };
  // The first special token in `text` at or after byte `from`; at a position where several start,
  // the longest. Empty when there is none.
  std::optional<Match> find(std::string_view text, size_t from) const;

 private:
  std::unordered_map<std::string, int32_t, BytesHash, std::equal_to<>> ids_;
  std::string first_bytes_;            // the distinct first bytes of the special tokens
  std::vector<size_t> lengths_;        // their distinct lengths, longest first
};

}  // namespace switchyard::tokenizer
