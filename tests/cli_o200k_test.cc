// `switchyard tokenize` and `prepare` with the o200k tokenizer: ids identical to the reference
// (tests/data/o200k_reference.json), special tokens on request, uint32 shards, and clear errors
// with exit code 1 for a missing ranks file.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/token_shard.h"
#include "shell_command.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

const std::string kRanks = std::string(SWITCHYARD_SHARED_DATA) + "/o200k/o200k_base.tiktoken";

using Result = ShellResult;

Result run(const std::string& args, const std::string& prefix = "") { return run_cli(args, prefix); }

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  return line + "\n";
}

nlohmann::json reference() {
  std::ifstream in(std::string(SWITCHYARD_TEST_DATA) + "/o200k_reference.json");
  return nlohmann::json::parse(in);
}

class CliO200k : public TempDirTest {
 protected:
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
};

TEST_F(CliO200k, TokenizeGivesTheReferenceIds) {
  const nlohmann::json cases = reference()["plain"];
  for (const size_t index : {size_t{3}, size_t{8}, size_t{11}, size_t{14}}) {
    const std::string input = write("in.txt", cases[index]["text"].get<std::string>());
    const Result r = run("tokenize --tokenizer o200k --vocab " + kRanks + " < " + input);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, ids_line(cases[index]["ids"].get<std::vector<int32_t>>()));
  }
}

TEST_F(CliO200k, TokenizeFindsTheRanksThroughTheEnvironment) {
  const std::string input = write("in.txt", "hello world");
  // Run from the test's directory, where no ../shared/data/o200k exists to fall back on.
  const std::string here = "cd " + dir_.string() + " && ";
  const Result r = run("tokenize --tokenizer o200k < " + input, here + "SWITCHYARD_O200K=" + kRanks + " ");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, ids_line(reference()["plain"][3]["ids"].get<std::vector<int32_t>>()));
  const Result missing =
      run("tokenize --tokenizer o200k < " + input, here + "SWITCHYARD_O200K=" + path("gone.tiktoken") + " ");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("gone.tiktoken"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("--vocab"), std::string::npos) << missing.output;
}

TEST_F(CliO200k, TokenizeSpecialTokensOnRequest) {
  const nlohmann::json chat = reference()["with_special_tokens"][0];
  const std::string input = write("chat.txt", chat["text"].get<std::string>());
  const Result special = run("tokenize --tokenizer o200k --special-tokens --vocab " + kRanks + " < " + input);
  EXPECT_EQ(special.exit_code, 0) << special.output;
  EXPECT_EQ(special.output, ids_line(chat["ids"].get<std::vector<int32_t>>()));
  const Result plain = run("tokenize --tokenizer o200k --vocab " + kRanks + " < " + input);
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(plain.output.find("200006"), std::string::npos) << plain.output;

  const std::string ids = write("ids.txt", special.output);
  const Result decoded = run("tokenize --tokenizer o200k --decode --vocab " + kRanks + " < " + ids);
  EXPECT_EQ(decoded.exit_code, 0) << decoded.output;
  EXPECT_EQ(decoded.output, chat["text"].get<std::string>());
}

TEST_F(CliO200k, MissingRanksFileIsAClearError) {
  const std::string input = write("in.txt", "hello");
  const Result r = run("tokenize --tokenizer o200k --vocab " + path("nope.tiktoken") + " < " + input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(path("nope.tiktoken")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no such file"), std::string::npos) << r.output;

  const Result prepare = run("prepare --tokenizer o200k --vocab " + path("nope.tiktoken") + " --input " +
                             input + " --out " + path("out"));
  EXPECT_EQ(prepare.exit_code, 1);
  EXPECT_NE(prepare.output.find(path("nope.tiktoken")), std::string::npos) << prepare.output;
}

TEST_F(CliO200k, PrepareWritesVersion2Shards) {
  const nlohmann::json shakespeare = reference()["plain"].back();
  const std::string input = write("in.txt", shakespeare["text"].get<std::string>());
  const Result r = run("prepare --tokenizer o200k --vocab " + kRanks + " --input " + input + " --out " +
                       path("shards") + " --val-fraction 0.25");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokenizer o200k (vocabulary 201088)"), std::string::npos) << r.output;
  std::vector<uint32_t> all = data::read_shard(path("shards/train.bin"));
  const std::vector<uint32_t> val = data::read_shard(path("shards/val.bin"));
  all.insert(all.end(), val.begin(), val.end());
  const std::vector<int32_t> expected = shakespeare["ids"];
  EXPECT_EQ(all, std::vector<uint32_t>(expected.begin(), expected.end()));
  std::ifstream in(path("shards/train.bin"), std::ios::binary);
  unsigned char header[8] = {};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  EXPECT_EQ(header[4], 2);  // version 2, little-endian
}

TEST_F(CliO200k, GenerateWithTheO200kTokenizer) {
  // A model must have room for all 201,088 ids.
  const Result small = run("generate --model tiny --tokenizer o200k --vocab " + kRanks + " --prompt Hi -n 2");
  EXPECT_EQ(small.exit_code, 1);
  EXPECT_NE(small.output.find("201088 tokens but the model's vocabulary is only 256"), std::string::npos)
      << small.output;
  const Result wide = run("generate --model tiny --vocab-size 201088 --tokenizer o200k --vocab " + kRanks +
                          " --prompt Hello -n 3");
  EXPECT_EQ(wide.exit_code, 0) << wide.output;
  EXPECT_NE(wide.output.find("\nHello"), std::string::npos) << wide.output;  // after the noise warning
  EXPECT_NE(wide.output.find("generated 3 tokens"), std::string::npos) << wide.output;
}

}  // namespace
}  // namespace switchyard
