// GPT-2 and byte tokenizers against reference files written by tools/gpt2_tokenizer_reference.py,
// an independent Python implementation of OpenAI's encoder algorithm.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/gpt2_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenize_text.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace switchyard::tokenizer {
namespace {

namespace fs = std::filesystem;

const std::string kTestData = SWITCHYARD_TEST_DATA;
const std::string kSharedData = SWITCHYARD_SHARED_DATA;
const std::string kVocabDir = kSharedData + "/gpt2";
const std::string kMissingVocabulary =
    "missing " + kVocabDir + "/encoder.json (the GPT-2 vocabulary of the shared data directory)";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  ASSERT_TRUE(out) << "cannot write " << path;
}

std::string from_hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

// Runs `body` and returns the message of the Error it throws (failing the test if it throws none).
template <typename Body>
std::string error_message(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected switchyard::Error";
  return "";
}

// Loading the real vocabulary takes a moment, so every test shares one tokenizer.
class Gpt2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(kVocabDir + "/encoder.json")) tokenizer_ = new Gpt2Tokenizer(kVocabDir);
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override {
    if (tokenizer_ == nullptr) GTEST_SKIP() << kMissingVocabulary;
  }
  static Gpt2Tokenizer* tokenizer_;
};
Gpt2Tokenizer* Gpt2Test::tokenizer_ = nullptr;

TEST_F(Gpt2Test, VocabularyFacts) {
  EXPECT_EQ(tokenizer_->name(), "gpt2");
  EXPECT_EQ(tokenizer_->vocab_size(), 50257);
  EXPECT_EQ(tokenizer_->end_of_text(), 50256);
  EXPECT_EQ(tokenizer_->decode(std::vector<int32_t>{50256}), "<|endoftext|>");
  EXPECT_EQ(tokenizer_->token_bytes(220), " ");
  EXPECT_EQ(tokenizer_->token_bytes(198), "\n");
  // Published GPT-2 ids: "Hello world" and a space-prefixed word.
  EXPECT_EQ(tokenizer_->encode("Hello world"), (std::vector<int32_t>{15496, 995}));
}

TEST_F(Gpt2Test, MatchesReferenceOnTinyShakespeare) {
  const std::string text_path = kSharedData + "/tinyshakespeare.txt";
  if (!fs::exists(text_path)) GTEST_SKIP() << "missing " << text_path;
  const std::string text = read_file(text_path);
  const std::string raw = read_file(kTestData + "/tokenizer_tinyshakespeare_ids.u16");
  ASSERT_EQ(raw.size() % 2, 0u);
  std::vector<int32_t> expected(raw.size() / 2);
  for (size_t i = 0; i < expected.size(); ++i) {
    expected[i] = static_cast<uint8_t>(raw[2 * i]) | (static_cast<uint8_t>(raw[2 * i + 1]) << 8);
  }
  ASSERT_EQ(expected.size(), 338025u);  // the reference's count

  const std::vector<int32_t> ids = tokenizer_->encode(text);
  ASSERT_EQ(ids.size(), expected.size());
  const auto mismatch = std::mismatch(ids.begin(), ids.end(), expected.begin());
  EXPECT_TRUE(mismatch.first == ids.end())
      << "first difference at token " << (mismatch.first - ids.begin()) << ": got " << *mismatch.first
      << ", reference " << *mismatch.second;
  EXPECT_EQ(tokenizer_->decode(ids), text);
  // A second pass is served from the chunk cache and must not differ.
  EXPECT_EQ(tokenizer_->encode(text), ids);
}

TEST_F(Gpt2Test, MatchesReferenceOnHardCases) {
  const auto cases = nlohmann::json::parse(read_file(kTestData + "/tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 380u);
  std::string all_inputs;
  std::vector<int32_t> all_ids;
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    const std::string input = from_hex(c.at("input_hex").get<std::string>());
    const auto expected = c.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->encode(input), expected) << "case " << name;
    EXPECT_EQ(tokenizer_->decode(expected), input) << "case " << name;
  }
}

TEST_F(Gpt2Test, SpecialTokenTextIsOrdinaryText) {
  const std::vector<int32_t> ids = tokenizer_->encode("<|endoftext|>");
  EXPECT_GT(ids.size(), 1u);
  for (const int32_t id : ids) EXPECT_NE(id, tokenizer_->end_of_text());
}

