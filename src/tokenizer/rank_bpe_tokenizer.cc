#include "tokenizer/rank_bpe_tokenizer.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::tokenizer {

RankBpeTokenizer::RankBpeTokenizer(std::string name, BpeVocabulary vocabulary)
    : name_(std::move(name)),
      ranks_(std::move(vocabulary.ranks)),
      pretokenizer_(vocabulary.pattern),
      bpe_(ranks_),
      specials_(vocabulary.specials) {
  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    if (!ranks_.contains(std::string_view(&byte, 1))) {
      fail("{}: the single byte 0x{:02X} has no token; a byte-level vocabulary needs all 256",
           vocabulary.source, b);
    }
  }
  build_token_table(vocabulary);
}

void RankBpeTokenizer::build_token_table(const BpeVocabulary& vocabulary) {
  int32_t largest = -1;
  for (const auto& [bytes, rank] : ranks_) largest = std::max(largest, rank);
  for (const SpecialToken& special : vocabulary.specials) largest = std::max(largest, special.id);
  require(largest <= kMaxTokenId, "{}: token id {} is above the largest supported, {}", vocabulary.source,
          largest, kMaxTokenId);
  token_bytes_.assign(static_cast<size_t>(largest) + 1, std::string());
  for (const auto& [bytes, rank] : ranks_) token_bytes_[static_cast<size_t>(rank)] = bytes;
  std::vector<bool> special_id(token_bytes_.size(), false);
  for (const SpecialToken& special : vocabulary.specials) {
    require(special.id >= 0 && !special.text.empty(), "{}: special token \"{}\" with id {} is invalid",
            vocabulary.source, special.text, special.id);
    std::string& slot = token_bytes_[static_cast<size_t>(special.id)];
    if (special_id[special.id]) {
      fail("{}: special tokens \"{}\" and \"{}\" share id {}", vocabulary.source, slot, special.text, special.id);
    }
    if (!slot.empty() && slot != special.text) {
      fail("{}: special token \"{}\" has id {}, which an ordinary token already has", vocabulary.source,
           special.text, special.id);
    }
    slot = special.text;
    special_id[special.id] = true;
    if (special.text == "<|endoftext|>") end_of_text_ = special.id;
  }
}

void RankBpeTokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
  pretokenizer_.split(text, chunks_);
  for (const Chunk& chunk : chunks_) bpe_.encode(text.substr(chunk.begin, chunk.end - chunk.begin), out);
}

std::vector<int32_t> RankBpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  encode_ordinary(text, ids);
  return ids;
}

std::vector<int32_t> RankBpeTokenizer::encode_with_special_tokens(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  size_t from = 0;
  while (const auto match = specials_.find(text, from)) {
    encode_ordinary(text.substr(from, match->begin - from), ids);
    ids.push_back(match->id);
    from = match->begin + match->length;
  }
  encode_ordinary(text.substr(from), ids);
  return ids;
}

const std::string& RankBpeTokenizer::token_bytes(int32_t id) const {
  require(id >= 0 && id < vocab_size(), "token id {} is outside the {} vocabulary [0, {})", id, name_,
          vocab_size());
  const std::string& bytes = token_bytes_[static_cast<size_t>(id)];
  require(!bytes.empty(), "token id {} is not assigned to any token in the {} vocabulary", id, name_);
  return bytes;
}

std::string RankBpeTokenizer::decode(std::span<const int32_t> ids) const {
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size() || token_bytes_[static_cast<size_t>(ids[i])].empty()) {
      fail("token id {} (position {}) is not in the {} vocabulary [0, {})", ids[i], i, name_, vocab_size());
    }
    total += token_bytes_[static_cast<size_t>(ids[i])].size();
  }
  std::string text;
  text.reserve(total);
  for (const int32_t id : ids) text += token_bytes_[static_cast<size_t>(id)];
  return text;
}

}  // namespace switchyard::tokenizer
