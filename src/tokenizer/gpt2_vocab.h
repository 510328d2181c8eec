// GPT-2's vocabulary and merge list, read from OpenAI's or Hugging Face's files.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace switchyard::tokenizer {

// One BPE merge: the pair (left, right) becomes `result`; lower rank merges first.
struct Gpt2Merge {
  int32_t rank;
  int32_t result;
};

struct Gpt2Vocab {
  std::string encoder_path;                // the file the vocabulary came from (for messages)
  std::vector<std::string> token_bytes;    // token id -> the raw bytes it stands for
  std::array<int32_t, 256> byte_token{};   // byte -> id of the one-byte token
  // (uint64(left) << 32 | right) -> merge. When the merge file lists a pair twice the later rank
  // holds, as in OpenAI's encoder (a dict built from the list).
  std::unordered_map<uint64_t, Gpt2Merge> merges;
  int32_t end_of_text = -1;                // id of "<|endoftext|>", or -1
};

inline uint64_t merge_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Reads <directory>/encoder.json + vocab.bpe, or else <directory>/vocab.json + merges.txt.
// Throws Error naming the directory or file when it is missing or malformed: the JSON must map
// every token (spelled in GPT-2's byte alphabet, see byte_level.h) to a distinct id, the ids must
// be exactly 0..N-1, all 256 one-byte tokens must be present, and every merge line must name two
// tokens whose concatenation is also a token.
Gpt2Vocab load_gpt2_vocab(const std::string& directory);

}  // namespace switchyard::tokenizer