TEST_F(Gpt2Test, RoundTripsRandomByteStrings) {
  std::mt19937 rng(1234);
  const std::vector<std::string> pieces = {" ", "a", "Z", "7", "'s", "\n", "\t", "\xC3\xA9", "\xE4\xB8\xAD",
                                           "\xF0\x9F\x98\x80", "\x80", "\xFF", "\xC3", "\xED\xA0\x80", "!"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string input;
    const int length = static_cast<int>(rng() % 120);
    for (int i = 0; i < length; ++i) {
      if (trial % 2 == 0) {
        input.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        input += pieces[rng() % pieces.size()];
      }
    }
    const std::vector<int32_t> ids = tokenizer_->encode(input);
    ASSERT_EQ(tokenizer_->decode(ids), input) << "trial " << trial;
    for (const int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tokenizer_->vocab_size());
  }
}

TEST_F(Gpt2Test, EncodesLongChunks) {
  // Chunks of 300 kB (not cached) go through the heap-based merge loop. The reference gives these
  // periodic ids for 3000-byte runs (tools/gpt2_tokenizer_reference.py --encode); a run 100 times
  // longer must give the same period.
  struct Run {
    std::string unit;
    int units_per_period;
    std::vector<int32_t> period;
  };
  const Run runs[] = {{"ab", 1, {397}},
                      {" ", 1, {220}},
                      {"9", 4, {24214}},
                      {"\xE6\xBC\xA2", 1, {162, 120, 95}},
                      {"\x80", 1, {222}}};
  for (const Run& run : runs) {
    std::string input;
    std::vector<int32_t> expected;
    while (input.size() < 300000) {
      for (int i = 0; i < run.units_per_period; ++i) input += run.unit;
      expected.insert(expected.end(), run.period.begin(), run.period.end());
    }
    const std::vector<int32_t> ids = tokenizer_->encode(input);
    EXPECT_EQ(ids, expected) << "run of " << input.size() << " bytes of \"" << run.unit << "\"";
    EXPECT_EQ(tokenizer_->decode(ids), input);
  }
}

TEST_F(Gpt2Test, DecodeRejectsIdsOutOfRange) {
  const std::string high = error_message([&] { tokenizer_->decode(std::vector<int32_t>{15496, 50257}); });
  EXPECT_NE(high.find("50257"), std::string::npos) << high;
  EXPECT_NE(high.find("position 1"), std::string::npos) << high;
  const std::string negative = error_message([&] { tokenizer_->decode(std::vector<int32_t>{-1}); });
  EXPECT_NE(negative.find("-1"), std::string::npos) << negative;
}

