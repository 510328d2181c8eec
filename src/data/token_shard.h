// Token shards: the widely used .bin format, extended to vocabularies over 65,536 tokens.
//
// Layout: 256 little-endian int32 header (header[0] = magic 20240520, header[1] = version,
// header[2] = token count), then `count` tokens: little-endian uint16 in version 1, uint32 in
// version 2 (for vocabularies such as o200k's, whose ids do not fit in 16 bits). Readers accept
// both versions and validate everything, throwing Error naming the file and the problem (wrong
// magic, unknown version, truncated, trailing bytes).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace switchyard::data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion16 = 1;  // uint16 tokens
inline constexpr int32_t kShardVersion32 = 2;  // uint32 tokens
inline constexpr int kShardHeaderInts = 256;

// The version a shard of a vocabulary of `vocab_size` tokens is written in: 1 while every id fits
// in uint16 (vocab_size <= 65,536), else 2.
int32_t shard_version_for_vocab(int vocab_size);

// Reads and validates a whole shard of either version.
std::vector<uint32_t> read_shard(const std::string& path);
// Parses shard bytes already in memory; `source` names them in errors. The fuzz target calls this.
std::vector<uint32_t> parse_shard(std::span<const uint8_t> bytes, const std::string& source);
// Writes a shard in `version` (kShardVersion16 or kShardVersion32); throws Error if a token does
// not fit in that version's token type or the file cannot be written.
void write_shard(const std::string& path, std::span<const int32_t> tokens,
                 int32_t version = kShardVersion16);

}  // namespace switchyard::data
