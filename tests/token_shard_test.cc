// Token shards: exact bytes of the .bin format, round trips, and every kind of damaged file.
#include "data/token_shard.h"

#include <gtest/gtest.h>

#include "expect_error.h"

#include "temp_dir_test_base.h"
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace switchyard::data {
namespace {

namespace fs = std::filesystem;

class TokenShardTest : public TempDirTest {
 protected:
  void write_bytes(const std::string& p, const std::vector<uint8_t>& bytes) const {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }

  static std::vector<uint8_t> read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  // A header written by hand, independently of write_shard.
  static std::vector<uint8_t> header(int32_t magic, int32_t version, int32_t count) {
    std::vector<uint8_t> bytes(1024, 0);
    const int32_t fields[3] = {magic, version, count};
    for (int f = 0; f < 3; ++f) {
      const uint32_t v = static_cast<uint32_t>(fields[f]);
      for (int b = 0; b < 4; ++b) bytes[4 * f + b] = static_cast<uint8_t>(v >> (8 * b));
    }
    return bytes;
  }

};

TEST_F(TokenShardTest, WritesTheExactByteLayout) {
  const std::vector<int32_t> tokens = {1, 258, 65535, 0, 50256};
  write_shard(path("a.bin"), tokens);
  const std::vector<uint8_t> bytes = read_bytes(path("a.bin"));
  ASSERT_EQ(bytes.size(), 1024u + 2 * tokens.size());

  std::vector<uint8_t> expected = header(20240520, 1, 5);
  // 20240520 = 0x0134D888, little-endian.
  EXPECT_EQ(expected[0], 0x88);
  EXPECT_EQ(expected[1], 0xD8);
  EXPECT_EQ(expected[2], 0x34);
  EXPECT_EQ(expected[3], 0x01);
  const uint8_t token_bytes[] = {0x01, 0x00, 0x02, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x50, 0xC4};
  expected.insert(expected.end(), std::begin(token_bytes), std::end(token_bytes));
  EXPECT_EQ(bytes, expected);
}

TEST_F(TokenShardTest, ParsesHandBuiltBytes) {
  std::vector<uint8_t> bytes = header(20240520, 1, 3);
  const uint8_t token_bytes[] = {0x34, 0x12, 0x00, 0x00, 0xFE, 0xFF};
  bytes.insert(bytes.end(), std::begin(token_bytes), std::end(token_bytes));
  EXPECT_EQ(parse_shard(bytes, "mem"), (std::vector<uint32_t>{0x1234, 0, 0xFFFE}));
  write_bytes(path("h.bin"), bytes);
  EXPECT_EQ(read_shard(path("h.bin")), (std::vector<uint32_t>{0x1234, 0, 0xFFFE}));
}

TEST_F(TokenShardTest, RoundTripsManyTokensAndAnEmptyShard) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 100000; ++i) tokens.push_back((i * 7919) % 65536);
  write_shard(path("big.bin"), tokens);
  const std::vector<uint32_t> back = read_shard(path("big.bin"));
  ASSERT_EQ(back.size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(back[i], tokens[i]) << "index " << i;

  write_shard(path("empty.bin"), {});
  EXPECT_TRUE(read_shard(path("empty.bin")).empty());
  EXPECT_EQ(fs::file_size(path("empty.bin")), 1024u);
  EXPECT_FALSE(fs::exists(path("empty.bin.tmp")));
}

TEST_F(TokenShardTest, WriterRejectsTokensOutsideUint16) {
  expect_error([&] { write_shard(path("x.bin"), std::vector<int32_t>{5, 65536}); },
               {path("x.bin"), "65536", "index 1", "uint16"});
  expect_error([&] { write_shard(path("x.bin"), std::vector<int32_t>{-1}); }, {"-1", "index 0"});
  EXPECT_FALSE(fs::exists(path("x.bin")));
}

TEST_F(TokenShardTest, Version2WritesTheExactByteLayout) {
  const std::vector<int32_t> tokens = {1, 65536, 200006, 0x12345678};
  write_shard(path("v2.bin"), tokens, kShardVersion32);
  std::vector<uint8_t> expected = header(20240520, 2, 4);
  const uint8_t token_bytes[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
                                 0x46, 0x0D, 0x03, 0x00, 0x78, 0x56, 0x34, 0x12};
  expected.insert(expected.end(), std::begin(token_bytes), std::end(token_bytes));
  EXPECT_EQ(read_bytes(path("v2.bin")), expected);
  EXPECT_EQ(read_shard(path("v2.bin")), (std::vector<uint32_t>{1, 65536, 200006, 0x12345678}));
}

TEST_F(TokenShardTest, Version2RoundTripsO200kSizedIds) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 50000; ++i) tokens.push_back(static_cast<int32_t>((int64_t{i} * 104729) % 201088));
  write_shard(path("big2.bin"), tokens, kShardVersion32);
  EXPECT_EQ(fs::file_size(path("big2.bin")), 1024u + 4 * tokens.size());
  const std::vector<uint32_t> back = read_shard(path("big2.bin"));
  ASSERT_EQ(back.size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(back[i], static_cast<uint32_t>(tokens[i])) << "index " << i;
  expect_error([&] { write_shard(path("neg.bin"), std::vector<int32_t>{7, -2}, kShardVersion32); },
               {"-2", "index 1"});
  expect_error([&] { write_shard(path("v3.bin"), std::vector<int32_t>{1}, 3); }, {"version 3"});
}

