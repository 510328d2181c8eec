// o200k_harmony: ids identical to js-tiktoken's on a varied corpus (tests/data/o200k_reference.json,
// written by tools/o200k_reference.mjs), ids derived by hand from the ranks file, the merge loop
// against the reference's plain quadratic loop, special tokens, invalid UTF-8, and the
// tokenizer.json loader.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "expect_error.h"
#include "temp_dir_test_base.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/o200k.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/rank_bpe.h"
#include "tokenizer/rank_bpe_tokenizer.h"
#include "tokenizer/tiktoken_file.h"
#include "tokenizer/utf8.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::tokenizer {
namespace {

const std::string kRanksPath = std::string(SWITCHYARD_SHARED_DATA) + "/o200k/o200k_base.tiktoken";

// Loading the 200k ranks takes a moment: one tokenizer for the whole file.
const Tokenizer& o200k() {
  static const std::unique_ptr<Tokenizer> tokenizer = load_o200k_tokenizer(kRanksPath);
  return *tokenizer;
}

const RankMap& o200k_ranks() {
  static const RankMap ranks = read_tiktoken_ranks(kRanksPath);
  return ranks;
}

nlohmann::json reference() {
  std::ifstream in(std::string(SWITCHYARD_TEST_DATA) + "/o200k_reference.json");
  return nlohmann::json::parse(in);
}

// The rank on the ranks-file line that starts with `base64` and a space, read without the loader.
int32_t rank_in_file(const std::string& base64) {
  std::ifstream in(kRanksPath);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(base64 + " ")) return std::stoi(line.substr(base64.size() + 1));
  }
  return -1;
}

// The reference's merge loop, quadratic but plainly right: merge the lowest-ranked (then leftmost)
// pair until no pair has a rank.
std::vector<int32_t> reference_merge(const RankMap& ranks, const std::string& chunk) {
  std::vector<std::string> parts;
  for (const char c : chunk) parts.emplace_back(1, c);
  while (parts.size() > 1) {
    int32_t best_rank = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto it = ranks.find(parts[i] + parts[i + 1]);
      if (it != ranks.end() && (best_rank < 0 || it->second < best_rank)) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank < 0) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + static_cast<ptrdiff_t>(best) + 1);
  }
  std::vector<int32_t> ids;
  for (const std::string& part : parts) ids.push_back(ranks.at(part));
  return ids;
}

TEST(O200k, Shape) {
  const Tokenizer& t = o200k();
  EXPECT_EQ(t.name(), "o200k");
  EXPECT_EQ(t.vocab_size(), 201088);
  EXPECT_EQ(t.end_of_text(), 199999);
  EXPECT_EQ(o200k_ranks().size(), 199998u);
}

TEST(O200k, MatchesJsTiktokenOnTheCorpus) {
  const nlohmann::json cases = reference()["plain"];
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const std::vector<int32_t> expected = c["ids"];
    EXPECT_EQ(o200k().encode(text), expected) << "text: " << text;
    EXPECT_EQ(o200k().decode(expected), text);
  }
}

TEST(O200k, MatchesJsTiktokenWithSpecialTokens) {
  const nlohmann::json cases = reference()["with_special_tokens"];
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const std::vector<int32_t> expected = c["ids"];
    EXPECT_EQ(o200k().encode_with_special_tokens(text), expected) << "text: " << text;
    EXPECT_EQ(o200k().decode(expected), text);
  }
}

