#include "tokenizer/hf_tokenizer_json.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/untrusted_json.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"

namespace switchyard::tokenizer {

namespace {

using nlohmann::json;

// The largest tokenizer.json files published (vocabularies of about 2^18 tokens with their merges)
// are under 40 MB; a file many times that size is refused before it is read into memory.
constexpr uintmax_t kMaxFileBytes = 256'000'000;

std::string read_file(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "tokenizer.json {}: no such file", path);
  const uintmax_t size = std::filesystem::file_size(path, ec);
  require(!ec, "tokenizer.json {}: cannot read its size: {}", path, ec.message());
  require(size <= kMaxFileBytes,
          "tokenizer.json {}: {} bytes, more than a tokenizer.json can be (the limit is {})", path, size,
          kMaxFileBytes);
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "tokenizer.json {}: cannot open for reading", path);
  std::ostringstream text;
  text << in.rdbuf();
  require(!in.bad(), "tokenizer.json {}: read error", path);
  return std::move(text).str();
}

// A JSON value for a message, cut short: a malformed id can be a large array.
std::string brief(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

// The id `value` holds; when it holds none, throws Error naming the field as what() does (a
// callable, so that the name is only made for the message).
template <typename What>
int32_t token_id(const json& value, const std::string& where, const What& what) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxTokenId) {
    fail("tokenizer.json {}: {}: expected an id from 0 to {}, got {}", where, what(), kMaxTokenId, brief(value));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

void read_vocab(const json& model, const std::string& where, BpeVocabulary& vocabulary) {
  require(model.is_object() && model.value("type", "BPE") == "BPE",
          "tokenizer.json {}: model.type must be \"BPE\"", where);
  require(model.contains("vocab") && model["vocab"].is_object() && !model["vocab"].empty(),
          "tokenizer.json {}: model.vocab must be a non-empty object mapping tokens to ids", where);
  std::unordered_map<int32_t, const std::string*> token_of_id;
  std::string bytes;
  for (const auto& entry : model["vocab"].items()) {
    const std::string& token = entry.key();
    const json& value = entry.value();
    const auto quoted = [&] { return json(token).dump(); };  // for messages only
    const int32_t id = token_id(value, where, [&] { return "model.vocab " + quoted(); });
    if (token.empty() || !vocab_token_to_bytes(token, bytes)) {
      fail("tokenizer.json {}: model.vocab token {} is not spelled in the byte-level alphabet", where, quoted());
    }
    if (const auto [it, added] = token_of_id.emplace(id, &token); !added) {
      fail("tokenizer.json {}: model.vocab tokens {} and {} have the same id {}", where,
           json(*it->second).dump(), quoted(), id);
    }
    // Distinct spellings stand for distinct bytes (the alphabet is one character per byte), and
    // parse_untrusted_json refuses a spelling given twice.
    vocabulary.ranks.emplace(bytes, id);
  }
}

// The id of vocabulary token `token`, or -1 when there is none.
int64_t vocab_id(const json& vocab, const std::string& token) {
  const auto it = vocab.find(token);
  return it == vocab.end() ? -1 : it->get<int64_t>();
}

// The two tokens of a merge, "a b" or ["a", "b"]; false when it is neither. "a b" splits at its
// one space: the byte-level alphabet spells a space in a token as U+0120.
bool merge_parts(const json& merge, std::string& left, std::string& right) {
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) return false;
    left = text.substr(0, space);
    right = text.substr(space + 1);
    return true;
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    left = merge[0].get<std::string>();
    right = merge[1].get<std::string>();
    return true;
  }
  return false;
}

// model.merges (after read_vocab): each "a b" or ["a", "b"] joins two vocabulary tokens into a
// third, and the merges come in the order of the ids of the tokens they make. Without that order
// the ids are not the merge ranks, and encoding would differ from the tokenizers library's.
void check_merges(const json& model, const std::string& where) {
  if (!model.contains("merges") || model["merges"].is_null()) return;
  const json& merges = model["merges"];
  require(merges.is_array(), "tokenizer.json {}: model.merges must be an array", where);
  const json& vocab = model["vocab"];
  int64_t previous_id = -1;
  std::string left, right;
  for (size_t i = 0; i < merges.size(); ++i) {
    if (!merge_parts(merges[i], left, right)) {
      fail("tokenizer.json {}: model.merges[{}] is {}; expected \"a b\" or [\"a\", \"b\"]", where, i,
           brief(merges[i]));
    }
    const int64_t id = vocab_id(vocab, left + right);
    if (vocab_id(vocab, left) < 0 || vocab_id(vocab, right) < 0 || id < 0) {
      fail("tokenizer.json {}: model.merges[{}] joins {} and {}, which are not both tokens of model.vocab "
           "with their join", where, i, json(left).dump(), json(right).dump());
    }
    if (id < previous_id) {
      fail("tokenizer.json {}: model.merges[{}] makes id {} after a merge made id {}; the merges must come "
           "in the order of the ids they make, which serve as merge ranks", where, i, id, previous_id);
    }
    previous_id = id;
  }
}

