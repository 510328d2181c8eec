// Reads a byte-level BPE vocabulary from a Hugging Face tokenizer.json (as gpt-oss checkpoints ship).
//
// Used: model.type "BPE"; model.vocab, token strings spelled in GPT-2's byte alphabet
// (byte_level.h) mapped to ids; added_tokens (each {"id", "content"}) as the special tokens; and the
// pre_tokenizer in one of the two forms byte-level files have: a ByteLevel step that splits by
// GPT-2's pattern itself (use_regex), alone; or a Sequence of a Split by a regex ("Isolated", not
// inverted; that regex becomes the pattern) and then a ByteLevel step that only maps bytes, as in
// files converted from tiktoken ranks.
//
// The ids serve as merge ranks, which is exact for vocabularies converted from tiktoken ranks
// (gpt-oss's o200k_harmony), whose merge list is in rank order. model.merges is checked for that:
// each merge joins two vocabulary tokens into a third, and the merges come in the order of the ids
// of the tokens they make.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/bpe_vocabulary.h"

namespace switchyard::tokenizer {

// Throws Error naming the file and the field when the file is missing, is not such a tokenizer, or
// a token, id, merge or added token is malformed.
BpeVocabulary read_hf_tokenizer_json(const std::string& path);

// The same from the file's text; `where` (the file's path) names it in messages and becomes the
// vocabulary's source. A vocabulary it returns has ids in [0, kMaxTokenId], none shared, and a
// pattern that compiles.
BpeVocabulary parse_hf_tokenizer_json(std::string_view text, const std::string& where);

}  // namespace switchyard::tokenizer