TEST_F(TokenShardTest, VersionFollowsTheVocabularySize) {
  EXPECT_EQ(shard_version_for_vocab(256), 1);
  EXPECT_EQ(shard_version_for_vocab(50257), 1);
  EXPECT_EQ(shard_version_for_vocab(65536), 1);
  EXPECT_EQ(shard_version_for_vocab(65537), 2);
  EXPECT_EQ(shard_version_for_vocab(201088), 2);
}

TEST_F(TokenShardTest, TruncatedVersion2) {
  std::vector<uint8_t> bytes = header(20240520, 2, 3);
  bytes.resize(1024 + 4 * 2 + 2);  // two whole uint32 tokens and half of a third
  write_bytes(path("t2.bin"), bytes);
  expect_error([&] { read_shard(path("t2.bin")); },
               {path("t2.bin"), "truncated: header says 3 tokens, file holds 2", "version 2"});
  // A version-1 file of the same size would hold five whole tokens.
  bytes = header(20240520, 2, 1);
  bytes.resize(1024 + 6);
  write_bytes(path("tr2.bin"), bytes);
  expect_error([&] { read_shard(path("tr2.bin")); }, {path("tr2.bin"), "2 trailing bytes"});
}

TEST_F(TokenShardTest, WriterNamesAnUnwritablePath) {
  const std::string bad = path("no_such_dir/x.bin");
  expect_error([&] { write_shard(bad, std::vector<int32_t>{1}); }, {bad});
}

TEST_F(TokenShardTest, MissingFile) {
  expect_error([&] { read_shard(path("nope.bin")); }, {path("nope.bin"), "no such file"});
}

TEST_F(TokenShardTest, ShorterThanTheHeader) {
  std::vector<uint8_t> bytes = header(20240520, 1, 0);
  bytes.resize(1000);
  write_bytes(path("short.bin"), bytes);
  expect_error([&] { read_shard(path("short.bin")); }, {path("short.bin"), "1000 bytes", "1024"});
  expect_error([&] { parse_shard({}, "empty-source"); }, {"empty-source", "0 bytes"});
}

TEST_F(TokenShardTest, WrongMagic) {
  write_bytes(path("magic.bin"), header(12345, 1, 0));
  expect_error([&] { read_shard(path("magic.bin")); },
               {path("magic.bin"), "magic", "12345", "20240520"});
}

TEST_F(TokenShardTest, UnknownVersion) {
  write_bytes(path("v.bin"), header(20240520, 7, 0));
  expect_error([&] { read_shard(path("v.bin")); }, {path("v.bin"), "version 7", "expected 1"});
}

TEST_F(TokenShardTest, TruncatedData) {
  std::vector<uint8_t> bytes = header(20240520, 1, 10);
  bytes.resize(1024 + 2 * 4 + 1);  // four whole tokens and half of a fifth
  write_bytes(path("t.bin"), bytes);
  expect_error([&] { read_shard(path("t.bin")); },
               {path("t.bin"), "truncated: header says 10 tokens, file holds 4"});
}

TEST_F(TokenShardTest, TrailingBytes) {
  std::vector<uint8_t> bytes = header(20240520, 1, 2);
  bytes.resize(1024 + 2 * 2 + 3);
  write_bytes(path("tr.bin"), bytes);
  expect_error([&] { read_shard(path("tr.bin")); }, {path("tr.bin"), "3 trailing bytes"});
}

TEST_F(TokenShardTest, NegativeCount) {
  write_bytes(path("n.bin"), header(20240520, 1, -5));
  expect_error([&] { read_shard(path("n.bin")); }, {path("n.bin"), "negative token count -5"});
}

}  // namespace
}  // namespace switchyard::data
