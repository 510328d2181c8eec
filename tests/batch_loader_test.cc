// Text -> shards -> batches: prepare_text's split, the loader's batch order, shard skipping, epochs,
// resume by seek, token validation, and the evaluation window count.
#include "data/batch_loader.h"

#include <gtest/gtest.h>

#include "expect_error.h"

#include "temp_dir_test_base.h"
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/text_to_shards.h"
#include "data/token_shard.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::data {
namespace {

namespace fs = std::filesystem;

// The real tokenizers are built elsewhere; this one maps each byte to its value, which makes the
// expected token stream of any text obvious.
class TestByteTokenizer : public tokenizer::Tokenizer {
 public:
  explicit TestByteTokenizer(int offset = 0) : offset_(offset) {}
  std::string name() const override { return "test-byte"; }
  int vocab_size() const override { return 256 + offset_; }
  int end_of_text() const override { return -1; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + offset_);
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string text;
    for (int32_t id : ids) text += static_cast<char>(id - offset_);
    return text;
  }

 private:
  int offset_;
};

class BatchLoaderTest : public TempDirTest {
 protected:
  // A shard whose token i is base + i, so every batch can be checked against its position.
  std::string make_shard(const std::string& name, int count, int base) const {
    std::vector<int32_t> tokens(count);
    for (int i = 0; i < count; ++i) tokens[i] = base + i;
    write_shard(path(name), tokens);
    return path(name);
  }

  void write_text(const std::string& name, const std::string& text) const {
    std::ofstream out(path(name), std::ios::binary);
    out << text;
  }

  // Checks one batch against the base + offset pattern of make_shard.
  static void expect_batch(const std::vector<int32_t>& inputs, const std::vector<int32_t>& targets,
                           int B, int T, int first_token) {
    ASSERT_EQ(inputs.size(), static_cast<size_t>(B * T));
    ASSERT_EQ(targets.size(), static_cast<size_t>(B * T));
    for (int i = 0; i < B * T; ++i) {
      EXPECT_EQ(inputs[i], first_token + i) << "input " << i;
      EXPECT_EQ(targets[i], first_token + i + 1) << "target " << i;
    }
  }

};

TEST_F(BatchLoaderTest, ServesConsecutiveBatchesSkipsSmallShardsAndWraps) {
  // B*T+1 = 9 tokens per batch. Shard a (100 tokens) gives batches at offsets 0, 8, ..., 88 (12
  // batches: 88 + 9 = 97 <= 100 but 96 + 9 > 100); shard b (5 tokens) is too small for any; shard
  // c (20 tokens) gives offsets 0 and 8.
  const int B = 2, T = 4;
  BatchLoader loader({make_shard("a.bin", 100, 0), make_shard("b.bin", 5, 1000),
                      make_shard("c.bin", 20, 2000)},
                     B, T, 4096);
  EXPECT_EQ(loader.total_tokens(), 125u);
  EXPECT_EQ(loader.batch_size(), 2);
  EXPECT_EQ(loader.seq_len(), 4);

  std::vector<int32_t> inputs, targets;
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int k = 0; k < 12; ++k) {
      const LoaderPosition p = loader.position();
      EXPECT_EQ(p.shard, 0u);
      EXPECT_EQ(p.offset, static_cast<size_t>(8 * k));
      EXPECT_EQ(p.epoch, static_cast<size_t>(epoch));
      loader.next_batch(inputs, targets);
      expect_batch(inputs, targets, B, T, 8 * k);
    }
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ(loader.position().shard, 2u);
      EXPECT_EQ(loader.position().offset, static_cast<size_t>(8 * k));
      loader.next_batch(inputs, targets);
      expect_batch(inputs, targets, B, T, 2000 + 8 * k);
    }
    // After the last batch of the last shard the loader is back at the start, one epoch later.
    EXPECT_EQ(loader.position().shard, 0u);
    EXPECT_EQ(loader.position().offset, 0u);
    EXPECT_EQ(loader.position().epoch, static_cast<size_t>(epoch + 1));
  }
}

TEST_F(BatchLoaderTest, ABatchMayEndOnTheLastToken) {
  // 13 tokens hold exactly one B=3, T=4 batch (12 inputs + the final target).
  BatchLoader loader({make_shard("a.bin", 13, 7)}, 3, 4, 100);
  std::vector<int32_t> inputs, targets;
  loader.next_batch(inputs, targets);
  expect_batch(inputs, targets, 3, 4, 7);
  EXPECT_EQ(targets.back(), 19);
  EXPECT_EQ(loader.position().epoch, 1u);
  loader.next_batch(inputs, targets);
  expect_batch(inputs, targets, 3, 4, 7);
}

TEST_F(BatchLoaderTest, SkipsATooSmallFirstShardWithoutCountingAnEpoch) {
  BatchLoader loader({make_shard("a.bin", 3, 0), make_shard("b.bin", 30, 500)}, 1, 8, 1000);
  EXPECT_EQ(loader.position().shard, 1u);
  EXPECT_EQ(loader.position().epoch, 0u);
  std::vector<int32_t> inputs, targets;
  loader.next_batch(inputs, targets);
  expect_batch(inputs, targets, 1, 8, 500);
}

