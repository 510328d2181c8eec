// /v1/chat/completions on a small gpt-oss with the o200k tokenizer (harmony). The weights are
// random, so the model does not write harmony: the request is rendered (its prompt is exactly the
// harmony library's rendering of the conversation), runs, and the reply is refused as not in the
// chat format, whole (500) and streamed (an error event, then [DONE]). Reading well-formed replies
// into content and reasoning_content is covered in serve_text_test.cc. Completions on the same model
// give model::generate's tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/model.h"
#include "serve_test_server.h"
#include "tokenizer/harmony.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

const std::string kRanks = std::string(SWITCHYARD_SHARED_DATA) + "/o200k/o200k_base.tiktoken";

class ServeChat : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kRanks)) return;
    tokenizer_ = tokenizer::load_o200k_tokenizer(kRanks).release();
    backend_ = backend::create_backend("cpu").release();
    model::ModelConfig c = model::preset("gpt-oss-tiny");
    c.vocab_size = tokenizer_->vocab_size();
    c.num_layers = 2;
    c.layer_types = {"sliding_attention", "full_attention"};
    c.channels = 32;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 16;
    c.intermediate = 32;
    c.max_seq_len = 256;
    model_ = model::Model::create(*backend_, c).release();
    model_->init_random(3);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
    delete tokenizer_;
  }
  void SetUp() override {
    if (!tokenizer_) GTEST_SKIP() << kRanks << " is absent";
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline backend::Backend* backend_ = nullptr;
  static inline model::Model* model_ = nullptr;
};

const json kMessages = json::parse(R"([{"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "What color is the sky?"}, {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "And grass?"}])");

TEST_F(ServeChat, PromptIsTheHarmonyRenderingAndABrokenReplyIsRefused) {
  TestServer server(*model_, *tokenizer_, "oss");
  const json request = {{"model", "oss"}, {"messages", kMessages}, {"reasoning_effort", "low"},
                        {"max_completion_tokens", 6}, {"temperature", 0}};
  const httplib::Result res = server.post("/v1/chat/completions", request);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 500) << res->body;
  const json error = json::parse(res->body)["error"];
  EXPECT_EQ(error["code"], "invalid_model_output");
  EXPECT_EQ(error["type"], "server_error");
  EXPECT_NE(error["message"].get<std::string>().find("not in its chat format"), std::string::npos) << error;

  // What the engine was given: the conversation as the harmony library renders it.
  tokenizer::HarmonyConversation conversation;
  conversation.system = tokenizer::SystemOptions{};
  conversation.system->reasoning_effort = tokenizer::ReasoningEffort::kLow;
  conversation.developer = tokenizer::DeveloperOptions{.instructions = "Answer in one word."};
  conversation.messages = {
      {.role = tokenizer::HarmonyRole::kUser, .text = "What color is the sky?"},
      {.role = tokenizer::HarmonyRole::kAssistant, .channel = tokenizer::HarmonyChannel::kFinal, .text = "Blue."},
      {.role = tokenizer::HarmonyRole::kUser, .text = "And grass?"}};
  const size_t prompt = tokenizer::render_harmony_tokens_for_completion(conversation, *tokenizer_).size();
  EXPECT_EQ(server.idle_stats().prompt_tokens, static_cast<int64_t>(prompt));

  // Streamed: the role first, then an error event and [DONE].
  json streamed = request;
  streamed["stream"] = true;
  const httplib::Result s = server.post("/v1/chat/completions", streamed);
  ASSERT_EQ(s->status, 200);
  bool done = false;
  const std::vector<json> events = sse_payloads(s->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front()["object"], "chat.completion.chunk");
  EXPECT_EQ(events.front()["choices"][0]["delta"], json::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_EQ(events.back()["error"]["code"], "invalid_model_output");
  const EngineStats idle = server.idle_stats();
  EXPECT_EQ(idle.running, 0);
  EXPECT_EQ(idle.kv_blocks_used, 0);
}

TEST_F(ServeChat, ChatNeedsTheHarmonyTokens) {
  const std::unique_ptr<tokenizer::Tokenizer> bytes = tokenizer::make_byte_tokenizer();
  TestServer server(*model_, *bytes, "oss-bytes");
  const httplib::Result res =
      server.post("/v1/chat/completions", {{"model", "oss-bytes"}, {"messages", kMessages}});
  ASSERT_EQ(res->status, 400) << res->body;
  EXPECT_NE(res->body.find("needs the o200k tokenizer"), std::string::npos) << res->body;
}

TEST_F(ServeChat, CompletionsOnGptOssEqualGenerate) {
  TestServer server(*model_, *tokenizer_, "oss");
  const std::vector<int32_t> prompt = tokenizer_->encode("Hello there");
  const httplib::Result res = server.post(
      "/v1/completions", {{"model", "oss"}, {"prompt", prompt}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", 0}});
  ASSERT_EQ(res->status, 200) << res->body;
  model::Generator generator(*model_, 1, static_cast<int>(prompt.size()) + 5);
  model::SamplingOptions greedy;
  greedy.temperature = 0;
  Rng rng(1);
  const std::vector<int32_t> expected =
      model::generate(generator, prompt, {.max_new_tokens = 5, .sampling = greedy, .stop_tokens = {199999}}, rng,
                      [](int32_t) {})
          .tokens;
  const json choice = json::parse(res->body)["choices"][0];
  ASSERT_EQ(choice["logprobs"]["tokens"].size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const int32_t t = expected[i];
    const std::string bytes = tokenizer_->decode(std::span(&t, 1));
    // Each token's string is its bytes where they are whole characters.
    if (choice["logprobs"]["tokens"][i].get<std::string>().find("\xEF\xBF\xBD") == std::string::npos) {
      EXPECT_EQ(choice["logprobs"]["tokens"][i], bytes);
    }
    EXPECT_EQ(choice["logprobs"]["top_logprobs"][i].size(), 0u);  // logprobs 0: the chosen token's only
  }
}

}  // namespace
}  // namespace switchyard::serve