TEST(O200k, IdsDerivedByHandFromTheRanksFile) {
  // o200k's first 94 ranks are the printable ASCII bytes '!'..'~' in order, as in GPT-2.
  for (int c = '!'; c <= '~'; ++c) {
    EXPECT_EQ(o200k().encode(std::string(1, static_cast<char>(c))), std::vector<int32_t>{c - '!'});
  }
  // "hello" and " world" are whole tokens (base64 aGVsbG8= and IHdvcmxk).
  const int32_t hello = rank_in_file("aGVsbG8="), world = rank_in_file("IHdvcmxk");
  ASSERT_GE(hello, 0);
  ASSERT_GE(world, 0);
  EXPECT_EQ(o200k().encode("hello world"), (std::vector<int32_t>{hello, world}));
  // The pattern cuts digits into runs of at most three: "1234567" is "123" "456" "7".
  EXPECT_EQ(o200k().encode("1234567"),
            (std::vector<int32_t>{rank_in_file("MTIz"), rank_in_file("NDU2"), rank_in_file("Nw==")}));
}

TEST(O200k, MergeLoopAgreesWithTheQuadraticReference) {
  std::mt19937 rng(7);
  const std::string alphabets[] = {"abcdefghijklmnopqrstuvwxyz", "aaab", "0123456789 .,;!?-\n",
                                   "\xD0\xB0\xD0\xB1\xD0\xB2\xE4\xB8\xAD\xE6\x96\x87"};
  const RankBpe bpe(o200k_ranks());
  for (const std::string& alphabet : alphabets) {
    for (int trial = 0; trial < 20; ++trial) {
      std::string chunk;
      const int length = 2 + static_cast<int>(rng() % 300);
      for (int i = 0; i < length; ++i) chunk.push_back(alphabet[rng() % alphabet.size()]);
      std::vector<int32_t> ids;
      bpe.encode(chunk, ids);
      const std::vector<int32_t> expected =
          o200k_ranks().contains(chunk) ? std::vector<int32_t>{o200k_ranks().at(chunk)}
                                         : reference_merge(o200k_ranks(), chunk);
      EXPECT_EQ(ids, expected) << "chunk: " << chunk;
    }
  }
}

TEST(O200k, SpecialTokensOnlyWhenAskedFor) {
  const std::string chat = "<|start|>user<|message|>hi<|end|>";
  std::vector<int32_t> expected = {200006};
  for (const int32_t id : o200k().encode("user")) expected.push_back(id);
  expected.push_back(200008);
  for (const int32_t id : o200k().encode("hi")) expected.push_back(id);
  expected.push_back(200007);
  EXPECT_EQ(o200k().encode_with_special_tokens(chat), expected);

  const std::vector<int32_t> plain = o200k().encode(chat);
  EXPECT_TRUE(std::all_of(plain.begin(), plain.end(), [](int32_t id) { return id < 199998; }));
  EXPECT_EQ(o200k().decode(plain), chat);
}

TEST(O200k, SpecialTokenTexts) {
  const std::pair<int32_t, std::string> expected[] = {
      {199998, "<|startoftext|>"}, {199999, "<|endoftext|>"}, {200000, "<|reserved_200000|>"},
      {200002, "<|return|>"},      {200003, "<|constrain|>"}, {200005, "<|channel|>"},
      {200006, "<|start|>"},       {200007, "<|end|>"},       {200008, "<|message|>"},
      {200012, "<|call|>"},        {200018, "<|endofprompt|>"}, {201087, "<|reserved_201087|>"}};
  for (const auto& [id, text] : expected) {
    const std::vector<int32_t> ids = {id};
    EXPECT_EQ(o200k().decode(ids), text);
    EXPECT_EQ(o200k().encode_with_special_tokens(text), ids);
  }
}

TEST(O200k, OutOfRangeIdsAreErrorsNamingTheId) {
  expect_error([] { o200k().decode(std::vector<int32_t>{1, 201088}); }, {"201088", "position 1"});
  expect_error([] { o200k().decode(std::vector<int32_t>{-3}); }, {"-3"});
}