// The pre-tokenizer must class every code point (letter, number, whitespace, other) as the
// reference's regex module does. A two-character text is one chunk exactly when both characters
// are in the same class, so four probes per code point tell its class.
TEST(Gpt2Pretokenizer, ClassesEveryCodePointLikeTheReference) {
  const Gpt2Pretokenizer pretokenizer;
  std::istringstream runs(read_file(kTestData + "/tokenizer_unicode_classes.txt"));
  const std::pair<char, std::string> probes[] = {{'O', "."}, {'L', "a"}, {'N', "1"}, {'S', "\t"}};
  std::vector<Chunk> chunks;
  std::string text;
  size_t checked = 0, mismatches = 0;
  std::string line;
  while (std::getline(runs, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string first_hex, last_hex;
    char expected = 0;
    fields >> first_hex >> last_hex >> expected;
    const auto first = static_cast<char32_t>(std::stoul(first_hex, nullptr, 16));
    const auto last = static_cast<char32_t>(std::stoul(last_hex, nullptr, 16));
    for (char32_t cp = first; cp <= last; ++cp) {
      char got = '?';
      for (const auto& [cls, probe] : probes) {
        text = probe;
        append_utf8(cp, text);
        pretokenizer.split(text, chunks);
        if (chunks.size() == 1) {
          got = cls;
          break;
        }
      }
      ++checked;
      if (got != expected && ++mismatches <= 20) {
        ADD_FAILURE() << "U+" << std::hex << static_cast<uint32_t>(cp) << ": class " << got
                      << ", reference " << expected;
      }
    }
  }
  EXPECT_EQ(checked, 0x110000u - 0x800u);  // every code point but the surrogates
  EXPECT_EQ(mismatches, 0u);
}

TEST(Gpt2Pretokenizer, ChunksCoverTheTextContiguously) {
  const Gpt2Pretokenizer pretokenizer;
  std::vector<Chunk> chunks;
  const std::string text = "Hi  there\xFF\xC3(x) 'll\n\n  y \xE2\x82\xAC";
  pretokenizer.split(text, chunks);
  std::vector<std::string> parts;
  size_t expected_begin = 0;
  for (const Chunk& c : chunks) {
    EXPECT_EQ(c.begin, expected_begin);
    parts.push_back(text.substr(c.begin, c.end - c.begin));
    expected_begin = c.end;
  }
  EXPECT_EQ(expected_begin, text.size());
  const std::vector<std::string> expected = {"Hi", " ", " there", "\xFF\xC3(", "x", ")", " '",
                                             "ll", "\n\n ", " y", " \xE2\x82\xAC"};
  EXPECT_EQ(parts, expected);
}

TEST(Gpt2Pretokenizer, InterpreterAndJitAgree) {
  const Gpt2Pretokenizer jit(true), interpreter(false);
  const auto cases = nlohmann::json::parse(read_file(kTestData + "/tokenizer_cases.json"));
  std::vector<Chunk> a, b;
  const auto same = [](const std::vector<Chunk>& x, const std::vector<Chunk>& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end(),
                      [](const Chunk& p, const Chunk& q) { return p.begin == q.begin && p.end == q.end; });
  };
  for (const auto& c : cases) {
    const std::string input = from_hex(c.at("input_hex").get<std::string>());
    jit.split(input, a);
    interpreter.split(input, b);
    EXPECT_TRUE(same(a, b)) << "case " << c.at("name").get<std::string>();
  }
  const std::string spaces(200000, ' ');
  jit.split(spaces + "x" + spaces, a);
  interpreter.split(spaces + "x" + spaces, b);
  EXPECT_EQ(a.size(), 3u);  // all spaces but one, " x", the trailing spaces
  EXPECT_TRUE(same(a, b));
}

