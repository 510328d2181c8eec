// Reads a byte-level BPE vocabulary from a Hugging Face tokenizer.json (as gpt-oss checkpoints ship).
//
// Used: model.type "BPE"; model.vocab, token strings spelled in GPT-2's byte alphabet
// (byte_level.h) mapped to ids; added_tokens (each {"id", "content"}) as the special tokens; and the
// pre_tokenizer: a ByteLevel one, alone (GPT-2's pattern) or in a Sequence after a Split by a regex
// ("Isolated", not inverted; that regex becomes the pattern).
//
// model.merges is not read: the ids serve as merge ranks, which is exact for vocabularies converted
// from tiktoken ranks (gpt-oss's o200k_harmony), whose merge list is in rank order.
#pragma once

#include <string>

#include "tokenizer/bpe_vocabulary.h"

namespace switchyard::tokenizer {

// Throws Error naming the file and the field when the file is missing, is not such a tokenizer, or
// a token, id or added token is malformed.
BpeVocabulary read_hf_tokenizer_json(const std::string& path);

}  // namespace switchyard::tokenizer
