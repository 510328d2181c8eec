// A deterministic, always-on cousin of the libFuzzer targets in tests/fuzz/: thousands of seeded
// random mutations of valid safetensors files and token shards (bit flips, truncations, random
// header lengths, spliced bytes) go through both parsers, which must either accept the bytes or
// throw switchyard::Error, never anything else. Running under the ASan/UBSan build turns any
// out-of-bounds read or overflow into a failure too.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/token_shard.h"
#include "model/safetensors.h"

namespace switchyard {
namespace {

constexpr int kMutationsPerSeed = 3000;

std::vector<uint8_t> safetensors_bytes(const std::string& header, size_t data_bytes, Rng& rng) {
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<uint8_t>(rng.next_u64()));
  return bytes;
}

std::vector<std::vector<uint8_t>> safetensors_seeds(Rng& rng) {
  std::vector<std::vector<uint8_t>> seeds;
  seeds.push_back(safetensors_bytes(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"BF16","shape":[1,2],"data_offsets":[32,36]}})",
      36, rng));
  seeds.push_back(safetensors_bytes(
      R"({"x":{"dtype":"I32","shape":[3],"data_offsets":[0,12]},"y":{"dtype":"U16","shape":[],"data_offsets":[12,14]},)"
      R"("z":{"dtype":"I64","shape":[0,5],"data_offsets":[14,14]},)"
      R"("zz":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[14,14]}})",
      14, rng));
  seeds.push_back(safetensors_bytes("{}", 0, rng));
  return seeds;
}

std::vector<std::vector<uint8_t>> shard_seeds() {
  std::vector<std::vector<uint8_t>> seeds;
  for (const int32_t version : {data::kShardVersion16, data::kShardVersion32}) {
    const int width = version == data::kShardVersion16 ? 2 : 4;
    for (int count : {0, 1, 7}) {
      std::vector<uint8_t> bytes(1024 + width * count, 0);
      const int32_t header[3] = {data::kShardMagic, version, count};
      std::memcpy(bytes.data(), header, sizeof(header));  // little-endian host, as the format is
      for (int i = 0; i < width * count; ++i) bytes[1024 + i] = static_cast<uint8_t>(i * 37);
      seeds.push_back(bytes);
    }
  }
  return seeds;
}

// One random mutation; which kind depends on the draw. `header_end` marks where an interesting
// length field or JSON text ends, so that some mutations aim at it.
std::vector<uint8_t> mutate(std::vector<uint8_t> bytes, size_t header_end, Rng& rng) {
  auto below = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng.next_u64() % n); };
  const int rounds = 1 + static_cast<int>(below(3));
  for (int r = 0; r < rounds; ++r) {
    switch (below(7)) {
      case 0: {  // flip a few bits anywhere
        for (int i = 0, n = 1 + static_cast<int>(below(8)); i < n && !bytes.empty(); ++i) {
          bytes[below(bytes.size())] ^= static_cast<uint8_t>(1u << below(8));
        }
        break;
      }
      case 1:  // truncate
        bytes.resize(below(bytes.size() + 1));
        break;
      case 2: {  // random header length / count field
        if (bytes.size() < 12) break;
        uint64_t v = rng.next_u64();
        if (below(2) == 0) v = header_end + below(17) - 8;  // near the real value
        const size_t at = below(2) == 0 ? 0 : 8;             // safetensors length or shard count
        for (int i = 0; i < (at == 0 ? 8 : 4); ++i) bytes[at + i] = static_cast<uint8_t>(v >> (8 * i));
        break;
      }
      case 3: {  // overwrite a byte inside the header with a character JSON cares about
        static const char kInteresting[] = "{}[]\":,-0123456789e.\\ \xff";
        if (header_end <= 8 || bytes.size() <= 8) break;
        bytes[8 + below(std::min(header_end, bytes.size()) - 8)] =
            static_cast<uint8_t>(kInteresting[below(sizeof(kInteresting) - 1)]);
        break;
      }
      case 4: {  // delete a run of bytes
        if (bytes.empty()) break;
        const size_t at = below(bytes.size());
        const size_t n = std::min(bytes.size() - at, 1 + below(8));
        bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                    bytes.begin() + static_cast<std::ptrdiff_t>(at + n));
        break;
      }
      case 5: {  // insert random bytes
        const size_t at = below(bytes.size() + 1);
        std::vector<uint8_t> extra(1 + below(8));
        for (auto& b : extra) b = static_cast<uint8_t>(rng.next_u64());
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), extra.begin(), extra.end());
        break;
      }
      case 6: {  // append data
        for (size_t i = 0, n = 1 + below(64); i < n; ++i) bytes.push_back(static_cast<uint8_t>(rng.next_u64()));
        break;
      }
    }
  }
  return bytes;
}

TEST(FuzzReplay, SafetensorsParseAcceptsOrThrowsError) {
  Rng rng(20240520);
  int accepted = 0, rejected = 0;
  for (const std::vector<uint8_t>& seed : safetensors_seeds(rng)) {
    // The seed itself is valid.
    ASSERT_NO_THROW(model::SafetensorsFile::parse(seed, "seed"));
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = header_len << 8 | seed[i];
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const std::vector<uint8_t> bytes = mutate(seed, 8 + header_len, rng);
      try {
        const auto file = model::SafetensorsFile::parse(bytes, "mutant");
        ++accepted;
        for (const auto& t : file.tensors()) {
          ASSERT_LE(t.begin, t.end);
          ASSERT_EQ(file.raw(t.name).size(), t.end - t.begin);
          ASSERT_EQ(static_cast<uint64_t>(t.numel()) * dtype_bytes(t.dtype), t.end - t.begin);
          if (t.dtype == DType::kF32 || t.dtype == DType::kF16 || t.dtype == DType::kBF16) {
            ASSERT_EQ(file.read_f32(t.name).size(), static_cast<size_t>(t.numel()));
          }
        }
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        FAIL() << "mutation " << m << " threw something other than switchyard::Error: " << e.what();
      }
    }
  }
  std::printf("safetensors mutants: %d accepted, %d rejected\n", accepted, rejected);
  // Both outcomes must actually occur, or the mutations are not exercising the parser.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 1000);
}

TEST(FuzzReplay, ShardParseAcceptsOrThrowsError) {
  Rng rng(7);
  int accepted = 0, rejected = 0;
  for (const std::vector<uint8_t>& seed : shard_seeds()) {
    ASSERT_NO_THROW(data::parse_shard(seed, "seed"));
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const std::vector<uint8_t> bytes = mutate(seed, 12, rng);
      try {
        const std::vector<uint32_t> tokens = data::parse_shard(bytes, "mutant");
        ++accepted;
        // Accepted means version 1 (uint16) or 2 (uint32), read from the header by hand.
        const size_t width = bytes[4] == 1 ? 2 : 4;
        ASSERT_TRUE((bytes[4] == 1 || bytes[4] == 2) && bytes[5] == 0 && bytes[6] == 0 && bytes[7] == 0);
        ASSERT_EQ(bytes.size(), 1024 + width * tokens.size());
        for (size_t i = 0; i < tokens.size(); ++i) {
          uint32_t expected = 0;
          for (size_t b = 0; b < width; ++b) expected |= static_cast<uint32_t>(bytes[1024 + width * i + b]) << (8 * b);
          ASSERT_EQ(tokens[i], expected);
        }
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        FAIL() << "mutation " << m << " threw something other than switchyard::Error: " << e.what();
      }
    }
  }
  std::printf("shard mutants: %d accepted, %d rejected\n", accepted, rejected);
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace switchyard