TEST_F(BatchLoaderTest, SeekResumesWithTheSameBatches) {
  const std::vector<std::string> shards = {make_shard("a.bin", 50, 0), make_shard("b.bin", 40, 100)};
  BatchLoader first(shards, 2, 3, 1000);
  std::vector<int32_t> inputs, targets;
  for (int i = 0; i < 9; ++i) first.next_batch(inputs, targets);
  const LoaderPosition saved = first.position();

  BatchLoader resumed(shards, 2, 3, 1000);
  resumed.seek(saved);
  EXPECT_EQ(resumed.position().shard, saved.shard);
  EXPECT_EQ(resumed.position().offset, saved.offset);
  EXPECT_EQ(resumed.position().epoch, saved.epoch);
  std::vector<int32_t> inputs2, targets2;
  for (int i = 0; i < 20; ++i) {
    first.next_batch(inputs, targets);
    resumed.next_batch(inputs2, targets2);
    ASSERT_EQ(inputs, inputs2) << "batch " << i;
    ASSERT_EQ(targets, targets2) << "batch " << i;
  }
}

TEST_F(BatchLoaderTest, SeekRejectsPositionsThatDoNotExist) {
  BatchLoader loader({make_shard("a.bin", 50, 0)}, 2, 3, 1000);
  expect_error([&] { loader.seek({3, 0, 0}); }, {"shard 3", "1 shard"});
  expect_error([&] { loader.seek({0, 45, 0}); }, {"offset 45", "50 tokens", "7"});
  expect_error([&] { loader.seek({0, 1000, 0}); }, {"offset 1000"});
  loader.seek({0, 43, 2});  // 43 + 7 = 50: the last valid start
  EXPECT_EQ(loader.position().offset, 43u);
}

TEST_F(BatchLoaderTest, RejectsTokensOutsideTheVocabulary) {
  write_shard(path("v.bin"), std::vector<int32_t>{1, 2, 3, 255, 256, 4, 5, 6, 7, 8});
  expect_error([&] { BatchLoader({path("v.bin")}, 1, 4, 256); },
               {path("v.bin"), "index 4", "256", "vocabulary of size 256"});
  BatchLoader ok({path("v.bin")}, 1, 4, 257);
  EXPECT_EQ(ok.total_tokens(), 10u);
}

TEST_F(BatchLoaderTest, RejectsShardsTooSmallForOneBatch) {
  expect_error([&] { BatchLoader({make_shard("a.bin", 8, 0), make_shard("b.bin", 6, 0)}, 2, 4, 100); },
               {"9 tokens", "largest", "holds 8"});
}

TEST_F(BatchLoaderTest, RejectsBadArgumentsAndBadShards) {
  const std::string shard = make_shard("a.bin", 50, 0);
  expect_error([&] { BatchLoader({shard}, 0, 4, 100); }, {"batch size 0"});
  expect_error([&] { BatchLoader({shard}, 2, -1, 100); }, {"sequence length -1"});
  expect_error([&] { BatchLoader({}, 2, 4, 100); }, {"no token shards"});
  expect_error([&] { BatchLoader({shard, path("missing.bin")}, 2, 4, 100); },
               {path("missing.bin"), "no such file"});
}

TEST(CountEvalWindows, MatchesADirectCount) {
  // Window i is usable when its last target (index (i+1)T) exists.
  for (int T : {1, 2, 3, 4, 64}) {
    for (size_t n = 0; n < 300; ++n) {
      size_t expected = 0;
      while ((expected + 1) * static_cast<size_t>(T) + 1 <= n) ++expected;
      ASSERT_EQ(count_eval_windows(n, T), expected) << "n=" << n << " T=" << T;
    }
  }
  EXPECT_EQ(count_eval_windows(1025, 1024), 1u);
  EXPECT_EQ(count_eval_windows(1024, 1024), 0u);
  EXPECT_THROW(count_eval_windows(10, 0), Error);
}

TEST_F(BatchLoaderTest, PrepareTextSplitsAtTheRightToken) {
  write_text("in.txt", "hello world");  // 11 bytes: 10% -> round(1.1) = 1 validation token
  TestByteTokenizer tok;
  const PreparedData out = prepare_text(path("in.txt"), tok, path("out/nested"), 0.1);
  EXPECT_EQ(out.train_path, path("out/nested/train.bin"));
  EXPECT_EQ(out.val_path, path("out/nested/val.bin"));
  EXPECT_EQ(out.train_tokens, 10u);
  EXPECT_EQ(out.val_tokens, 1u);
  const std::vector<uint32_t> train = read_shard(out.train_path);
  const std::vector<uint32_t> val = read_shard(out.val_path);
  EXPECT_EQ(std::string(train.begin(), train.end()), "hello worl");
  EXPECT_EQ(std::string(val.begin(), val.end()), "d");

  const PreparedData half = prepare_text(path("in.txt"), tok, path("half"), 0.5);
  EXPECT_EQ(half.val_tokens, 6u);  // 5.5 rounds away from zero
  EXPECT_EQ(half.train_tokens, 5u);
}

