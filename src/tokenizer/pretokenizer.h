// Pre-tokenizers: split text into the chunks that BPE then encodes one at a time.
//
// The chunks are the matches, in order, of a pattern (GPT-2's or o200k's, below) run by PCRE2
// (compiled once, UTF + UCP, JIT when available) as Python's regex.findall runs it in OpenAI's
// encoders. Two things keep the result identical to that reference on any byte string:
//
// - Invalid UTF-8. The GPT-2 reference reads bytes with errors='surrogateescape': each byte outside
//   a valid sequence (utf8.h has the exact rules) becomes a lone surrogate, which the patterns class
//   as "other" (not letter, mark, number or whitespace). PCRE2 rejects invalid UTF-8, so such input
//   is transcoded first: each invalid byte becomes U+E000 (private use, also "other"), and chunk
//   offsets are mapped back to the original bytes.
// - Unicode versions. The character classes come from PCRE2's tables, which can be older than those
//   of the reference; the code points on which the two disagree (letters and numbers added in
//   Unicode 15.0, and U+180E, which PCRE2 counts as whitespace and Unicode no longer does) are
//   transcoded to a stand-in of the reference's class. tests/data/tokenizer_unicode_classes.txt
//   holds the reference class of every code point and the tests check all of them. Marks (\p{M},
//   which only the o200k pattern uses) added after PCRE2's Unicode version are not corrected.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::tokenizer {

// GPT-2's pattern.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// o200k_base's pattern, as tiktoken gives it: words keep one leading non-letter and split at
// lower-to-upper case changes, with English contractions in any case; numbers go in runs of 1-3
// digits; punctuation runs take trailing newlines and slashes.
inline constexpr std::string_view kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Byte offsets [begin, end) of one chunk in the text given to split().
struct Chunk {
  size_t begin;
  size_t end;
};

class Pretokenizer {
 public:
  // Compiles `pattern`, which must match at least one character at every position of any text
  // (split() throws Error where it does not); throws Error if PCRE2 cannot compile it or it uses
  // \C (one byte of a character). The JIT is used when PCRE2 has one, unless use_jit is false (the
  // interpreter gives the same chunks, more slowly; tests compare the two).
  explicit Pretokenizer(std::string_view pattern, bool use_jit = true);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Replaces `chunks` with the chunks of `text` (any bytes), in order. Consecutive chunks touch and
  // together cover the whole text. Not safe to call concurrently on one object (it reuses buffers).
  void split(std::string_view text, std::vector<Chunk>& chunks) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The pre-tokenizer of GPT-2's encoder.py.
class Gpt2Pretokenizer : public Pretokenizer {
 public:
  explicit Gpt2Pretokenizer(bool use_jit = true) : Pretokenizer(kGpt2Pattern, use_jit) {}
};

}  // namespace switchyard::tokenizer
