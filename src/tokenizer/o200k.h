// o200k_harmony, the tokenizer of OpenAI's gpt-oss models: o200k_base's ranks and pre-tokenizer
// pattern (rank_bpe_tokenizer.h) plus the harmony chat-format special tokens.
//
// The ranks come from tiktoken's o200k_base.tiktoken (../shared/data/o200k holds a copy) or from
// the tokenizer.json that a gpt-oss checkpoint ships. Special tokens (ids): <|startoftext|> 199998,
// <|endoftext|> 199999, <|return|> 200002, <|constrain|> 200003, <|channel|> 200005, <|start|>
// 200006, <|end|> 200007, <|message|> 200008, <|call|> 200012, <|endofprompt|> 200018, and
// <|reserved_N|> for every other id from 200000 to 201087. vocab_size() is 201088.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/bpe_vocabulary.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {

inline constexpr int kO200kVocabSize = 201088;
inline constexpr int kO200kEndOfText = 199999;

// The special tokens listed above, in id order.
std::vector<SpecialToken> o200k_harmony_special_tokens();

// The o200k file to use: `explicit_path` when it is not empty, else $SWITCHYARD_O200K when set,
// else ../shared/data/o200k/o200k_base.tiktoken (relative to the current directory). Throws Error
// listing the places tried and suggesting --vocab when the file does not exist.
std::string find_o200k_file(const std::string& explicit_path);

}  // namespace switchyard::tokenizer
