// Reads tiktoken's .tiktoken ranks files: one token per line, its bytes in base64, a space, its rank.
#pragma once

#include <string>

#include "tokenizer/bpe_vocabulary.h"
#include "tokenizer/rank_bpe.h"

namespace switchyard::tokenizer {

// Throws Error naming the file (and line) when it is missing, empty or malformed: a line that is
// not "<base64> <rank>", a rank outside [0, kMaxTokenId], or a token or rank given twice.
RankMap read_tiktoken_ranks(const std::string& path);

}  // namespace switchyard::tokenizer
