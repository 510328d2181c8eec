#include "tokenizer/gpt2_vocab.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace switchyard::tokenizer {

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), "cannot open GPT-2 vocabulary file {}", path.string());
  std::ostringstream contents;
  contents << in.rdbuf();
  require(!in.bad(), "cannot read GPT-2 vocabulary file {}", path.string());
  return std::move(contents).str();
}

// Parses the token -> id JSON; fills vocab.token_bytes and returns the token-string -> id map that
// the merge file refers to.
std::unordered_map<std::string, int32_t> read_encoder(const fs::path& path, Gpt2Vocab& vocab) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON ({})", path.string(), e.what());
  }
  require(json.is_object() && !json.empty(),
          "{}: expected a JSON object mapping token strings to ids, got {}", path.string(),
          json.type_name());

  const size_t size = json.size();
  require(size <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), "{}: too many tokens",
          path.string());
  std::unordered_map<std::string, int32_t> ids;
  ids.reserve(size);
  vocab.token_bytes.assign(size, std::string());
  std::vector<bool> seen(size, false);
  std::string bytes;
  for (const auto& [token, value] : json.items()) {
    // Checked with `if` rather than require() so that the message arguments are built only on error.
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() >= static_cast<int64_t>(size)) {
      fail("{}: token {}: expected an integer id in [0, {}) (the ids must be 0..N-1 for N tokens), "
           "got {}",
           path.string(), nlohmann::json(token).dump(), size, value.dump());
    }
    const auto id = static_cast<int32_t>(value.get<int64_t>());
    if (seen[id]) {
      fail("{}: id {} is given to more than one token (second: {})", path.string(), id,
           nlohmann::json(token).dump());
    }
    if (token.empty()) fail("{}: the empty string is not a valid token", path.string());
    if (!vocab_token_to_bytes(token, bytes)) {
      fail("{}: token {} contains a character outside GPT-2's 256-character byte alphabet",
           path.string(), nlohmann::json(token).dump());
    }
    seen[id] = true;
    vocab.token_bytes[id] = bytes;
    ids.emplace(token, id);
  }
  return ids;
}

void read_merges(const fs::path& path, const std::unordered_map<std::string, int32_t>& ids,
                 Gpt2Vocab& vocab) {
  const std::string text = read_file(path);
  std::string_view rest = text;
  int32_t rank = 0;
  for (size_t line_number = 1; !rest.empty(); ++line_number) {
    const size_t newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // The first line is the format's "#version: 0.2" header; blank lines carry nothing.
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    const bool two_parts = space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                           line.find(' ', space + 1) == std::string_view::npos;
    if (!two_parts) {
      fail("{}:{}: expected two tokens separated by one space, got \"{}\"", path.string(),
           line_number, line);
    }
    const std::string left(line.substr(0, space)), right(line.substr(space + 1));
    const auto find = [&](const std::string& token) {
      const auto it = ids.find(token);
      if (it == ids.end()) {
        fail("{}:{}: token \"{}\" is not in {}", path.string(), line_number, token, vocab.encoder_path);
      }
      return it->second;
    };
    const int32_t left_id = find(left), right_id = find(right), result = find(left + right);
    vocab.merges[merge_key(left_id, right_id)] = Gpt2Merge{rank++, result};
  }
}

}  // namespace

Gpt2Vocab load_gpt2_vocab(const std::string& directory) {
  const fs::path dir(directory);
  require(fs::is_directory(dir), "GPT-2 vocabulary directory {} does not exist", directory);
  fs::path encoder_path, merges_path;
  if (fs::exists(dir / "encoder.json")) {
    encoder_path = dir / "encoder.json";
    merges_path = dir / "vocab.bpe";
  } else if (fs::exists(dir / "vocab.json")) {
    encoder_path = dir / "vocab.json";
    merges_path = dir / "merges.txt";
  } else {
    fail("GPT-2 vocabulary directory {} holds neither encoder.json + vocab.bpe (OpenAI) nor "
         "vocab.json + merges.txt (Hugging Face)",
         directory);
  }
  require(fs::exists(merges_path), "GPT-2 vocabulary directory {} has {} but no {}", directory,
          encoder_path.filename().string(), merges_path.filename().string());

  Gpt2Vocab vocab;
  vocab.encoder_path = encoder_path.string();
  const auto ids = read_encoder(encoder_path, vocab);
  std::string token_name;
  for (int b = 0; b < 256; ++b) {
    token_name.clear();
    append_utf8(byte_to_vocab_char(static_cast<uint8_t>(b)), token_name);
    const auto it = ids.find(token_name);
    if (it == ids.end()) {
      fail("{}: the one-byte token for byte 0x{:02X} (\"{}\") is missing", vocab.encoder_path, b,
           token_name);
    }
    vocab.byte_token[b] = it->second;
  }
  if (const auto it = ids.find("<|endoftext|>"); it != ids.end()) vocab.end_of_text = it->second;
  read_merges(merges_path, ids, vocab);
  return vocab;
}

}  // namespace switchyard::tokenizer
