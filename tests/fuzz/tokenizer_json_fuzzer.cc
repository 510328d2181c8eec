// libFuzzer target: parse_hf_tokenizer_json must accept or reject any bytes with switchyard::Error,
// never crash, hang or throw anything else. A vocabulary it accepts is held to its promises (ids in
// range and distinct), then made into the tokenizer that load_o200k_tokenizer would make, which
// must encode the input itself (any bytes) so that decoding gives them back, with and without
// special tokens. Errors from the tokenizer are allowed too: a vocabulary may lack a single byte,
// and a file's pattern may skip text.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/rank_bpe_tokenizer.h"

namespace {

using namespace switchyard::tokenizer;

void check_ids(const BpeVocabulary& vocabulary) {
  std::unordered_set<int32_t> ids;
  for (const auto& [bytes, id] : vocabulary.ranks) {
    if (bytes.empty() || id < 0 || id > kMaxTokenId || !ids.insert(id).second) __builtin_trap();
  }
  for (const SpecialToken& special : vocabulary.specials) {
    if (special.text.empty() || special.id < 0 || special.id > kMaxTokenId || !ids.insert(special.id).second) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    BpeVocabulary vocabulary = parse_hf_tokenizer_json(input, "fuzz-input");
    check_ids(vocabulary);
    const RankBpeTokenizer tokenizer("fuzz", std::move(vocabulary));
    if (tokenizer.decode(tokenizer.encode(input)) != input) __builtin_trap();
    if (tokenizer.decode(tokenizer.encode_with_special_tokens(input)) != input) __builtin_trap();
  } catch (const switchyard::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
