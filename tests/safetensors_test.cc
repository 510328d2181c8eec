// Safetensors: round trips, byte-exact files built by hand in both directions, and one crafted file
// for every validation error the reader promises.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include "expect_error.h"

#include "temp_dir_test_base.h"
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace switchyard::model {
namespace {

namespace fs = std::filesystem;

// 8-byte little-endian header length, the header text, then the data section.
std::vector<uint8_t> file_bytes(const std::string& header, const std::vector<uint8_t>& data,
                                uint64_t header_len_override = UINT64_MAX) {
  const uint64_t len = header_len_override == UINT64_MAX ? header.size() : header_len_override;
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(len >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

// Parses `header` + `data` and expects an Error naming the source and mentioning `parts`.
void expect_parse_error(const std::string& header, const std::vector<uint8_t>& data,
                        std::vector<std::string> parts) {
  parts.insert(parts.begin(), "crafted.st");
  expect_error([&] { SafetensorsFile::parse(file_bytes(header, data), "crafted.st"); }, parts);
}

class SafetensorsTest : public TempDirTest {
 protected:
  static std::vector<uint8_t> read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
};

TEST_F(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 1e-20f, 6.0e30f, -0.0f};
  // Values exactly representable in fp16 (2^-14 is the smallest normal, 2^-24 a subnormal).
  const std::vector<float> f16_values = {1.5f, -2.0f, 65504.0f, 0.00006103515625f, 5.9604644775390625e-8f};
  std::vector<uint16_t> f16;
  for (float v : f16_values) f16.push_back(float_to_fp16(v));
  // Values exactly representable in bf16.
  const std::vector<float> bf16_values = {1.0f, -3.5f, 0x1p100f, 0.15625f};
  std::vector<uint16_t> bf16;
  for (float v : bf16_values) bf16.push_back(float_to_bf16(v));
  const std::vector<int32_t> i32 = {7, -1, 2147483647};

  SafetensorsWriter writer;
  writer.add_f32("h.0.weight", {2, 3}, f32.data());
  writer.add("half", DType::kF16, {5}, f16.data());
  writer.add("brain", DType::kBF16, {2, 2}, bf16.data());
  writer.add("ints", DType::kI32, {3}, i32.data());
  writer.add("scalar", DType::kF32, {}, f32.data());
  writer.add("empty", DType::kF32, {0, 4}, nullptr);
  writer.set_metadata("format", "pt");
  writer.set_metadata("note", "quote \" and unicode \xc3\xa9");
  writer.write(path("m.safetensors"));
  EXPECT_FALSE(fs::exists(path("m.safetensors.tmp")));

  const SafetensorsFile file = SafetensorsFile::open(path("m.safetensors"));
  EXPECT_EQ(file.source(), path("m.safetensors"));
  ASSERT_EQ(file.tensors().size(), 6u);
  std::vector<std::string> names;
  for (const TensorInfo& t : file.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"brain", "empty", "h.0.weight", "half", "ints", "scalar"}));

  EXPECT_EQ(file.read_f32("h.0.weight"), f32);
  EXPECT_EQ(file.find("h.0.weight")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(file.find("h.0.weight")->numel(), 6);
  EXPECT_EQ(file.read_f32("half"), f16_values);
  EXPECT_EQ(file.find("half")->dtype, DType::kF16);
  EXPECT_EQ(file.read_f32("brain"), bf16_values);
  EXPECT_EQ(file.find("brain")->dtype, DType::kBF16);
  EXPECT_EQ(file.read_f32("scalar"), std::vector<float>{1.0f});
  EXPECT_EQ(file.find("scalar")->numel(), 1);
  EXPECT_TRUE(file.read_f32("empty").empty());
  EXPECT_EQ(file.find("empty")->numel(), 0);

  const std::span<const uint8_t> raw = file.raw("ints");
  ASSERT_EQ(raw.size(), 12u);
  std::vector<int32_t> back(3);
  std::memcpy(back.data(), raw.data(), 12);
  EXPECT_EQ(back, i32);
  EXPECT_EQ(file.find("ints")->dtype, DType::kI32);

  EXPECT_EQ(file.metadata().size(), 2u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "quote \" and unicode \xc3\xa9");

  // Data is packed in name order, and the header is padded so data starts 8-byte aligned.
  size_t expected_begin = 0;
  for (const TensorInfo& t : file.tensors()) {
    EXPECT_EQ(t.begin, expected_begin) << t.name;
    expected_begin = t.end;
  }
  const std::vector<uint8_t> bytes = read_bytes(path("m.safetensors"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | bytes[i];
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_len + expected_begin);
}

TEST_F(SafetensorsTest, WriterEmitsTheReferenceLayout) {
  const float a[2] = {1.0f, -2.0f};
  const uint16_t b[1] = {0x3FC0};  // bf16 1.5
  SafetensorsWriter writer;
  writer.add("b", DType::kBF16, {1, 1}, b);  // added first, but written after "a"
  writer.add_f32("a", {2}, a);
  writer.set_metadata("format", "pt");
  writer.write(path("w.safetensors"));

  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1,1],"data_offsets":[8,10]}})";
  ASSERT_EQ(header.size(), 142u);
  header += std::string(2, ' ');  // pad 142 -> 144
  const std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3F,  // 1.0f
                                     0x00, 0x00, 0x00, 0xC0,  // -2.0f
                                     0xC0, 0x3F};             // bf16 1.5
  EXPECT_EQ(read_bytes(path("w.safetensors")), file_bytes(header, data));
}