TEST(O200k, InvalidUtf8RoundTripsAsSingleBytes) {
  const int32_t byte_ff = rank_in_file("/w==");  // the one-byte token 0xFF
  ASSERT_GE(byte_ff, 0);
  EXPECT_EQ(o200k().encode("\xFF"), std::vector<int32_t>{byte_ff});
  const std::string inputs[] = {"abc\xFF\xFE", "\x80\x80 caf\xC3", "ok \xED\xA0\x80 surrogate",
                                std::string("nul\0byte", 8), "\xF4\x90\x80\x80 beyond"};
  for (const std::string& text : inputs) {
    EXPECT_EQ(o200k().decode(o200k().encode(text)), text);
  }
  // An invalid byte is "other", like punctuation: it joins the word that follows it.
  const std::vector<int32_t> ids = o200k().encode("\xFFhello");
  EXPECT_EQ(o200k().decode(ids), "\xFFhello");
  EXPECT_EQ(ids.front(), byte_ff);
}

TEST(O200k, LongChunksRoundTrip) {
  // One chunk of 200,000 letters: quadratic merging would take minutes.
  const std::string letters(200000, 'a');
  const std::vector<int32_t> ids = o200k().encode(letters);
  EXPECT_LT(ids.size(), letters.size() / 4);
  EXPECT_EQ(o200k().decode(ids), letters);
}

TEST(O200k, EncodesTinyShakespeareExactlyBack) {
  std::ifstream in(std::string(SWITCHYARD_SHARED_DATA) + "/tinyshakespeare.txt", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(text.size(), 1000000u);
  const std::vector<int32_t> ids = o200k().encode(text);
  EXPECT_EQ(o200k().decode(ids), text);
  // js-tiktoken's ids for the whole text, by count and FNV-1a hash of their little-endian bytes.
  const nlohmann::json whole = reference()["tinyshakespeare"];
  EXPECT_EQ(ids.size(), whole["tokens"].get<size_t>());
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const int32_t id : ids) {
    for (int b = 0; b < 4; ++b) {
      hash ^= (static_cast<uint32_t>(id) >> (8 * b)) & 0xFF;
      hash *= 0x100000001b3ULL;
    }
  }
  EXPECT_EQ(fmt::format("{:016x}", hash), whole["fnv1a64"].get<std::string>());
  // The corpus's first 3,000 characters are in the reference; the whole text starts the same way.
  const nlohmann::json cases = reference()["plain"];
  const nlohmann::json& slice = cases.back();
  const std::string head = slice["text"];
  ASSERT_TRUE(text.starts_with(head));
  const std::vector<int32_t> head_ids = slice["ids"];
  EXPECT_EQ(o200k().encode(head), head_ids);
}

class O200kFiles : public TempDirTest {
 protected:
  void write(const std::string& name, const std::string& contents) const {
    std::ofstream(path(name), std::ios::binary) << contents;
  }
};

TEST_F(O200kFiles, MissingAndMalformedRanksFiles) {
  expect_error([&] { load_o200k_tokenizer(path("none.tiktoken")); }, {path("none.tiktoken"), "no such file"});
  write("bad.tiktoken", "IQ== 0\nnot base64! 1\n");
  expect_error([&] { load_o200k_tokenizer(path("bad.tiktoken")); }, {path("bad.tiktoken") + ":2"});
  write("twice.tiktoken", "IQ== 0\nIg== 0\n");
  expect_error([&] { load_o200k_tokenizer(path("twice.tiktoken")); }, {":2", "rank 0", "twice"});
  write("few.tiktoken", "IQ== 0\n");
  expect_error([&] { load_o200k_tokenizer(path("few.tiktoken")); }, {"few.tiktoken", "0x00", "256"});
}

TEST_F(O200kFiles, FindsTheRanksFile) {
  EXPECT_EQ(find_o200k_file("/explicit.tiktoken"), "/explicit.tiktoken");
  write("r.tiktoken", "x");
  ::setenv("SWITCHYARD_O200K", path("r.tiktoken").c_str(), 1);
  EXPECT_EQ(find_o200k_file(""), path("r.tiktoken"));
  ::setenv("SWITCHYARD_O200K", path("missing.tiktoken").c_str(), 1);
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);  // no ../shared/data here
  expect_error([] { find_o200k_file(""); }, {"missing.tiktoken", "--vocab"});
  std::filesystem::current_path(cwd);
  ::unsetenv("SWITCHYARD_O200K");
}

