#include "data/token_shard.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "core/error.h"

namespace switchyard::data {
namespace {

constexpr size_t kHeaderBytes = kShardHeaderInts * sizeof(int32_t);

// Decodes explicitly so the format stays little-endian whatever the host is.
int32_t load_le_i32(const uint8_t* p) {
  uint32_t v = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
               static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  return static_cast<int32_t>(v);
}

void store_le_i32(uint8_t* p, int32_t value) {
  uint32_t v = static_cast<uint32_t>(value);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Bytes per token in a shard of `version` (already validated).
size_t token_width(int32_t version) { return version == kShardVersion16 ? sizeof(uint16_t) : sizeof(uint32_t); }

}  // namespace

int32_t shard_version_for_vocab(int vocab_size) {
  return vocab_size <= 0x10000 ? kShardVersion16 : kShardVersion32;
}

std::vector<uint32_t> parse_shard(std::span<const uint8_t> bytes, const std::string& source) {
  require(bytes.size() >= kHeaderBytes,
          "token shard {}: file is {} bytes, shorter than the {}-byte header", source, bytes.size(),
          kHeaderBytes);
  const int32_t magic = load_le_i32(bytes.data());
  require(magic == kShardMagic, "token shard {}: wrong magic number {} (expected {})", source, magic,
          kShardMagic);
  const int32_t version = load_le_i32(bytes.data() + 4);
  require(version == kShardVersion16 || version == kShardVersion32,
          "token shard {}: unknown version {} (expected {} for uint16 tokens or {} for uint32)", source,
          version, kShardVersion16, kShardVersion32);
  const int32_t count = load_le_i32(bytes.data() + 8);
  require(count >= 0, "token shard {}: negative token count {} in header", source, count);

  const size_t width = token_width(version);
  const size_t data_bytes = bytes.size() - kHeaderBytes;
  const size_t held = data_bytes / width;
  const size_t expected = static_cast<size_t>(count);
  require(expected <= held,
          "token shard {}: truncated: header says {} tokens, file holds {} (version {}, {}-byte tokens)",
          source, expected, held, version, width);
  require(data_bytes == expected * width,
          "token shard {}: {} trailing bytes after the {} tokens the header announces", source,
          data_bytes - expected * width, expected);

  std::vector<uint32_t> tokens(expected);
  const uint8_t* p = bytes.data() + kHeaderBytes;
  for (size_t i = 0; i < expected; ++i) {
    uint32_t token = 0;
    for (size_t b = 0; b < width; ++b) token |= static_cast<uint32_t>(p[width * i + b]) << (8 * b);
    tokens[i] = token;
  }
  return tokens;
}

std::vector<uint32_t> read_shard(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "token shard {}: no such file", path);
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "token shard {}: cannot open for reading", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require(!in.bad(), "token shard {}: read error", path);
  return parse_shard(bytes, path);
}

void write_shard(const std::string& path, std::span<const int32_t> tokens, int32_t version) {
  require(version == kShardVersion16 || version == kShardVersion32,
          "token shard {}: cannot write version {} (expected {} or {})", path, version, kShardVersion16,
          kShardVersion32);
  require(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
          "token shard {}: {} tokens do not fit the int32 count in the header", path, tokens.size());
  const size_t width = token_width(version);
  const int64_t largest = version == kShardVersion16 ? 0xFFFF : std::numeric_limits<int32_t>::max();
  std::vector<uint8_t> bytes(kHeaderBytes + tokens.size() * width, 0);
  store_le_i32(bytes.data(), kShardMagic);
  store_le_i32(bytes.data() + 4, version);
  store_le_i32(bytes.data() + 8, static_cast<int32_t>(tokens.size()));
  uint8_t* p = bytes.data() + kHeaderBytes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t > largest) {
      fail("token shard {}: token {} at index {} does not fit in version {}'s uint{} (expected 0..{})",
           path, t, i, version, 8 * width, largest);
    }
    for (size_t b = 0; b < width; ++b) p[width * i + b] = static_cast<uint8_t>(static_cast<uint32_t>(t) >> (8 * b));
  }

  // Write to a sibling temporary and rename, so a reader never sees a half-written shard.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    require(out.good(), "token shard {}: cannot open {} for writing", path, tmp);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      fail("token shard {}: write failed", path);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("token shard {}: cannot rename {} into place: {}", path, tmp, ec.message());
  }
}

}  // namespace switchyard::data
