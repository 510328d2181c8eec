// A rank-ordered byte-level BPE vocabulary with special tokens, as read from a .tiktoken file or a
// Hugging Face tokenizer.json (tiktoken_file.h, hf_tokenizer_json.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/rank_bpe.h"

namespace switchyard::tokenizer {

// The largest id the readers accept. Token tables are indexed by id (rank_bpe_tokenizer.h), so a
// file's largest id sizes one: a few bytes of file could otherwise claim gigabytes. The largest
// published vocabularies hold about 2^18 tokens; 2^20 leaves four times that, in a table of 32 MB.
inline constexpr int32_t kMaxTokenId = (1 << 20) - 1;

struct SpecialToken {
  std::string text;  // e.g. "<|endoftext|>"
  int32_t id;
};

struct BpeVocabulary {
  std::string source;                  // the file it came from (for messages)
  RankMap ranks;                       // token bytes -> rank = token id
  std::vector<SpecialToken> specials;  // ids distinct from every rank
  std::string pattern;                 // pre-tokenizer pattern (PCRE2 syntax)
};

}  // namespace switchyard::tokenizer
