// A tiktoken-style tokenizer: pre-tokenizer pattern, byte-level BPE by rank (rank_bpe.h) and
// special tokens. o200k (o200k.h) is one.
//
// encode(text) treats all of the text as ordinary text, as tiktoken's encode_ordinary does: a
// special-token string such as "<|endoftext|>" in it is encoded as the bytes it is made of.
// encode_with_special_tokens(text) first cuts the text at every special-token string and gives
// each its special id, then encodes the text between them as encode() does.
//
// Invalid UTF-8 is accepted and round-trips: the pre-tokenizer (pretokenizer.h) sees each byte that
// is not part of a valid UTF-8 sequence as one character that is neither letter, mark, number nor
// whitespace (as a lone surrogate would be), and BPE encodes the original byte, so such a byte
// joins its neighbouring punctuation and decode(encode(x)) == x for every byte string x. (tiktoken
// itself only takes valid text: Python's tiktoken replaces lone surrogates with U+FFFD.)
//
// encode() reuses scratch buffers, so it is not safe to call from several threads on one object.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe_vocabulary.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/rank_bpe.h"
#include "tokenizer/special_token_matcher.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

class RankBpeTokenizer final : public Tokenizer {
 public:
  // Throws Error naming vocabulary.source if a single byte has no token, an id is above
  // kMaxTokenId, a special token's id is that of a different ordinary token, or two special tokens
  // share an id; throws Error if the pattern does not compile.
  RankBpeTokenizer(std::string name, BpeVocabulary vocabulary);

  std::string name() const override { return name_; }
  int vocab_size() const override { return static_cast<int>(token_bytes_.size()); }
  int end_of_text() const override { return end_of_text_; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::vector<int32_t> encode_with_special_tokens(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;

  // The bytes of token `id` (a special token's text for a special token); throws Error if there is
  // no such token.
  const std::string& token_bytes(int32_t id) const;

 private:
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;
  void build_token_table(const BpeVocabulary& vocabulary);

  std::string name_;
  RankMap ranks_;
  // id -> bytes; an empty string marks an id that no token has.
  std::vector<std::string> token_bytes_;
  int32_t end_of_text_ = -1;
  Pretokenizer pretokenizer_;
  RankBpe bpe_;
  SpecialTokenMatcher specials_;
  mutable std::vector<Chunk> chunks_;
};

}  // namespace switchyard::tokenizer