TEST(Utf8, FollowsPythonsStrictDecoder) {
  const auto length = [](const std::string& s) {
    char32_t cp = 0;
    return utf8_sequence_length(reinterpret_cast<const unsigned char*>(s.data()), s.size(), cp);
  };
  EXPECT_EQ(length("A"), 1u);
  EXPECT_EQ(length("\xC2\x80"), 2u);
  EXPECT_EQ(length("\xDF\xBF"), 2u);
  EXPECT_EQ(length("\xC0\x80"), 0u);  // overlong
  EXPECT_EQ(length("\xC1\xBF"), 0u);
  EXPECT_EQ(length("\xE0\xA0\x80"), 3u);
  EXPECT_EQ(length("\xE0\x9F\xBF"), 0u);  // overlong
  EXPECT_EQ(length("\xED\x9F\xBF"), 3u);  // U+D7FF
  EXPECT_EQ(length("\xED\xA0\x80"), 0u);  // surrogate
  EXPECT_EQ(length("\xEF\xBF\xBF"), 3u);
  EXPECT_EQ(length("\xF0\x90\x80\x80"), 4u);
  EXPECT_EQ(length("\xF0\x8F\xBF\xBF"), 0u);  // overlong
  EXPECT_EQ(length("\xF4\x8F\xBF\xBF"), 4u);  // U+10FFFF
  EXPECT_EQ(length("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(length("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(length("\xE2\x82"), 0u);  // truncated
  EXPECT_EQ(length("\xE2\x82\x41"), 0u);
  EXPECT_EQ(length("\x80"), 0u);
  EXPECT_EQ(length("\xFF"), 0u);
}

// A temporary vocabulary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("switchyard_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// A tiny but complete vocabulary: the 256 one-byte tokens (ids 0..255 in byte order), then
// "ab" = 256, "abc" = 257, "<|endoftext|>" = 258; merges "a b" then "ab c".
nlohmann::json tiny_encoder() {
  nlohmann::json encoder = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string name;
    append_utf8(byte_to_vocab_char(static_cast<uint8_t>(b)), name);
    encoder[name] = b;
  }
  encoder["ab"] = 256;
  encoder["abc"] = 257;
  encoder["<|endoftext|>"] = 258;
  return encoder;
}

TEST(Gpt2Vocab, LoadsHuggingFaceFileNames) {
  TempDir dir;
  write_file(dir.path() / "vocab.json", tiny_encoder().dump());
  write_file(dir.path() / "merges.txt", "#version: 0.2\r\na b\r\nab c\r\n");
  const auto tokenizer = load_gpt2_tokenizer(dir.path().string());
  EXPECT_EQ(tokenizer->vocab_size(), 259);
  EXPECT_EQ(tokenizer->end_of_text(), 258);
  EXPECT_EQ(tokenizer->encode("abc ab abab x"),
            (std::vector<int32_t>{257, ' ', 256, ' ', 256, 256, ' ', 'x'}))
      << "chunks are \"abc\", \" ab\", \" abab\", \" x\"; no merge involves the space";
  EXPECT_EQ(tokenizer->encode("abcab"), (std::vector<int32_t>{257, 256}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{257, 256, 258}), "abcab<|endoftext|>");
}

TEST(Gpt2Vocab, ReportsMissingAndMalformedFiles) {
  const std::string missing =
      error_message([] { load_gpt2_tokenizer("/nonexistent/switchyard/vocab"); });
  EXPECT_NE(missing.find("/nonexistent/switchyard/vocab"), std::string::npos) << missing;

  TempDir dir;
  const std::string empty_dir = error_message([&] { load_gpt2_tokenizer(dir.path().string()); });
  EXPECT_NE(empty_dir.find("encoder.json"), std::string::npos) << empty_dir;

  const fs::path encoder = dir.path() / "encoder.json";
  const fs::path merges = dir.path() / "vocab.bpe";
  write_file(encoder, tiny_encoder().dump());
  const std::string no_merges = error_message([&] { load_gpt2_tokenizer(dir.path().string()); });
  EXPECT_NE(no_merges.find("vocab.bpe"), std::string::npos) << no_merges;

  write_file(merges, "#version: 0.2\na b\n");
  const auto expect_error = [&](const std::string& encoder_json, const std::string& merges_text,
                                const std::string& fragment) {
    write_file(encoder, encoder_json);
    write_file(merges, merges_text);
    const std::string message = error_message([&] { load_gpt2_tokenizer(dir.path().string()); });
    EXPECT_NE(message.find(fragment), std::string::npos) << "expected \"" << fragment << "\" in: " << message;
  };
  const std::string good = tiny_encoder().dump();
  expect_error(good.substr(0, good.size() / 2), "", "malformed JSON");
  expect_error("[1, 2, 3]", "", "expected a JSON object");
  nlohmann::json bad = tiny_encoder();
  bad["ab"] = "256";
  expect_error(bad.dump(), "", "expected an integer id");
  bad = tiny_encoder();
  bad["ab"] = 5;
  expect_error(bad.dump(), "", "more than one token");
  bad = tiny_encoder();
  bad["ab"] = 400;
  expect_error(bad.dump(), "", "[0, 259)");
  bad = tiny_encoder();
  bad.erase("a");
  bad["zz"] = 'a';
  expect_error(bad.dump(), "", "byte 0x61");
  bad = tiny_encoder();
  bad["a b"] = 256;
  bad.erase("ab");
  expect_error(bad.dump(), "", "outside GPT-2's 256-character byte alphabet");
  expect_error(good, "#version: 0.2\na b\nab q\n", "vocab.bpe:3: token \"abq\" is not in");
  expect_error(good, "#version: 0.2\na b c\n", "vocab.bpe:2: expected two tokens");
  expect_error(good, "#version: 0.2\nab\n", "vocab.bpe:2: expected two tokens");
}

TEST(ByteTokenizer, RoundTripsEveryByte) {
  const auto tokenizer = make_byte_tokenizer();
  EXPECT_EQ(tokenizer->name(), "byte");
  EXPECT_EQ(tokenizer->vocab_size(), 256);
  EXPECT_EQ(tokenizer->end_of_text(), -1);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<int32_t> ids = tokenizer->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tokenizer->decode(ids), all);
  EXPECT_TRUE(tokenizer->encode("").empty());
  const std::string message = error_message([&] { tokenizer->decode(std::vector<int32_t>{65, 256}); });
  EXPECT_NE(message.find("256"), std::string::npos) << message;
}