TEST_F(BatchLoaderTest, PrepareTextWithTheLibraryByteTokenizer) {
  using namespace std::string_literals;
  const std::string text = "The quick brown fox\n\xc3\xa9\x00\xff"s;  // 24 bytes, one of them NUL
  ASSERT_EQ(text.size(), 24u);
  write_text("in.txt", text);
  const auto tok = tokenizer::make_byte_tokenizer();
  const PreparedData out = prepare_text(path("in.txt"), *tok, path("o"), 0.25);
  ASSERT_EQ(out.train_tokens + out.val_tokens, text.size());
  EXPECT_EQ(out.val_tokens, 6u);  // 24 * 0.25
  std::vector<uint32_t> all = read_shard(out.train_path);
  const std::vector<uint32_t> val = read_shard(out.val_path);
  all.insert(all.end(), val.begin(), val.end());
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(all[i], static_cast<unsigned char>(text[i])) << i;
}

TEST_F(BatchLoaderTest, PrepareTextKeepsOneTokenOnEachSide) {
  write_text("two.txt", "ab");
  TestByteTokenizer tok;
  PreparedData tiny = prepare_text(path("two.txt"), tok, path("o1"), 0.01);
  EXPECT_EQ(tiny.train_tokens, 1u);
  EXPECT_EQ(tiny.val_tokens, 1u);
  tiny = prepare_text(path("two.txt"), tok, path("o2"), 0.99);
  EXPECT_EQ(tiny.train_tokens, 1u);
  EXPECT_EQ(tiny.val_tokens, 1u);
}

TEST_F(BatchLoaderTest, PrepareTextWritesUint32ShardsForWideVocabularies) {
  // Ids up to 65,500 + 255 do not fit the uint16 format: the shards are version 2.
  TestByteTokenizer wide(65500);
  write_text("ok.txt", "some text");
  const PreparedData out = prepare_text(path("ok.txt"), wide, path("w"), 0.5);
  std::vector<uint32_t> all = read_shard(out.train_path);
  const std::vector<uint32_t> val = read_shard(out.val_path);
  all.insert(all.end(), val.begin(), val.end());
  std::vector<uint32_t> expected;
  for (const unsigned char c : std::string("some text")) expected.push_back(65500u + c);
  EXPECT_EQ(all, expected);
  std::ifstream in(out.train_path, std::ios::binary);
  int32_t header[2] = {};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  EXPECT_EQ(header[1], 2);  // the version field
}

TEST_F(BatchLoaderTest, PrepareTextErrors) {
  TestByteTokenizer tok;
  expect_error([&] { prepare_text(path("missing.txt"), tok, path("o"), 0.1); },
               {path("missing.txt"), "no such file"});
  write_text("empty.txt", "");
  expect_error([&] { prepare_text(path("empty.txt"), tok, path("o"), 0.1); },
               {path("empty.txt"), "empty"});
  write_text("one.txt", "x");
  expect_error([&] { prepare_text(path("one.txt"), tok, path("o"), 0.1); },
               {path("one.txt"), "1 token", "at least 2"});
  write_text("ok.txt", "some text");
  expect_error([&] { prepare_text(path("ok.txt"), tok, path("o"), 0.0); }, {"fraction 0"});
  expect_error([&] { prepare_text(path("ok.txt"), tok, path("o"), 1.0); }, {"fraction 1"});
  // The output directory cannot be a file.
  write_text("afile", "x");
  expect_error([&] { prepare_text(path("ok.txt"), tok, path("afile"), 0.5); }, {path("afile")});
}

TEST_F(BatchLoaderTest, TinyShakespeareEndToEnd) {
  const std::string text_path = std::string(SWITCHYARD_SHARED_DATA) + "/tinyshakespeare.txt";
  if (!fs::exists(text_path)) GTEST_SKIP() << "missing " << text_path;
  const size_t bytes = fs::file_size(text_path);
  TestByteTokenizer tok;
  const PreparedData out = prepare_text(text_path, tok, path("shakespeare"), 0.1);
  const size_t val = static_cast<size_t>(std::llround(bytes * 0.1));
  EXPECT_EQ(out.val_tokens, val);
  EXPECT_EQ(out.train_tokens, bytes - val);
  EXPECT_EQ(fs::file_size(out.train_path), 1024 + 2 * (bytes - val));

  // The first batch is the first bytes of the file.
  std::ifstream in(text_path, std::ios::binary);
  std::string head(65, '\0');
  in.read(head.data(), 65);
  BatchLoader loader({out.train_path}, 4, 16, 256);
  std::vector<int32_t> inputs, targets;
  loader.next_batch(inputs, targets);
  for (int i = 0; i < 64; ++i) {
    ASSERT_EQ(inputs[i], static_cast<unsigned char>(head[i]));
    ASSERT_EQ(targets[i], static_cast<unsigned char>(head[i + 1]));
  }
  EXPECT_EQ(count_eval_windows(out.val_tokens, 1024), (val - 1) / 1024);
}

}  // namespace
}  // namespace switchyard::data
