#include "tokenizer/tokenizer.h"

#include "core/error.h"

namespace switchyard::tokenizer {

std::vector<int32_t> Tokenizer::encode_with_special_tokens(std::string_view) const {
  fail("the {} tokenizer has no special tokens to recognise in text; use plain encoding", name());
}

}  // namespace switchyard::tokenizer