void read_added_tokens(const json& root, const std::string& where, BpeVocabulary& vocabulary) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const json& added = root["added_tokens"];
  require(added.is_array(), "tokenizer.json {}: added_tokens must be an array", where);
  std::unordered_map<std::string, size_t> index_of_content;
  std::unordered_map<int32_t, size_t> index_of_id;
  for (size_t i = 0; i < added.size(); ++i) {
    const json& token = added[i];
    const std::string at = "added_tokens[" + std::to_string(i) + "]";
    require(token.is_object() && token.contains("content") && token["content"].is_string() &&
                !token["content"].get_ref<const std::string&>().empty() && token.contains("id"),
            "tokenizer.json {}: {} must be an object with \"id\" and a non-empty \"content\"", where, at);
    SpecialToken special{token["content"].get<std::string>(), token_id(token["id"], where, [&] { return at; })};
    if (const auto [it, fresh] = index_of_content.emplace(special.text, i); !fresh) {
      fail("tokenizer.json {}: {} repeats the content of added_tokens[{}]", where, at, it->second);
    }
    if (const auto [it, fresh] = index_of_id.emplace(special.id, i); !fresh) {
      fail("tokenizer.json {}: {} has the id of added_tokens[{}], {}", where, at, it->second, special.id);
    }
    vocabulary.specials.push_back(std::move(special));
  }
}

// Some files list the added tokens in model.vocab too; they are special only, never BPE results.
// A vocabulary token with a special's id must then be that special's text.
void drop_specials_from_vocab(const std::string& where, BpeVocabulary& vocabulary) {
  std::unordered_map<int32_t, const std::string*> special_text;
  for (const SpecialToken& special : vocabulary.specials) special_text.emplace(special.id, &special.text);
  for (auto it = vocabulary.ranks.begin(); it != vocabulary.ranks.end();) {
    const auto special = special_text.find(it->second);
    if (special == special_text.end()) {
      ++it;
      continue;
    }
    if (it->first != *special->second) {
      fail("tokenizer.json {}: added token {} has id {}, which model.vocab gives to another token", where,
           json(*special->second).dump(), it->second);
    }
    it = vocabulary.ranks.erase(it);
  }
}

// A ByteLevel step: alone, it splits by GPT-2's pattern (use_regex); after a Split, it must not
// split again. Either way it may not add a space in front of the text.
void check_byte_level(const json& step, bool alone, const std::string& where) {
  require(step.value("use_regex", true) == alone && !step.value("add_prefix_space", false),
          "tokenizer.json {}: the ByteLevel pre-tokenizer {} must have use_regex {} and add_prefix_space "
          "false", where, alone ? "alone" : "after a Split", alone);
}

// The regex of a Split step, checked to compile.
std::string split_pattern(const json& step, const std::string& where) {
  require(step.contains("pattern") && step["pattern"].is_object() && step["pattern"].contains("Regex") &&
              step["pattern"]["Regex"].is_string() && step.value("behavior", "") == "Isolated" &&
              !step.value("invert", false),
          "tokenizer.json {}: only a Split pre-tokenizer by a Regex, \"Isolated\" and not inverted, is "
          "supported", where);
  std::string pattern = step["pattern"]["Regex"].get<std::string>();
  try {
    const Pretokenizer compiled(pattern, /*use_jit=*/false);
  } catch (const Error& e) {
    fail("tokenizer.json {}: the Split regex: {}", where, e.what());
  }
  return pattern;
}

std::string read_pattern(const json& root, const std::string& where) {
  require(root.contains("pre_tokenizer") && root["pre_tokenizer"].is_object(),
          "tokenizer.json {}: has no pre_tokenizer; expected a byte-level one", where);
  const json& pre = root["pre_tokenizer"];
  std::vector<const json*> steps;
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const json& step : pre["pretokenizers"]) steps.push_back(&step);
  } else {
    steps.push_back(&pre);
  }
  std::vector<std::string> types;
  for (const json* step : steps) types.push_back(step->is_object() ? step->value("type", "") : "");
  if (types == std::vector<std::string>{"ByteLevel"}) {
    check_byte_level(*steps[0], true, where);
    return std::string(kGpt2Pattern);
  }
  if (types == std::vector<std::string>{"Split", "ByteLevel"}) {
    check_byte_level(*steps[1], false, where);
    return split_pattern(*steps[0], where);
  }
  fail("tokenizer.json {}: pre-tokenizer steps [{}] are not supported; expected ByteLevel alone, or Split "
       "then ByteLevel", where, fmt::join(types, ", "));
}

}  // namespace

BpeVocabulary parse_hf_tokenizer_json(std::string_view text, const std::string& where) {
  json root;
  try {
    root = parse_untrusted_json(text, "tokenizer.json " + where);
  } catch (const json::exception& e) {
    fail("tokenizer.json {}: malformed JSON ({})", where, e.what());
  }
  require(root.is_object() && root.contains("model"), "tokenizer.json {}: has no \"model\"", where);
  BpeVocabulary vocabulary;
  vocabulary.source = where;
  try {
    const json& model = root["model"];
    read_vocab(model, where, vocabulary);
    check_merges(model, where);
    read_added_tokens(root, where, vocabulary);
    drop_specials_from_vocab(where, vocabulary);
    vocabulary.pattern = read_pattern(root, where);
  } catch (const json::exception& e) {
    fail("tokenizer.json {}: unexpected structure ({})", where, e.what());
  }
  return vocabulary;
}

BpeVocabulary read_hf_tokenizer_json(const std::string& path) {
  return parse_hf_tokenizer_json(read_file(path), path);
}

}  // namespace switchyard::tokenizer
