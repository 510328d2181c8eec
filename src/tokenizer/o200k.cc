#include "tokenizer/o200k.h"

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/data_path.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/rank_bpe_tokenizer.h"
#include "tokenizer/tiktoken_file.h"

namespace switchyard::tokenizer {

namespace {

constexpr int kFirstSpecialId = 199998;

struct NamedSpecial {
  const char* text;
  int32_t id;
};
constexpr NamedSpecial kNamedSpecials[] = {
    {"<|startoftext|>", 199998}, {"<|endoftext|>", 199999}, {"<|return|>", 200002},
    {"<|constrain|>", 200003},   {"<|channel|>", 200005},   {"<|start|>", 200006},
    {"<|end|>", 200007},         {"<|message|>", 200008},   {"<|call|>", 200012},
    {"<|endofprompt|>", 200018},
};

bool ends_with_json(const std::string& path) { return path.size() >= 5 && path.ends_with(".json"); }

}  // namespace

std::vector<SpecialToken> o200k_harmony_special_tokens() {
  std::vector<SpecialToken> specials;
  for (int32_t id = kFirstSpecialId; id < kO200kVocabSize; ++id) {
    std::string text = fmt::format("<|reserved_{}|>", id);
    for (const NamedSpecial& named : kNamedSpecials) {
      if (named.id == id) text = named.text;
    }
    specials.push_back({std::move(text), id});
  }
  return specials;
}

std::string find_o200k_file(const std::string& explicit_path) {
  return find_data_path(explicit_path,
                        {.env = "SWITCHYARD_O200K",
                         .relative = "../shared/data/o200k/o200k_base.tiktoken",
                         .what = "o200k ranks file",
                         .hint = "pass --vocab FILE (o200k_base.tiktoken, or a gpt-oss tokenizer.json)"});
}

std::unique_ptr<Tokenizer> load_o200k_tokenizer(const std::string& path) {
  if (ends_with_json(path)) return std::make_unique<RankBpeTokenizer>("o200k", read_hf_tokenizer_json(path));
  BpeVocabulary vocabulary;
  vocabulary.source = path;
  vocabulary.ranks = read_tiktoken_ranks(path);
  vocabulary.specials = o200k_harmony_special_tokens();
  vocabulary.pattern = kO200kPattern;
  return std::make_unique<RankBpeTokenizer>("o200k", std::move(vocabulary));
}

}  // namespace switchyard::tokenizer
