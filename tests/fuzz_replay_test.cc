// A deterministic, always-on cousin of the libFuzzer targets in tests/fuzz/: thousands of seeded
// random mutations of valid safetensors files, token shards, checkpoint indexes, tokenizer.json
// files and API request bodies (bit flips, truncations, random header lengths, spliced bytes; for the JSON files also odd
// numbers and strings in place of real ones, and repeated slices) go through their parsers, which
// must either accept the bytes or throw switchyard::Error (the API's parser: serve::ApiError), never
// anything else. Running under the
// ASan/UBSan build turns any out-of-bounds read or overflow into a failure too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/token_shard.h"
#include "model/safetensors.h"
#include "model/safetensors_set.h"
#include "serve/api_error.h"
#include "serve/api_request.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/rank_bpe_tokenizer.h"
#include "tokenizer/utf8.h"

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

// JSON text mutated as a whole (mutate() above) or where JSON means something: a number or a string
// replaced by an odd one, or a slice repeated elsewhere (which can repeat a key or an entry).
std::string mutate_json(const std::string& text, Rng& rng) {
  auto below = [&](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng.next_u64() % n); };
  // An id near the largest accepted costs a table of that many tokens; the o200k tests check the
  // limit itself, and 300000 stands for large ids here.
  static const char* const kNumbers[] = {"-1", "0", "300000", "1048576", "2147483648", "18446744073709551616",
                                         "1e400", "2.5", "null", "\"7\"", "[]", "{}", "true"};
  // JSON escapes are written as JSON has them: "\\u0000" is a NUL, "\\\\C" is the regex \C.
  static const char* const kStrings[] = {"", "\\u0000", "..", "a/b", "\\u0120", "\xff", "Split",
                                         "ByteLevel", "(", "\\\\C", "a\\\\Kb", "<|endoftext|>", "ab c d",
                                         "model.safetensors"};
  std::string out = text;
  for (int r = 0, rounds = 1 + static_cast<int>(below(2)); r < rounds && !out.empty(); ++r) {
    const size_t at = below(out.size());
    switch (below(4)) {
      case 0: {  // bytes, as for the binary formats
        const std::vector<uint8_t> bytes =
            mutate(std::vector<uint8_t>(out.begin(), out.end()), out.size(), rng);
        out.assign(bytes.begin(), bytes.end());
        break;
      }
      case 1: {  // the number at or after `at`
        const size_t begin = out.find_first_of("-0123456789", at);
        if (begin == std::string::npos) break;
        const size_t end = std::min(out.find_first_not_of("-0123456789", begin), out.size());
        out.replace(begin, end - begin, kNumbers[below(std::size(kNumbers))]);
        break;
      }
      case 2: {  // the contents of the string that starts at or after `at`
        const size_t begin = out.find('"', at);
        const size_t end = begin == std::string::npos ? begin : out.find('"', begin + 1);
        if (end == std::string::npos) break;
        out.replace(begin + 1, end - begin - 1, kStrings[below(std::size(kStrings))]);
        break;
      }
      case 3: {  // a slice repeated at another place
        const std::string slice = out.substr(at, 1 + below(64));
        out.insert(below(out.size() + 1), slice);
        break;
      }
    }
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(FuzzReplay, WeightMapParseAcceptsOrThrowsError) {
  // Each seed with the number of tensors it maps.
  const std::vector<std::pair<std::string, size_t>> seeds = {
      {read_text(std::string(SWITCHYARD_TEST_DATA) + "/gpt_oss_reference/model.safetensors.index.json"), 60},
      {R"({"metadata": {"total_size": 36}, "weight_map": {"a": "model-00001-of-00002.safetensors",)"
       R"( "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}})",
       3}};
  Rng rng(31);
  int accepted = 0, rejected = 0;
  for (const auto& [seed, tensors] : seeds) {
    ASSERT_EQ(model::parse_weight_map(seed, "seed").size(), tensors);
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const std::string text = mutate_json(seed, rng);
      try {
        const auto weight_map = model::parse_weight_map(text, "mutant");
        ++accepted;
        ASSERT_FALSE(weight_map.empty());
        for (const auto& [tensor, shard] : weight_map) {
          ASSERT_TRUE(!shard.empty() && shard != "." && shard != ".." && shard.find('/') == std::string::npos &&
                      shard.find('\0') == std::string::npos)
              << "mutation " << m << " maps " << tensor << " to " << shard;
        }
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        FAIL() << "mutation " << m << " threw something other than switchyard::Error: " << e.what();
      }
    }
  }
  std::printf("weight map mutants: %d accepted, %d rejected\n", accepted, rejected);
  EXPECT_GT(accepted, 500);
  EXPECT_GT(rejected, 1000);
}

