// Text <-> token ids. Three tokenizers: GPT-2's byte-level BPE, o200k (gpt-oss's o200k_harmony,
// byte-level BPE by rank with chat-format special tokens) and a plain byte tokenizer.
//
// decode() returns raw bytes: a token may end in the middle of a UTF-8 character, and streaming
// its bytes to a terminal reassembles the text.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // "gpt2", "o200k" or "byte".
  virtual std::string name() const = 0;
  virtual int vocab_size() const = 0;
  // The end-of-text token id, or -1 when the vocabulary has none.
  virtual int end_of_text() const = 0;
  // Encodes any byte string (invalid UTF-8 included; see gpt2_tokenizer.h and
  // rank_bpe_tokenizer.h for how) as plain text: special-token strings are encoded as their bytes.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Like encode, but special-token strings in the text (such as "<|start|>") become their special
  // ids. Throws Error for tokenizers that have no special tokens to recognise (gpt2 and byte).
  virtual std::vector<int32_t> encode_with_special_tokens(std::string_view text) const;
  // Exact inverse of encode; throws Error naming the first id outside [0, vocab_size).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
};

// GPT-2 BPE from a directory holding encoder.json + vocab.bpe (OpenAI's names) or vocab.json +
// merges.txt (Hugging Face's names). Throws Error naming a missing or malformed file.
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& directory);
// o200k_harmony (gpt-oss's tokenizer) from a tiktoken ranks file (o200k_base.tiktoken) or, when
// `path` ends in ".json", a Hugging Face tokenizer.json. See o200k.h.
std::unique_ptr<Tokenizer> load_o200k_tokenizer(const std::string& path);
// Vocabulary of 256: token id = byte value.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

}  // namespace switchyard::tokenizer
