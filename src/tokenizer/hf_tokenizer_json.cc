#include "tokenizer/hf_tokenizer_json.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"

namespace switchyard::tokenizer {

namespace {

using nlohmann::json;

json parse_file(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "tokenizer.json {}: no such file", path);
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "tokenizer.json {}: cannot open for reading", path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("tokenizer.json {}: malformed JSON ({})", path, e.what());
  }
}

int32_t token_id(const json& value, const std::string& path, const std::string& what) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
    fail("tokenizer.json {}: {}: expected a non-negative 32-bit id, got {}", path, what, value.dump());
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

void read_vocab(const json& model, const std::string& path, BpeVocabulary& vocabulary) {
  require(model.is_object() && model.value("type", "BPE") == "BPE",
          "tokenizer.json {}: model.type must be \"BPE\"", path);
  require(model.contains("vocab") && model["vocab"].is_object() && !model["vocab"].empty(),
          "tokenizer.json {}: model.vocab must be a non-empty object mapping tokens to ids", path);
  std::string bytes;
  for (const auto& [token, value] : model["vocab"].items()) {
    const std::string quoted = json(token).dump();
    const int32_t id = token_id(value, path, "model.vocab " + quoted);
    if (token.empty() || !vocab_token_to_bytes(token, bytes)) {
      fail("tokenizer.json {}: model.vocab token {} is not spelled in the byte-level alphabet", path, quoted);
    }
    if (!vocabulary.ranks.emplace(bytes, id).second) {
      fail("tokenizer.json {}: model.vocab token {} stands for the same bytes as another token", path, quoted);
    }
  }
}

void read_added_tokens(const json& root, const std::string& path, BpeVocabulary& vocabulary) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const json& added = root["added_tokens"];
  require(added.is_array(), "tokenizer.json {}: added_tokens must be an array", path);
  for (size_t i = 0; i < added.size(); ++i) {
    const json& token = added[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    require(token.is_object() && token.contains("content") && token["content"].is_string() &&
                token.contains("id"),
            "tokenizer.json {}: {} must be an object with \"id\" and \"content\"", path, where);
    vocabulary.specials.push_back({token["content"].get<std::string>(), token_id(token["id"], path, where)});
  }
}

// Some files list the added tokens in model.vocab too; they are special only, never BPE results.
void drop_specials_from_vocab(BpeVocabulary& vocabulary) {
  std::unordered_set<int32_t> special_ids;
  for (const SpecialToken& special : vocabulary.specials) special_ids.insert(special.id);
  std::erase_if(vocabulary.ranks, [&](const auto& entry) { return special_ids.contains(entry.second); });
}

// The Split regex of a Sequence pre-tokenizer, after checking that it is byte-level.
std::string sequence_pattern(const json& steps, const std::string& path) {
  std::string pattern;
  bool byte_level = false;
  for (const json& step : steps) {
    const std::string type = step.value("type", "");
    if (type == "ByteLevel") {
      byte_level = true;
      if (step.value("use_regex", true)) pattern = kGpt2Pattern;
    } else if (type == "Split") {
      require(step.contains("pattern") && step["pattern"].contains("Regex") &&
                  step.value("behavior", "") == "Isolated" && !step.value("invert", false),
              "tokenizer.json {}: only a Split pre-tokenizer by a Regex, \"Isolated\" and not "
              "inverted, is supported", path);
      pattern = step["pattern"]["Regex"].get<std::string>();
    } else {
      fail("tokenizer.json {}: pre-tokenizer step \"{}\" is not supported (expected Split and ByteLevel)",
           path, type);
    }
  }
  require(byte_level && !pattern.empty(),
          "tokenizer.json {}: the pre-tokenizer must be byte-level (a ByteLevel step) and split by a "
          "pattern", path);
  return pattern;
}

std::string read_pattern(const json& root, const std::string& path) {
  require(root.contains("pre_tokenizer") && root["pre_tokenizer"].is_object(),
          "tokenizer.json {}: has no pre_tokenizer; expected a byte-level one", path);
  const json& pre = root["pre_tokenizer"];
  const std::string type = pre.value("type", "");
  if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    return sequence_pattern(pre["pretokenizers"], path);
  }
  return sequence_pattern(json::array({pre}), path);
}

}  // namespace

BpeVocabulary read_hf_tokenizer_json(const std::string& path) {
  const json root = parse_file(path);
  require(root.is_object() && root.contains("model"), "tokenizer.json {}: has no \"model\"", path);
  BpeVocabulary vocabulary;
  vocabulary.source = path;
  try {
    read_vocab(root["model"], path, vocabulary);
    read_added_tokens(root, path, vocabulary);
    drop_specials_from_vocab(vocabulary);
    vocabulary.pattern = read_pattern(root, path);
  } catch (const json::exception& e) {
    fail("tokenizer.json {}: unexpected structure ({})", path, e.what());
  }
  return vocabulary;
}

}  // namespace switchyard::tokenizer