// A small tokenizer.json as byte-level files have it: the 256 bytes (id = byte value), merges in
// the order of the ids they make, added tokens, and either pre-tokenizer form.
std::string tokenizer_json_seed(bool split_then_byte_level) {
  using nlohmann::json;
  const auto spell = [](std::string_view bytes) {
    std::string spelled;
    for (const char b : bytes) {
      tokenizer::append_utf8(tokenizer::byte_to_vocab_char(static_cast<uint8_t>(b)), spelled);
    }
    return spelled;
  };
  json vocab = json::object(), merges = json::array();
  for (int b = 0; b < 256; ++b) vocab[spell(std::string(1, static_cast<char>(b)))] = b;
  const std::pair<std::string, std::string> merged[] = {
      {"a", "b"}, {"ab", "c"}, {" ", "t"}, {"h", "e"}, {" t", "he"}};
  for (const auto& [left, right] : merged) {
    const size_t id = vocab.size();
    vocab[spell(left + right)] = id;
    merges.push_back(split_then_byte_level ? json::array({spell(left), spell(right)})
                                           : json(spell(left) + " " + spell(right)));
  }
  const json added = json::array({{{"id", vocab.size()}, {"content", "<|endoftext|>"}},
                                  {{"id", vocab.size() + 1}, {"content", "<|start|>"}}});
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", !split_then_byte_level}};
  const json split = {{"type", "Split"}, {"pattern", {{"Regex", tokenizer::kO200kPattern}}},
                      {"behavior", "Isolated"}, {"invert", false}};
  const json sequence = {{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level})}};
  return json({{"added_tokens", added},
               {"pre_tokenizer", split_then_byte_level ? sequence : byte_level},
               {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}})
      .dump();
}

TEST(FuzzReplay, TokenizerJsonParseAcceptsOrThrowsError) {
  // Text with merges, a special token, invalid UTF-8 and a letter outside ASCII.
  const std::string sample = "abc the\n\nab<|start|>\xff caf\xc3\xa9 12345";
  Rng rng(97);
  int accepted = 0, rejected = 0;
  for (const bool split_then_byte_level : {true, false}) {
    const std::string seed = tokenizer_json_seed(split_then_byte_level);
    const tokenizer::RankBpeTokenizer valid("seed", tokenizer::parse_hf_tokenizer_json(seed, "seed"));
    ASSERT_EQ(valid.encode("abc the"), (std::vector<int32_t>{257, 260}));
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const std::string text = mutate_json(seed, rng);
      try {
        const tokenizer::RankBpeTokenizer t("mutant", tokenizer::parse_hf_tokenizer_json(text, "mutant"));
        // Whatever the vocabulary, decoding gives back the bytes encoded (or encoding throws Error,
        // where the file's pattern skips some of the text).
        ASSERT_EQ(t.decode(t.encode(sample)), sample) << "mutation " << m;
        ASSERT_EQ(t.decode(t.encode_with_special_tokens(sample)), sample) << "mutation " << m;
        ++accepted;
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        FAIL() << "mutation " << m << " threw something other than switchyard::Error: " << e.what();
      }
    }
  }
  std::printf("tokenizer.json mutants: %d accepted, %d rejected\n", accepted, rejected);
  // Most mutants of a tokenizer.json break one of its 256 byte tokens, which is rightly refused.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 1000);
}

TEST(FuzzReplay, ApiRequestParseAcceptsOrThrowsApiError) {
  using serve::Endpoint;
  const serve::ServedModelLimits limits{.name = "tiny", .context_length = 256, .vocab_size = 1000};
  const std::pair<Endpoint, std::string> seeds[] = {
      {Endpoint::kCompletions,
       R"({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,)"
       R"( "top_k": 40, "seed": 7, "stop": ["\n\n", "END"], "logprobs": 2, "n": 1, "stream": true,)"
       R"( "stream_options": {"include_usage": true}, "user": "u"})"},
      {Endpoint::kCompletions, R"({"model": "tiny", "prompt": [1, 2, 999], "stop": "x", "max_tokens": 255})"},
      {Endpoint::kChatCompletions,
       R"({"model": "tiny", "messages": [{"role": "system", "content": "Be brief."},)"
       R"( {"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": null},)"
       R"( {"role": "user", "content": "caf\u00e9"}], "reasoning_effort": "low", "max_completion_tokens": 8,)"
       R"( "logprobs": true, "top_logprobs": 3})"}};
  Rng rng(2024);
  int accepted = 0, rejected = 0;
  for (const auto& [endpoint, seed] : seeds) {
    ASSERT_NO_THROW(serve::parse_api_request(endpoint, seed, limits));
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const std::string text = mutate_json(seed, rng);
      try {
        const serve::ApiRequest r = serve::parse_api_request(endpoint, text, limits);
        ++accepted;
        ASSERT_TRUE(!r.max_tokens || (*r.max_tokens >= 1 && *r.max_tokens < limits.context_length)) << text;
        ASSERT_LE(r.stop.size(), 4u) << text;
        for (const std::string& s : r.stop) ASSERT_FALSE(s.empty()) << text;
        for (const int32_t t : r.prompt_tokens) ASSERT_TRUE(t >= 0 && t < limits.vocab_size) << text;
        ASSERT_TRUE(r.sampling.temperature >= 0 && r.sampling.temperature <= 2) << text;
        ASSERT_TRUE(r.sampling.top_p > 0 && r.sampling.top_p <= 1) << text;
        ASSERT_TRUE(endpoint == Endpoint::kCompletions ? r.prompt_text || !r.prompt_tokens.empty()
                                                       : !r.messages.empty())
            << text;
      } catch (const serve::ApiError& e) {
        ++rejected;
        ASSERT_TRUE(e.status == 400 || e.status == 404) << e.status << " for " << text;
        ASSERT_FALSE(e.message.empty());
      } catch (const std::exception& e) {
        FAIL() << "mutation " << m << " threw something other than ApiError: " << e.what();
      }
    }
  }
  std::printf("API request mutants: %d accepted, %d rejected\n", accepted, rejected);
  EXPECT_GT(accepted, 500);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace switchyard