// A tokenizer.json in Hugging Face's layout: byte-level spelled tokens, added tokens, and a
// pre-tokenizer splitting by `pattern` before the ByteLevel step.
nlohmann::json tokenizer_json(const RankMap& ranks, const std::vector<SpecialToken>& specials,
                              std::string_view pattern) {
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [bytes, rank] : ranks) {
    std::string spelled;
    for (const char b : bytes) append_utf8(byte_to_vocab_char(static_cast<uint8_t>(b)), spelled);
    vocab[spelled] = rank;
  }
  nlohmann::json added = nlohmann::json::array();
  for (const SpecialToken& s : specials) added.push_back({{"id", s.id}, {"content", s.text}, {"special", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
}

TEST_F(O200kFiles, TinyTokenizerJson) {
  RankMap ranks;
  for (int b = 0; b < 256; ++b) ranks.emplace(std::string(1, static_cast<char>(b)), b);
  ranks.emplace("ab", 256);
  ranks.emplace("abc", 257);
  write("tokenizer.json", tokenizer_json(ranks, {{"<|endoftext|>", 300}}, kO200kPattern).dump());
  const auto t = load_o200k_tokenizer(path("tokenizer.json"));
  EXPECT_EQ(t->vocab_size(), 301);
  EXPECT_EQ(t->end_of_text(), 300);
  // Chunks "abc" (a whole token) and " ab" (' ' then the merge of "ab").
  EXPECT_EQ(t->encode("abc ab"), (std::vector<int32_t>{257, ' ', 256}));
  EXPECT_EQ(t->encode_with_special_tokens("ab<|endoftext|>"), (std::vector<int32_t>{256, 300}));
  EXPECT_EQ(t->decode(std::vector<int32_t>{300, 257}), "<|endoftext|>abc");
  expect_error([&] { t->decode(std::vector<int32_t>{299}); }, {"299"});
}

TEST_F(O200kFiles, FullTokenizerJsonEncodesAsTheRanksFile) {
  write("tokenizer.json", tokenizer_json(o200k_ranks(), o200k_harmony_special_tokens(), kO200kPattern).dump());
  const auto t = load_o200k_tokenizer(path("tokenizer.json"));
  EXPECT_EQ(t->vocab_size(), 201088);
  EXPECT_EQ(t->end_of_text(), 199999);
  const nlohmann::json cases = reference();  // held: a range-for over reference()[...] would dangle
  for (const auto& c : cases["plain"]) {
    EXPECT_EQ(t->encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>());
  }
  for (const auto& c : cases["with_special_tokens"]) {
    EXPECT_EQ(t->encode_with_special_tokens(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>());
  }
}

TEST_F(O200kFiles, MalformedTokenizerJson) {
  write("broken.json", "{ not json");
  expect_error([&] { load_o200k_tokenizer(path("broken.json")); }, {"broken.json", "malformed JSON"});
  write("wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  expect_error([&] { load_o200k_tokenizer(path("wordpiece.json")); }, {"wordpiece.json", "BPE"});
  nlohmann::json no_pre = tokenizer_json({{"a", 0}}, {}, kO200kPattern);
  no_pre.erase("pre_tokenizer");
  write("no_pre.json", no_pre.dump());
  expect_error([&] { load_o200k_tokenizer(path("no_pre.json")); }, {"no_pre.json", "pre_tokenizer"});
}

// A merge list of [left, right] pairs (braces alone would make nlohmann build an object).
nlohmann::json merges(const std::vector<std::pair<std::string, std::string>>& pairs) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [left, right] : pairs) list.push_back(nlohmann::json::array({left, right}));
  return list;
}

// A tiny valid tokenizer.json: the 256 bytes (ids = byte values), "ab" 256 and "abc" 257 with
// their merges, and <|endoftext|> 300.
nlohmann::json tiny_tokenizer_json() {
  RankMap ranks;
  for (int b = 0; b < 256; ++b) ranks.emplace(std::string(1, static_cast<char>(b)), b);
  ranks.emplace("ab", 256);
  ranks.emplace("abc", 257);
  nlohmann::json file = tokenizer_json(ranks, {{"<|endoftext|>", 300}}, kO200kPattern);
  file["model"]["merges"] = merges({{"a", "b"}, {"ab", "c"}});
  return file;
}

BpeVocabulary parse(const nlohmann::json& file) { return parse_hf_tokenizer_json(file.dump(), "tok.json"); }

TEST(TokenizerJsonText, ReadsTheTinyFile) {
  const BpeVocabulary vocabulary = parse(tiny_tokenizer_json());
  EXPECT_EQ(vocabulary.source, "tok.json");
  EXPECT_EQ(vocabulary.ranks.size(), 258u);
  EXPECT_EQ(vocabulary.ranks.at("abc"), 257);
  EXPECT_EQ(vocabulary.ranks.at("\xff"), 255);
  ASSERT_EQ(vocabulary.specials.size(), 1u);
  EXPECT_EQ(vocabulary.specials[0].id, 300);
  EXPECT_EQ(vocabulary.pattern, kO200kPattern);
  // Merges may also be written "a b"; and added tokens may be listed in the vocabulary too.
  nlohmann::json file = tiny_tokenizer_json();
  file["model"]["merges"] = nlohmann::json::array({"a b", "ab c"});
  file["model"]["vocab"]["<|endoftext|>"] = 300;
  EXPECT_EQ(parse(file).ranks.size(), 258u);
  // A ByteLevel step alone splits by GPT-2's pattern.
  file["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  EXPECT_EQ(parse(file).pattern, kGpt2Pattern);
}

TEST(TokenizerJsonText, RefusesBadIdsAndTokens) {
  for (const nlohmann::json& id : {nlohmann::json(-1), nlohmann::json(kMaxTokenId + 1), nlohmann::json(2.5),
                                   nlohmann::json("7"), nlohmann::json::array({1, 2})}) {
    nlohmann::json file = tiny_tokenizer_json();
    file["model"]["vocab"]["ab"] = id;
    expect_error([&] { parse(file); }, {"tok.json", "model.vocab \"ab\"", "expected an id from 0 to 1048575"});
  }
  nlohmann::json file = tiny_tokenizer_json();
  file["added_tokens"][0]["id"] = kMaxTokenId;  // the largest id is fine
  EXPECT_EQ(RankBpeTokenizer("tiny", parse(file)).vocab_size(), kMaxTokenId + 1);
  file = tiny_tokenizer_json();
  file["model"]["vocab"]["ab"] = 97;
  expect_error([&] { parse(file); }, {"tok.json", "\"a\" and \"ab\"", "same id 97"});
  for (const char* token : {" ", "\u00ad", "x\u0100\u0200"}) {  // space, and characters outside the alphabet
    file = tiny_tokenizer_json();
    file["model"]["vocab"][token] = 258;
    expect_error([&] { parse(file); }, {"tok.json", "byte-level alphabet"});
  }
  // A token given twice, which JSON parsers resolve silently.
  std::string text = tiny_tokenizer_json().dump();
  text.replace(text.find("\"ab\":256"), 8, "\"ab\":256,\"ab\":258");
  expect_error([&] { parse_hf_tokenizer_json(text, "tok.json"); }, {"tok.json", "\"ab\"", "twice"});
  const std::string deep = "{\"model\": " + std::string(200, '[') + std::string(200, ']') + "}";
  expect_error([&] { parse_hf_tokenizer_json(deep, "tok.json"); }, {"tok.json", "nests deeper"});
}

TEST(TokenizerJsonText, MergesMustJoinVocabularyTokensInIdOrder) {
  nlohmann::json file = tiny_tokenizer_json();
  file["model"]["merges"] = merges({{"a", "b"}, {"a", "x"}});  // "ax" is no token
  expect_error([&] { parse(file); }, {"tok.json", "model.merges[1]", "\"a\" and \"x\""});
  file["model"]["merges"] = merges({{"ab", "c"}, {"a", "b"}});
  expect_error([&] { parse(file); }, {"model.merges[1]", "id 256 after a merge made id 257", "order"});
  for (const nlohmann::json& merge : {nlohmann::json("a b c"), nlohmann::json("ab"),
                                      nlohmann::json::array({"a"}), nlohmann::json(3)}) {
    file["model"]["merges"] = nlohmann::json::array({merge});
    expect_error([&] { parse(file); }, {"model.merges[0]", "expected \"a b\""});
  }
}

TEST(TokenizerJsonText, AddedTokensMustBeDistinct) {
  nlohmann::json file = tiny_tokenizer_json();
  file["added_tokens"].push_back({{"id", 301}, {"content", ""}});
  expect_error([&] { parse(file); }, {"added_tokens[1]", "non-empty \"content\""});
  file["added_tokens"][1]["content"] = "<|endoftext|>";
  expect_error([&] { parse(file); }, {"added_tokens[1]", "content of added_tokens[0]"});
  file["added_tokens"][1] = {{"id", 300}, {"content", "<|start|>"}};
  expect_error([&] { parse(file); }, {"added_tokens[1]", "id of added_tokens[0]"});
  file["added_tokens"][1] = {{"id", 256}, {"content", "<|start|>"}};  // 256 is "ab"
  expect_error([&] { parse(file); }, {"\"<|start|>\"", "id 256", "another token"});
}

TEST(TokenizerJsonText, RefusesPreTokenizersItCannotFollow) {
  const nlohmann::json split = tiny_tokenizer_json()["pre_tokenizer"]["pretokenizers"][0];
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"use_regex", false}};
  nlohmann::json file = tiny_tokenizer_json();
  // ByteLevel first would split text already mapped to the byte alphabet.
  file["pre_tokenizer"]["pretokenizers"] = nlohmann::json::array({byte_level, split});
  expect_error([&] { parse(file); }, {"tok.json", "[ByteLevel, Split]", "not supported"});
  file["pre_tokenizer"]["pretokenizers"] =
      nlohmann::json::array({split, {{"type", "ByteLevel"}, {"use_regex", true}}});
  expect_error([&] { parse(file); }, {"after a Split", "use_regex false"});
  file["pre_tokenizer"] = byte_level;
  expect_error([&] { parse(file); }, {"alone", "use_regex true"});
  file["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
  expect_error([&] { parse(file); }, {"add_prefix_space false"});
  file = tiny_tokenizer_json();
  for (const char* regex : {"(", "\\C+"}) {  // unbalanced; \C would split a character
    file["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = regex;
    expect_error([&] { parse(file); }, {"tok.json", "Split regex", "PCRE2 cannot compile"});
  }
}

TEST(TokenizerJsonText, APatternThatSkipsTextIsAnErrorNotALoss) {
  nlohmann::json file = tiny_tokenizer_json();
  file["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "a+";
  const RankBpeTokenizer t("tiny", parse(file));
  EXPECT_EQ(t.encode("aa"), (std::vector<int32_t>{'a', 'a'}));
  expect_error([&] { t.encode("aab"); }, {"pattern matches nothing from byte 2"});
  file["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "a\\Kb|.";
  const RankBpeTokenizer k("tiny", parse(file));
  expect_error([&] { k.encode("ab"); }, {"pattern skips bytes 0 to 1"});
}

}  // namespace
}  // namespace switchyard::tokenizer