TEST(Safetensors, ParsesAHandBuiltFile) {
  // Keys in an unusual order, whitespace, a gap between tensors and trailing padding bytes.
  const std::string header =
      R"({ "x" : {"data_offsets": [0, 8], "shape": [2], "dtype": "F32"},
           "h": {"shape": [3], "dtype": "F16", "data_offsets": [12, 18]},
           "__metadata__": {"k": "v"},
           "g": {"dtype": "BF16", "shape": [1], "data_offsets": [18, 20]},
           "u": {"dtype": "U16", "shape": [1, 1], "data_offsets": [20, 22]},
           "z": {"dtype": "I64", "shape": [0], "data_offsets": [22, 22]} }   )";
  const std::vector<uint8_t> data = {
      0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1,  // x = [1.0, -10.0]
      0xAA, 0xBB, 0xCC, 0xDD,                          // unused gap
      0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00,              // h = [1.0, -2.0, 2^-24] in fp16
      0xC0, 0x3F,                                      // g = [1.5] in bf16
      0x34, 0x12,                                      // u = [0x1234]
      0x99};                                           // trailing byte after the last tensor
  const SafetensorsFile file = SafetensorsFile::parse(file_bytes(header, data), "hand");
  ASSERT_EQ(file.tensors().size(), 5u);
  EXPECT_EQ(file.read_f32("x"), (std::vector<float>{1.0f, -10.0f}));
  EXPECT_EQ(file.read_f32("h"), (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24)}));
  EXPECT_EQ(file.read_f32("g"), std::vector<float>{1.5f});
  const TensorInfo* u = file.find("u");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->dtype, DType::kU16);
  EXPECT_EQ(u->begin, 20u);
  EXPECT_EQ(u->end, 22u);
  EXPECT_EQ(file.raw("u")[0], 0x34);
  EXPECT_EQ(file.raw("u")[1], 0x12);
  EXPECT_EQ(file.find("z")->numel(), 0);
  EXPECT_EQ(file.raw("z").size(), 0u);
  EXPECT_EQ(file.metadata().at("k"), "v");
  EXPECT_EQ(file.find("nope"), nullptr);
  expect_error([&] { file.read_f32("u"); }, {"hand", "'u'", "U16", "F32, F16 or BF16"});
  expect_error([&] { file.read_f32("nope"); }, {"hand", "no tensor named 'nope'"});
  expect_error([&] { file.raw("nope"); }, {"no tensor named 'nope'"});
}

TEST(Safetensors, RejectsShortFilesAndBadHeaderLengths) {
  expect_error([] { SafetensorsFile::parse({1, 2, 3}, "crafted.st"); },
               {"crafted.st", "3 bytes", "shorter than the 8-byte"});
  expect_error([] { SafetensorsFile::parse(file_bytes("{}", {}, 100), "crafted.st"); },
               {"crafted.st", "header length 100", "larger than the 2 bytes"});
  expect_error([] { SafetensorsFile::parse(file_bytes("{}", {}, 100'000'001), "crafted.st"); },
               {"crafted.st", "100000001", "limit"});
  expect_error([] { SafetensorsFile::parse(file_bytes("{}", {}, UINT64_MAX - 1), "crafted.st"); },
               {"crafted.st", "limit"});
  // An empty header object is a valid file with no tensors.
  EXPECT_TRUE(SafetensorsFile::parse(file_bytes("{}", {}), "ok").tensors().empty());
}

TEST(Safetensors, RejectsHeadersThatAreNotJsonObjects) {
  expect_parse_error(R"({"a": {"dtype": )", {}, {"not valid JSON"});
  expect_parse_error("\xff\xfe", {}, {"not valid JSON"});
  expect_parse_error("[1, 2]", {}, {"array", "expected an object"});
  expect_parse_error(std::string(100, '[') + std::string(100, ']'), {}, {"nests deeper"});
  expect_parse_error(R"({"a": [1, 2]})", {}, {"tensor 'a'", "array", "expected an object"});
}

