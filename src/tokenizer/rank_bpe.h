// Byte-pair encoding by rank, as tiktoken does it (o200k and other .tiktoken vocabularies).
//
// A vocabulary is a set of byte strings, each with a rank that is also its token id. A chunk of
// text (one pre-tokenizer match) that is itself in the vocabulary is that one token. Otherwise it
// starts as one token per byte and, while any two neighbours concatenate to a byte string in the
// vocabulary, the neighbouring pair whose concatenation has the lowest rank is merged (the
// leftmost such pair when a rank occurs more than once).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace switchyard::tokenizer {

struct BytesHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Token bytes -> rank. Looked up with string_views of the text, without copying.
using RankMap = std::unordered_map<std::string, int32_t, BytesHash, std::equal_to<>>;

// Encodes chunks with one vocabulary. Holds scratch buffers, so one object serves one thread.
class RankBpe {
 public:
  // `ranks` must outlive this object and hold every single byte that encode() will see.
  explicit RankBpe(const RankMap& ranks) : ranks_(ranks) {}

  // Appends the ids of `chunk` (not empty) to `out`. Throws Error if a byte of it has no rank.
  void encode(std::string_view chunk, std::vector<int32_t>& out) const;

 private:
  // The rank of bytes [begin, end) of the chunk being merged, or -1.
  int32_t rank_of(std::string_view chunk, size_t begin, size_t end) const;
  void merge(std::string_view chunk, std::vector<int32_t>& out) const;

  // A candidate merge of the parts [start, mid) and [mid, end).
  struct Candidate {
    int32_t rank;
    uint32_t start;
    uint32_t mid;
    uint32_t end;
  };

  const RankMap& ranks_;
  // Scratch reused between calls, indexed by the byte offset where a part starts: its end (0 once
  // the part has been merged into its left neighbour) and where its left neighbour starts.
  mutable std::vector<uint32_t> part_end_;
  mutable std::vector<uint32_t> part_prev_;
  mutable std::vector<Candidate> heap_;
};

}  // namespace switchyard::tokenizer
