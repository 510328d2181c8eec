// Checkpoint directories of one file or of shards with an index: tensors found in the right file
// with the right bytes, and a clear error for every way an index and its shards can disagree.
#include "model/safetensors_set.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "expect_error.h"
#include "temp_dir_test_base.h"

namespace switchyard::model {
namespace {

namespace fs = std::filesystem;

class SafetensorsSetTest : public TempDirTest {
 protected:
  void write_shard(const std::string& file, const std::vector<std::pair<std::string, float>>& tensors) {
    SafetensorsWriter writer;
    for (const auto& [name, value] : tensors) {
      const float data[3] = {value, value + 1, value + 2};
      writer.add_f32(name, {3}, data);
    }
    writer.write(path(file));
  }
  void write_index(const std::string& text) {
    std::ofstream(path(SafetensorsSet::kIndexFile)) << text;
  }
  // Two shards: a and b in the first, c in the second.
  void write_two_shards() {
    write_shard("model-00001-of-00002.safetensors", {{"a", 1}, {"b", 10}});
    write_shard("model-00002-of-00002.safetensors", {{"c", 100}});
    write_index(R"({"metadata": {"total_size": 36}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}})");
  }
};

TEST_F(SafetensorsSetTest, ReadsASingleFile) {
  write_shard(SafetensorsSet::kSingleFile, {{"w", 5}});
  const SafetensorsSet set = SafetensorsSet::open(path(""));
  ASSERT_EQ(set.tensors().size(), 1u);
  EXPECT_EQ(set.read_f32("w"), (std::vector<float>{5, 6, 7}));
  EXPECT_EQ(set.find("missing"), nullptr);
  expect_error([&] { set.read_f32("missing"); }, {"no tensor named 'missing'"});
}

TEST_F(SafetensorsSetTest, FindsEveryTensorInItsShard) {
  write_two_shards();
  const SafetensorsSet set = SafetensorsSet::open(path(""));
  EXPECT_EQ(set.tensors().size(), 3u);
  EXPECT_EQ(set.read_f32("a"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(set.read_f32("b"), (std::vector<float>{10, 11, 12}));
  EXPECT_EQ(set.read_f32("c"), (std::vector<float>{100, 101, 102}));
  EXPECT_NE(set.file_of("c").source().find("model-00002-of-00002"), std::string::npos);
  EXPECT_EQ(set.raw("c").size(), 12u);
}

TEST_F(SafetensorsSetTest, MissingFilesAreNamed) {
  expect_error([&] { SafetensorsSet::open(path("")); }, {"model.safetensors", "no such file"});
  write_shard("model-00001-of-00002.safetensors", {{"a", 1}});
  write_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                 "c": "model-00002-of-00002.safetensors"}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"model-00002-of-00002.safetensors", "no such file"});
}

TEST_F(SafetensorsSetTest, IndexAndShardsMustAgree) {
  write_two_shards();
  // The index puts c in the first shard, which does not hold it.
  write_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                 "c": "model-00001-of-00002.safetensors"}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"tensor 'c'", "does not hold it"});
  // The same tensor stored in two shards (the index lists every tensor, so only that is wrong).
  write_shard("model-00002-of-00002.safetensors", {{"a", 7}, {"d", 8}});
  write_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                 "b": "model-00001-of-00002.safetensors",
                                 "d": "model-00002-of-00002.safetensors"}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"tensor 'a'", "both"});
}

TEST_F(SafetensorsSetTest, BadIndexesAreClearErrors) {
  write_two_shards();
  write_index("{not json");
  expect_error([&] { SafetensorsSet::open(path("")); }, {SafetensorsSet::kIndexFile, "not valid JSON"});
  write_index(R"({"metadata": {}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"weight_map"});
  write_index(R"({"weight_map": {}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"weight_map is empty"});
  write_index(R"({"weight_map": {"a": 3}})");
  expect_error([&] { SafetensorsSet::open(path("")); }, {"weight_map['a']", "expected a file name"});
  for (const char* escape : {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x.safetensors", ".."}) {
    write_index(std::string(R"({"weight_map": {"a": ")") + escape + R"("}})");
    expect_error([&] { SafetensorsSet::open(path("")); }, {"not a plain file name"});
  }
}

TEST(ParseWeightMap, ReadsTheReferenceIndex) {
  std::ifstream in(std::string(SWITCHYARD_TEST_DATA) + "/gpt_oss_reference/" + SafetensorsSet::kIndexFile);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto weight_map = parse_weight_map(text, "index");
  // Three layers of 19 tensors (q, k, v and o weights and biases, sinks, two norms, router weight
  // and bias, six expert tensors), the embedding, the final norm and the head.
  EXPECT_EQ(weight_map.size(), 3u * 19 + 3);
  EXPECT_EQ(weight_map.at("model.layers.2.self_attn.sinks"), "model-00002-of-00002.safetensors");
  EXPECT_EQ(weight_map.at("lm_head.weight"), "model-00002-of-00002.safetensors");
  EXPECT_EQ(weight_map.at("model.embed_tokens.weight"), "model-00001-of-00002.safetensors");
}

TEST(ParseWeightMap, RefusesWhatAFileCouldHide) {
  // A tensor listed twice: JSON parsers would silently keep one of the two shards.
  expect_error([] { parse_weight_map(R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})", "idx"); },
               {"idx", "\"a\"", "twice"});
  expect_error([] { parse_weight_map(R"({"weight_map": {"a": "x"}, "weight_map": {"a": "y"}})", "idx"); },
               {"\"weight_map\"", "twice"});
  // A NUL ends the name the system opens: "x.safetensors\0y" would open x.safetensors.
  expect_error([] { parse_weight_map(R"({"weight_map": {"a": "x.safetensors\u0000y"}})", "idx"); },
               {"weight_map['a']", "not a plain file name"});
  const std::string deep = R"({"metadata": )" + std::string(100, '[') + std::string(100, ']') +
                           R"(, "weight_map": {"a": "x"}})";
  expect_error([&] { parse_weight_map(deep, "idx"); }, {"idx", "nests deeper than 64"});
  expect_error([] { parse_weight_map("{\"weight_map\": {\"a\": \"\xff\"}}", "idx"); }, {"idx", "not valid JSON"});
  expect_error([] { parse_weight_map(R"({"weight_map": []})", "idx"); }, {"idx", "'weight_map' object"});
  expect_error([] { parse_weight_map(R"({"weight_map": {"a": ["x"]}})", "idx"); }, {"weight_map['a']", "array"});
}

}  // namespace
}  // namespace switchyard::model
