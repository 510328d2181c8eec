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

}  // namespace

std::vector<uint16_t> parse_shard(std::span<const uint8_t> bytes, const std::string& source) {
  require(bytes.size() >= kHeaderBytes,
          "token shard {}: file is {} bytes, shorter than the {}-byte header", source, bytes.size(),
          kHeaderBytes);
  const int32_t magic = load_le_i32(bytes.data());
  require(magic == kShardMagic, "token shard {}: wrong magic number {} (expected {})", source, magic,
          kShardMagic);
  const int32_t version = load_le_i32(bytes.data() + 4);
  require(version == kShardVersion, "token shard {}: unknown version {} (expected {})", source,
          version, kShardVersion);
  const int32_t count = load_le_i32(bytes.data() + 8);
  require(count >= 0, "token shard {}: negative token count {} in header", source, count);

  const size_t data_bytes = bytes.size() - kHeaderBytes;
  const size_t held = data_bytes / sizeof(uint16_t);
  const size_t expected = static_cast<size_t>(count);
  require(expected <= held, "token shard {}: truncated: header says {} tokens, file holds {}", source,
          expected, held);
  require(data_bytes == expected * sizeof(uint16_t),
          "token shard {}: {} trailing bytes after the {} tokens the header announces", source,
          data_bytes - expected * sizeof(uint16_t), expected);

  std::vector<uint16_t> tokens(expected);
  const uint8_t* p = bytes.data() + kHeaderBytes;
  for (size_t i = 0; i < expected; ++i) {
    tokens[i] = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
  }
  return tokens;
}

std::vector<uint16_t> read_shard(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), "token shard {}: no such file", path);
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "token shard {}: cannot open for reading", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require(!in.bad(), "token shard {}: read error", path);
  return parse_shard(bytes, path);
}

void write_shard(const std::string& path, std::span<const int32_t> tokens) {
  require(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
          "token shard {}: {} tokens do not fit the int32 count in the header", path, tokens.size());
  std::vector<uint8_t> bytes(kHeaderBytes + tokens.size() * sizeof(uint16_t), 0);
  store_le_i32(bytes.data(), kShardMagic);
  store_le_i32(bytes.data() + 4, kShardVersion);
  store_le_i32(bytes.data() + 8, static_cast<int32_t>(tokens.size()));
  uint8_t* p = bytes.data() + kHeaderBytes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    require(t >= 0 && t <= 0xFFFF,
            "token shard {}: token {} at index {} does not fit in uint16 (expected 0..65535)", path,
            t, i);
    p[2 * i] = static_cast<uint8_t>(t & 0xFF);
    p[2 * i + 1] = static_cast<uint8_t>(t >> 8);
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