TEST(TokenizeText, FormatsAndParsesIds) {
  EXPECT_EQ(format_ids(std::vector<int32_t>{15496, 995, 0}), "15496 995 0\n");
  EXPECT_EQ(format_ids(std::vector<int32_t>{}), "\n");
  EXPECT_EQ(parse_ids(" 15496\t995\n\n0 -3\r\n"), (std::vector<int32_t>{15496, 995, 0, -3}));
  EXPECT_TRUE(parse_ids("  \n").empty());
  const std::string word = error_message([] { parse_ids("1 2 x3 4"); });
  EXPECT_NE(word.find("\"x3\""), std::string::npos) << word;
  const std::string trailing = error_message([] { parse_ids("12abc"); });
  EXPECT_NE(trailing.find("\"12abc\""), std::string::npos) << trailing;
  const std::string huge = error_message([] { parse_ids("99999999999"); });
  EXPECT_NE(huge.find("99999999999"), std::string::npos) << huge;
}

TEST(TokenizeText, RunsTheCommandLogic) {
  TokenizeOptions byte_options;
  byte_options.tokenizer = "byte";
  EXPECT_EQ(run_tokenize(byte_options, "Hi\n"), "72 105 10\n");
  byte_options.decode = true;
  EXPECT_EQ(run_tokenize(byte_options, "72 105\n10"), "Hi\n");
  const std::string bad = error_message([&] { run_tokenize(byte_options, "72 1.5"); });
  EXPECT_NE(bad.find("\"1.5\""), std::string::npos) << bad;

  TokenizeOptions unknown;
  unknown.tokenizer = "sentencepiece";
  EXPECT_NE(error_message([&] { run_tokenize(unknown, ""); }).find("sentencepiece"), std::string::npos);

  if (!fs::exists(kVocabDir + "/encoder.json")) GTEST_SKIP() << kMissingVocabulary;
  TokenizeOptions gpt2;
  gpt2.vocab = kVocabDir;
  EXPECT_EQ(run_tokenize(gpt2, "Hello world"), "15496 995\n");
  gpt2.decode = true;
  EXPECT_EQ(run_tokenize(gpt2, "15496 995 50256"), "Hello world<|endoftext|>");
  const std::string out_of_range = error_message([&] { run_tokenize(gpt2, "15496 60000"); });
  EXPECT_NE(out_of_range.find("60000"), std::string::npos) << out_of_range;
}

TEST(TokenizeText, FindsTheVocabularyDirectory) {
  EXPECT_EQ(find_gpt2_vocab_directory("/some/explicit/dir"), "/some/explicit/dir");

  const char* saved_env = std::getenv("SWITCHYARD_GPT2_VOCAB");
  const std::string saved_env_value = saved_env ? saved_env : "";
  const fs::path saved_cwd = fs::current_path();
  TempDir dir;
  fs::create_directories(dir.path() / "work");
  fs::current_path(dir.path() / "work");

  ::setenv("SWITCHYARD_GPT2_VOCAB", "/nonexistent/gpt2_vocab", 1);
  const std::string message = error_message([] { find_gpt2_vocab_directory(""); });
  EXPECT_NE(message.find("/nonexistent/gpt2_vocab"), std::string::npos) << message;
  EXPECT_NE(message.find("../shared/data/gpt2"), std::string::npos) << message;
  EXPECT_NE(message.find("--vocab"), std::string::npos) << message;

  // ../shared/data/gpt2 relative to the working directory is the fallback.
  fs::create_directories(dir.path() / "shared" / "data" / "gpt2");
  EXPECT_EQ(find_gpt2_vocab_directory(""), "../shared/data/gpt2");
  // The environment variable comes first when it names a directory.
  ::setenv("SWITCHYARD_GPT2_VOCAB", dir.path().c_str(), 1);
  EXPECT_EQ(find_gpt2_vocab_directory(""), dir.path().string());

  fs::current_path(saved_cwd);
  if (saved_env) {
    ::setenv("SWITCHYARD_GPT2_VOCAB", saved_env_value.c_str(), 1);
  } else {
    ::unsetenv("SWITCHYARD_GPT2_VOCAB");
  }
}

}  // namespace
}  // namespace switchyard::tokenizer
