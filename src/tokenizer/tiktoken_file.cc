#include "tokenizer/tiktoken_file.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "core/error.h"

namespace switchyard::tokenizer {

namespace {

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with '=' padding to a multiple of four characters; false on anything else.
bool decode_base64(std::string_view text, std::string& bytes) {
  bytes.clear();
  if (text.empty() || text.size() % 4 != 0) return false;
  size_t padding = 0;
  while (padding < 2 && text[text.size() - 1 - padding] == '=') ++padding;
  uint32_t bits = 0;
  int held = 0;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    const int digit = base64_digit(text[i]);
    if (digit < 0) return false;
    bits = (bits << 6) | static_cast<uint32_t>(digit);
    held += 6;
    if (held >= 8) {
      held -= 8;
      bytes.push_back(static_cast<char>((bits >> held) & 0xFF));
    }
  }
  return (bits & ((1u << held) - 1)) == 0;  // leftover bits must be zero in canonical base64
}

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "tiktoken ranks file {}: no such file", path);
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "tiktoken ranks file {}: cannot open for reading", path);
  std::ostringstream contents;
  contents << in.rdbuf();
  require(!in.bad(), "tiktoken ranks file {}: read error", path);
  return std::move(contents).str();
}

}  // namespace

RankMap read_tiktoken_ranks(const std::string& path) {
  const std::string text = read_whole_file(path);
  RankMap ranks;
  std::unordered_set<int32_t> seen_ranks;
  std::string bytes;
  std::string_view rest = text;
  for (size_t line_number = 1; !rest.empty(); ++line_number) {
    const size_t newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    const std::string_view rank_text = space == std::string_view::npos ? "" : line.substr(space + 1);
    int32_t rank = -1;
    const auto [end, error] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (space == std::string_view::npos || !decode_base64(line.substr(0, space), bytes) ||
        error != std::errc() || end != rank_text.data() + rank_text.size() || rank < 0 || rank > kMaxTokenId) {
      fail("tiktoken ranks file {}:{}: expected \"<base64 token> <rank>\", got \"{}\"", path,
           line_number, line.substr(0, 80));
    }
    if (!seen_ranks.insert(rank).second) fail("tiktoken ranks file {}:{}: rank {} is given twice", path, line_number, rank);
    if (!ranks.emplace(bytes, rank).second) {
      fail("tiktoken ranks file {}:{}: token {} is given twice", path, line_number, line.substr(0, space));
    }
  }
  require(!ranks.empty(), "tiktoken ranks file {}: holds no tokens", path);
  return ranks;
}

}  // namespace switchyard::tokenizer
