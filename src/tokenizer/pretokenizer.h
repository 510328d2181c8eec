// GPT-2's pre-tokenizer: splits text into the chunks that BPE then encodes one at a time.
//
// The chunks are the matches, in order, of GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// run by PCRE2 (compiled once, UTF + UCP, JIT when available) as Python's regex.findall runs it in
// OpenAI's encoder. Two things keep the result identical to that reference on any byte string:
//
// - Invalid UTF-8. The reference reads bytes with errors='surrogateescape': each byte outside a
//   valid sequence (utf8.h has the exact rules) becomes a lone surrogate, which the pattern classes
//   as "other" (not letter, number or whitespace). PCRE2 rejects invalid UTF-8, so such input is
//   transcoded first: each invalid byte becomes U+E000 (private use, also "other"), and chunk
//   offsets are mapped back to the original bytes.
// - Unicode versions. The character classes come from PCRE2's tables, which can be older than those
//   of the regex module; the code points on which the two disagree (letters and numbers added in
//   Unicode 15.0, and U+180E, which PCRE2 counts as whitespace and Unicode no longer does) are
//   transcoded to a stand-in of the reference's class. tests/data/tokenizer_unicode_classes.txt
//   holds the reference class of every code point and the tests check all of them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::tokenizer {

// Byte offsets [begin, end) of one chunk in the text given to split().
struct Chunk {
  size_t begin;
  size_t end;
};

class Gpt2Pretokenizer {
 public:
  // Compiles the pattern; throws Error if PCRE2 cannot. The JIT is used when PCRE2 has one, unless
  // use_jit is false (the interpreter gives the same chunks, more slowly; tests compare the two).
  explicit Gpt2Pretokenizer(bool use_jit = true);
  ~Gpt2Pretokenizer();
  Gpt2Pretokenizer(const Gpt2Pretokenizer&) = delete;
  Gpt2Pretokenizer& operator=(const Gpt2Pretokenizer&) = delete;

  // Replaces `chunks` with the chunks of `text` (any bytes), in order. Consecutive chunks touch and
  // together cover the whole text. Not safe to call concurrently on one object (it reuses buffers).
  void split(std::string_view text, std::vector<Chunk>& chunks) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::tokenizer
