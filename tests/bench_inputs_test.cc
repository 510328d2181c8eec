// What the serving benchmark reads from its user: the server's URL and the prompts of a dataset
// (a JSON list of strings, or text cut into pieces of an estimated number of tokens).
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "client/prompt_dataset.h"
#include "client/server_url.h"
#include "expect_error.h"
#include "temp_dir_test_base.h"

namespace switchyard::client {
namespace {

TEST(ServerUrl, Forms) {
  ServerUrl u = parse_server_url("http://127.0.0.1:8000");
  EXPECT_EQ(u.origin(), "http://127.0.0.1:8000");
  EXPECT_EQ(u.path("/v1/models"), "/v1/models");
  u = parse_server_url("https://api.example.com");
  EXPECT_EQ(u.origin(), "https://api.example.com:443");
  u = parse_server_url("http://localhost/");
  EXPECT_EQ(u.origin(), "http://localhost:80");
  EXPECT_EQ(u.path("/v1/completions"), "/v1/completions");
  u = parse_server_url("http://[::1]:9000/v1/");
  EXPECT_EQ(u.origin(), "http://[::1]:9000");
  EXPECT_EQ(u.path("/v1/models"), "/v1/models");  // a trailing /v1 is not doubled
  u = parse_server_url("http://host:1/openai/v1");
  EXPECT_EQ(u.path("/v1/chat/completions"), "/openai/v1/chat/completions");
}

TEST(ServerUrl, BadUrlsSayWhatIsExpected) {
  for (const char* bad : {"127.0.0.1:8000", "ftp://host", "http://", "http://host:", "http://host:0",
                          "http://host:70000", "http://host:8000?x=1", "http://ho st", ""}) {
    expect_error([&] { parse_server_url(bad); }, {"bad server URL", "http://"});
  }
}

class PromptDataset : public TempDirTest {};

TEST_F(PromptDataset, JsonListIsUsedAsItIsAndRepeated) {
  const std::string file = path("prompts.json");
  std::ofstream(file) << "  [\"first prompt\", \"second\"]\n";
  EXPECT_EQ(load_prompts(file, 5, 999),
            (std::vector<std::string>{"first prompt", "second", "first prompt", "second", "first prompt"}));
}

TEST_F(PromptDataset, MalformedJsonListsAreRefused) {
  const std::string file = path("prompts.json");
  std::ofstream(file) << "[\"a\", 2]";
  expect_error([&] { load_prompts(file, 1, 8); }, {file, "item 1", "number", "list of prompt strings"});
  std::ofstream(file) << "[\"unclosed\"";
  expect_error([&] { load_prompts(file, 1, 8); }, {file, "not valid JSON"});
  std::ofstream(file) << "[]";
  expect_error([&] { load_prompts(file, 1, 8); }, {file, "empty list"});
}

TEST(PromptText, PiecesOfWholeWordsOfAboutTheLengthAsked) {
  // 2 tokens are 8 characters: words are taken until the prompt holds at least 8.
  EXPECT_EQ(prompts_from_text("one two three\nfour  five\tsix", "t", 4, 2),
            (std::vector<std::string>{"one two three", "four five", "six one two", "three four"}));
  // A text shorter than a prompt is read round again.
  EXPECT_EQ(prompts_from_text("ab cd", "t", 1, 3), (std::vector<std::string>{"ab cd ab cd ab"}));
  EXPECT_EQ(estimated_tokens("abcdefgh"), 2);
  EXPECT_EQ(estimated_tokens("a"), 1);
}

TEST(PromptText, EmptyOrMissingFilesAreRefused) {
  expect_error([] { prompts_from_text(" \n\t", "empty.txt", 1, 8); }, {"empty.txt", "no text"});
  expect_error([] { load_prompts("/nonexistent/prompts.txt", 1, 8); }, {"cannot read the dataset",
                                                                          "/nonexistent/prompts.txt"});
}

}  // namespace
}  // namespace switchyard::client
