// GPT-2's byte-level BPE tokenizer, identical in output to OpenAI's encoder.py.
//
// encode(text): split the text into chunks with GPT-2's pattern (pretokenizer.h), then encode each
// chunk's bytes by starting from one token per byte and repeatedly merging the adjacent pair with
// the lowest merge rank (every occurrence of it, left to right) until no adjacent pair has a rank.
// Special tokens such as "<|endoftext|>" in the text are encoded as ordinary text, as the reference
// does; append end_of_text() yourself to mark a document boundary.
//
// Invalid UTF-8 is accepted: the text is read as Python's bytes.decode('utf-8',
// errors='surrogateescape') reads it, so every byte that is not part of a valid UTF-8 sequence
// (stray continuation bytes, truncated sequences, overlong forms, encoded surrogates, code points
// above U+10FFFF, bytes F5..FF; see utf8.h) is one character that is neither letter, number nor
// whitespace, and BPE encodes its original byte. decode(encode(x)) == x for every byte string x.
//
// A Gpt2Tokenizer caches the ids of chunks it has seen, so encode() is not safe to call from
// several threads on one object; use one object per thread.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/gpt2_vocab.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

class Gpt2Tokenizer final : public Tokenizer {
 public:
  // See load_gpt2_vocab for the files and the errors.
  explicit Gpt2Tokenizer(const std::string& directory);

  std::string name() const override { return "gpt2"; }
  int vocab_size() const override { return static_cast<int>(vocab_.token_bytes.size()); }
  int end_of_text() const override { return vocab_.end_of_text; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;

  // The raw bytes of token `id`; throws Error if it is out of range.
  const std::string& token_bytes(int32_t id) const;

 private:
  // Appends the BPE ids of one chunk to `out`, from the cache when it holds them.
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;
  // The merge loop itself (no cache).
  void apply_merges(std::string_view chunk, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct CacheEntry {
    uint32_t offset;  // into cache_ids_
    uint32_t count;
  };

  Gpt2Vocab vocab_;
  Gpt2Pretokenizer pretokenizer_;
  // Chunk bytes -> its ids, stored contiguously in cache_ids_. Bounded: long chunks are not cached
  // and the cache is emptied when it grows past a limit.
  mutable std::unordered_map<std::string, CacheEntry, StringHash, std::equal_to<>> cache_;
  mutable std::vector<int32_t> cache_ids_;
  // Scratch buffers reused between calls.
  mutable std::vector<Chunk> chunks_;
  struct Symbol {
    int32_t id;    // -1 once merged into its left neighbour
    int32_t prev;  // index of the previous live symbol, or -1
    int32_t next;  // index of the next live symbol, or -1
  };
  struct Candidate {
    int32_t rank;
    int32_t left;  // index of the left symbol
    int32_t left_id;
    int32_t right_id;
  };
  mutable std::vector<Symbol> symbols_;
  mutable std::vector<Candidate> heap_;
  mutable std::vector<Candidate> batch_;
};

}  // namespace switchyard::tokenizer