TEST(Safetensors, RejectsEntriesWithMissingOrMistypedFields) {
  expect_parse_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", {0, 0, 0, 0},
                     {"tensor 'w'", "no 'dtype'"});
  expect_parse_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", {0, 0, 0, 0},
                     {"tensor 'w'", "no 'shape'"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [1]}})", {0, 0, 0, 0},
                     {"tensor 'w'", "no 'data_offsets'"});
  expect_parse_error(R"({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", {0, 0, 0, 0},
                     {"tensor 'w'", "'dtype'", "expected a string"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})",
                     {0, 0, 0, 0}, {"tensor 'w'", "'shape'", "expected an array"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})",
                     {0, 0, 0, 0}, {"tensor 'w'", "expected integers"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", {0, 0, 0, 0},
                     {"tensor 'w'", "data_offsets", "two integers"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, "4"]}})",
                     {0, 0, 0, 0}, {"tensor 'w'", "data_offsets", "non-negative"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})",
                     {0, 0, 0, 0}, {"tensor 'w'", "data_offsets", "non-negative"});
}

TEST(Safetensors, RejectsUnknownDtypesAndBadShapes) {
  expect_parse_error(R"({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})",
                     std::vector<uint8_t>(8), {"tensor 'w'", "unknown dtype 'C64'"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}})",
                     std::vector<uint8_t>(8), {"tensor 'w'", "negative dimension -1"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",
                     std::vector<uint8_t>(12), {"tensor 'w'", "needs 16 bytes", "span 12 bytes"});
  // 2^32 * 2^32 * 4 elements overflow int64: reported, not wrapped around to a small number.
  expect_parse_error(
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}})",
      {}, {"tensor 'w'", "more elements than fit"});
  // 2^62 elements fit int64 but 2^62 * 4 bytes do not fit 64 bits.
  expect_parse_error(
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", {},
      {"tensor 'w'", "more than 2^64 bytes"});
  expect_parse_error(
      R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", {},
      {"tensor 'w'", "too large"});
  // A zero dimension makes the tensor empty however large the others are.
  const SafetensorsFile file = SafetensorsFile::parse(
      file_bytes(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})",
                 {}),
      "ok");
  EXPECT_EQ(file.find("w")->numel(), 0);
}

TEST(Safetensors, RejectsBadRanges) {
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                     std::vector<uint8_t>(6), {"tensor 'w'", "beyond the data section of 6 bytes"});
  expect_parse_error(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})",
                     std::vector<uint8_t>(8), {"tensor 'w'", "begin 8 is after end 4"});
  expect_parse_error(
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
      std::vector<uint8_t>(12), {"'a'", "'b'", "overlap"});
  // Overlap with a range that is not the immediately preceding one.
  expect_parse_error(
      R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
          "c": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}})",
      std::vector<uint8_t>(16), {"overlap"});
  // Identical ranges overlap too.
  expect_parse_error(
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
      std::vector<uint8_t>(4), {"overlap"});
}

TEST(Safetensors, RejectsMetadataThatIsNotStringToString) {
  expect_parse_error(R"({"__metadata__": {"format": 1}})", {}, {"__metadata__", "'format'", "expected a string"});
  expect_parse_error(R"({"__metadata__": ["a"]})", {}, {"__metadata__", "expected an object"});
  expect_parse_error(R"({"__metadata__": {"a": {"b": "c"}}})", {}, {"__metadata__", "'a'"});
}

TEST_F(SafetensorsTest, OpenNamesTheFile) {
  expect_error([&] { SafetensorsFile::open(path("missing.safetensors")); },
               {path("missing.safetensors"), "no such file"});
  const std::vector<uint8_t> bad =
      file_bytes(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::vector<uint8_t>(8));
  {
    std::ofstream out(path("bad.safetensors"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bad.data()), static_cast<std::streamsize>(bad.size()));
  }
  expect_error([&] { SafetensorsFile::open(path("bad.safetensors")); },
               {path("bad.safetensors"), "tensor 'w'", "needs 12 bytes"});
}

TEST_F(SafetensorsTest, WriterErrors) {
  const float x[2] = {1, 2};
  SafetensorsWriter writer;
  writer.add_f32("x", {2}, x);
  expect_error([&] { writer.add_f32("x", {2}, x); }, {"'x'", "twice"});
  expect_error([&] { writer.add_f32("__metadata__", {2}, x); }, {"reserved"});
  expect_error([&] { writer.add_f32("n", {2, -3}, x); }, {"'n'", "negative dimension -3"});
  expect_error([&] { writer.add_f32("p", {2}, nullptr); }, {"'p'", "no data"});
  const std::string bad = path("no_such_dir/out.safetensors");
  expect_error([&] { writer.write(bad); }, {bad});
  SafetensorsWriter invalid_name;
  invalid_name.add_f32("\xff", {2}, x);
  expect_error([&] { invalid_name.write(path("u.safetensors")); }, {path("u.safetensors"), "header"});
  EXPECT_FALSE(fs::exists(path("u.safetensors")));
  EXPECT_FALSE(fs::exists(path("u.safetensors.tmp")));
  // A write replaces an existing file in one step.
  writer.write(path("x.safetensors"));
  SafetensorsWriter other;
  const float y[1] = {5};
  other.add_f32("y", {1}, y);
  other.write(path("x.safetensors"));
  const SafetensorsFile file = SafetensorsFile::open(path("x.safetensors"));
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.read_f32("y"), std::vector<float>{5.0f});
}

}  // namespace
}  // namespace switchyard::model
