// Token shards: the widely used .bin format.
//
// Layout: 256 little-endian int32 header (header[0] = magic 20240520, header[1] = version 1,
// header[2] = token count), then `count` uint16 tokens. Readers validate everything and throw Error
// naming the file and the problem (wrong magic, unknown version, truncated, trailing bytes).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace switchyard::data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int kShardHeaderInts = 256;

// Reads and validates a whole shard.
std::vector<uint16_t> read_shard(const std::string& path);
// Parses shard bytes already in memory; `source` names them in errors. The fuzz target calls this.
std::vector<uint16_t> parse_shard(std::span<const uint8_t> bytes, const std::string& source);
// Writes a shard; throws Error if a token does not fit in uint16 or the file cannot be written.
void write_shard(const std::string& path, std::span<const int32_t> tokens);

}  // namespace switchyard::data
