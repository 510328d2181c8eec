// The OpenAI-compatible server end to end, in process on an ephemeral port with a small GPT-2 (the
// GPT-2 tokenizer over random weights): greedy answers equal model::generate's on the same prompt
// ids, whole and streamed; stop strings across token boundaries; log-probabilities and usage; every
// error with its status and OpenAI's error body; a full queue; a client leaving mid-stream; and SSE
// through curl.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/model.h"
#include "serve_test_server.h"
#include "shell_command.h"
#include "tokenizer/tokenizer.h"

namespace switchyard::serve {
namespace {

using nlohmann::json;

const std::string kGpt2Dir = std::string(SWITCHYARD_SHARED_DATA) + "/gpt2";

class ServeApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kGpt2Dir)) return;
    tokenizer_ = tokenizer::load_gpt2_tokenizer(kGpt2Dir).release();
    backend_ = backend::create_backend("cpu").release();
    model::ModelConfig config = model::preset("tiny");
    config.vocab_size = 50257;  // the GPT-2 vocabulary, so that text goes in and out
    config.num_layers = 2;
    config.channels = 64;
    model_ = model::Model::create(*backend_, config).release();
    model_->init_random(5);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
    delete tokenizer_;
  }
  void SetUp() override {
    if (!tokenizer_) GTEST_SKIP() << kGpt2Dir << " is absent";
  }

  static std::unique_ptr<TestServer> start(TestServerOptions options = {}) {
    return std::make_unique<TestServer>(*model_, *tokenizer_, "tiny-gpt2", options);
  }

  // What model::generate gives greedily after `prompt`, stopping at end of text.
  static std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int max_tokens) {
    model::Generator generator(*model_, 1, static_cast<int>(prompt.size()) + max_tokens);
    model::SamplingOptions greedy;
    greedy.temperature = 0;
    const model::GenerateOptions options{.max_new_tokens = max_tokens, .sampling = greedy, .stop_tokens = {50256}};
    Rng rng(1);
    std::vector<int32_t> tokens = model::generate(generator, prompt, options, rng, [](int32_t) {}).tokens;
    EXPECT_TRUE(tokens.empty() || tokens.back() != 50256) << "pick a prompt whose reply does not end early";
    return tokens;
  }
  static std::string text_of(const std::vector<int32_t>& tokens) { return tokenizer_->decode(tokens); }

  static json completion_body(const json& prompt, int max_tokens) {
    return {{"model", "tiny-gpt2"}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  }

  static inline tokenizer::Tokenizer* tokenizer_ = nullptr;
  static inline backend::Backend* backend_ = nullptr;
  static inline model::Model* model_ = nullptr;
};

const std::string kPrompt = "The quick brown fox";

void expect_error(const httplib::Result& res, int status, const std::string& code, const std::string& param,
                  const std::string& words) {
  ASSERT_TRUE(res) << "no response";
  EXPECT_EQ(res->status, status) << res->body;
  const json body = json::parse(res->body);
  ASSERT_TRUE(body.contains("error")) << res->body;
  const json& e = body["error"];
  EXPECT_EQ(e.size(), 4u) << res->body;
  EXPECT_TRUE(e["message"].is_string());
  EXPECT_TRUE(e["type"].is_string());
  EXPECT_EQ(e["code"], code.empty() ? json(nullptr) : json(code)) << res->body;
  EXPECT_EQ(e["param"], param.empty() ? json(nullptr) : json(param)) << res->body;
  EXPECT_NE(e["message"].get<std::string>().find(words), std::string::npos) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
}

TEST_F(ServeApi, GreedyCompletionEqualsGenerate) {
  auto server = start();
  const std::vector<int32_t> prompt = tokenizer_->encode(kPrompt);
  const std::vector<int32_t> expected = reference(prompt, 12);
  ASSERT_EQ(expected.size(), 12u);

  for (const json& p : {json(kPrompt), json(prompt), json::array({kPrompt})}) {
    const httplib::Result res = server->post("/v1/completions", completion_body(p, 12));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const json body = json::parse(res->body);
    EXPECT_EQ(body["object"], "text_completion");
    EXPECT_TRUE(body["id"].get<std::string>().starts_with("cmpl-"));
    EXPECT_EQ(body["model"], "tiny-gpt2");
    EXPECT_GT(body["created"].get<int64_t>(), 1700000000);
    const json& choice = body["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    EXPECT_EQ(choice["text"], text_of(expected));
    EXPECT_EQ(choice["finish_reason"], "length");
    EXPECT_TRUE(choice["logprobs"].is_null());
    EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());
    EXPECT_EQ(body["usage"]["completion_tokens"], 12);
    EXPECT_EQ(body["usage"]["total_tokens"], prompt.size() + 12);
  }
  // Without max_tokens, OpenAI's default of 16.
  const httplib::Result res = server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", kPrompt}, {"temperature", 0}});
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["choices"][0]["text"], text_of(reference(prompt, 16)));
}

TEST_F(ServeApi, ConcurrentRequestsEachGetTheirOwnAnswer) {
  // Prompts encoded and replies decoded on several handler threads at once, batched by the engine.
  auto server = start();
  const std::vector<std::string> prompts = {"One", "Two words", "A third prompt here", "Four", "Fifth, and",
                                            "Six and the last"};
  std::vector<std::string> replies(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      const httplib::Result res = server->post("/v1/completions", completion_body(prompts[i], 8));
      if (res && res->status == 200) replies[i] = json::parse(res->body)["choices"][0]["text"];
    });
  }
  for (std::thread& c : clients) c.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(replies[i], text_of(reference(tokenizer_->encode(prompts[i]), 8))) << prompts[i];
  }
}

TEST_F(ServeApi, LogprobsInBothShapes) {
  auto server = start();
  const std::vector<int32_t> prompt = tokenizer_->encode(kPrompt);
  const std::vector<int32_t> expected = reference(prompt, 6);
  json request = completion_body(prompt, 6);
  request["logprobs"] = 3;
  const httplib::Result res = server->post("/v1/completions", request);
  ASSERT_EQ(res->status, 200) << res->body;
  const json logprobs = json::parse(res->body)["choices"][0]["logprobs"];
  ASSERT_EQ(logprobs["tokens"].size(), 6u);
  std::string joined;
  size_t offset = 0;
  for (size_t i = 0; i < 6; ++i) {
    const std::string token = text_of({expected[i]});
    EXPECT_EQ(logprobs["tokens"][i], token);
    EXPECT_EQ(logprobs["text_offset"][i], offset);
    offset += token.size();
    const float chosen = logprobs["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0f);
    const json& top = logprobs["top_logprobs"][i];
    ASSERT_EQ(top.size(), 3u);
    // Greedy: the chosen token is the most likely one, and its log-probability is the top one.
    float best = -1e30f;
    for (const auto& [text, lp] : top.items()) best = std::max(best, lp.get<float>());
    EXPECT_FLOAT_EQ(best, chosen);
    EXPECT_FLOAT_EQ(top[token].get<float>(), chosen);
  }
  // The streamed chunks carry the same log-probabilities, token by token.
  request["stream"] = true;
  const httplib::Result streamed = server->post("/v1/completions", request);
  bool done = false;
  std::vector<float> streamed_logprobs;
  for (const json& chunk : sse_payloads(streamed->body, &done)) {
    if (chunk["choices"][0]["logprobs"].is_null()) continue;
    for (const json& lp : chunk["choices"][0]["logprobs"]["token_logprobs"]) streamed_logprobs.push_back(lp);
  }
  EXPECT_TRUE(done);
  ASSERT_EQ(streamed_logprobs.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(streamed_logprobs[i], logprobs["token_logprobs"][i].get<float>());
}

TEST_F(ServeApi, StreamedCompletionEqualsWholeOne) {
  auto server = start();
  const std::vector<int32_t> prompt = tokenizer_->encode(kPrompt);
  const std::string expected = text_of(reference(prompt, 10));
  json request = completion_body(kPrompt, 10);
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", true}};
  const httplib::Result res = server->post("/v1/completions", request);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  bool done = false;
  const std::vector<json> chunks = sse_payloads(res->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(chunks.size(), 3u);
  std::string text;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["object"], "text_completion");
    EXPECT_EQ(chunks[i]["id"], chunks[0]["id"]);
    text += chunks[i]["choices"][0]["text"].get<std::string>();
    const bool last = i + 2 == chunks.size();
    EXPECT_EQ(chunks[i]["choices"][0]["finish_reason"], last ? json("length") : json(nullptr));
  }
  EXPECT_EQ(text, expected);
  const json& usage = chunks.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 10);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], prompt.size());
  // Without include_usage, no usage chunk.
  request.erase("stream_options");
  const std::vector<json> plain = sse_payloads(server->post("/v1/completions", request)->body, &done);
  for (const json& chunk : plain) EXPECT_FALSE(chunk.contains("usage"));
}

TEST_F(ServeApi, StopStringsAcrossTokensAreCutAndNeverShown) {
  auto server = start();
  const std::vector<int32_t> prompt = tokenizer_->encode(kPrompt);
  const std::vector<int32_t> tokens = reference(prompt, 12);
  // A stop string made of the last byte of token i - 1 and the first two of token i, for the first
  // i where that string first occurs across that boundary (the random model repeats itself).
  const std::string full = text_of(tokens);
  std::string stop;
  size_t cut = 0;
  int stop_token = 0;
  for (int i = 1; i < 12 && stop.empty(); ++i) {
    const std::string before = text_of({tokens.begin(), tokens.begin() + i});
    const std::string next = text_of({tokens[i]});
    if (before.empty() || next.size() < 2) continue;
    const std::string candidate = before.substr(before.size() - 1) + next.substr(0, 2);
    if (full.find(candidate) != before.size() - 1) continue;
    stop = candidate;
    cut = before.size() - 1;
    stop_token = i;
  }
  ASSERT_FALSE(stop.empty()) << "no token boundary to put a stop string across in: " << full;
  json request = completion_body(kPrompt, 12);
  request["stop"] = json::array({"never appears \x01", stop});
  const httplib::Result res = server->post("/v1/completions", request);
  ASSERT_EQ(res->status, 200) << res->body;
  const json body = json::parse(res->body);
  EXPECT_EQ(body["choices"][0]["text"], full.substr(0, cut));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  // The tokens up to the one that completed the stop string.
  EXPECT_EQ(body["usage"]["completion_tokens"], stop_token + 1);

  request["stream"] = true;
  bool done = false;
  std::string streamed;
  std::string finish;
  for (const json& chunk : sse_payloads(server->post("/v1/completions", request)->body, &done)) {
    streamed += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(streamed, full.substr(0, cut));
  EXPECT_EQ(finish, "stop");
  // The engine ended both requests: nothing runs, every block is free.
  const EngineStats stats = server->idle_stats();
  EXPECT_EQ(stats.running + stats.waiting, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
}

TEST_F(ServeApi, ErrorsHaveStatusAndOpenAisBody) {
  TestServerOptions options;
  options.server.max_body_bytes = 64 << 10;
  auto server = start(options);
  expect_error(server->post_text("/v1/completions", "{\"model\": "), 400, "", "", "could not parse the JSON body");
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", "x"}, {"max_tokens", "5"}}), 400,
               "invalid_type", "max_tokens", "Invalid type for 'max_tokens'");
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", "x"}, {"temperature", true}}),
               400, "invalid_type", "temperature", "expected a number");
  expect_error(server->post("/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}}), 404, "model_not_found", "",
               "The model `gpt-4` does not exist");
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", "x"}, {"max_tokens", 0}}), 400,
               "invalid_value", "max_tokens", "at least 1");
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", "x"}, {"max_tokens", 256}}), 400,
               "context_length_exceeded", "max_tokens", "context of 256");
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", "x"}, {"n", 3}}), 400,
               "invalid_value", "n", "Invalid value for 'n'");
  // A prompt as long as the context, and one that leaves too little room for max_tokens.
  const std::vector<int32_t> long_prompt(256, 464);
  expect_error(server->post("/v1/completions", {{"model", "tiny-gpt2"}, {"prompt", long_prompt}}), 400,
               "context_length_exceeded", "prompt", "resulted in 256 tokens");
  const std::vector<int32_t> prompt_250(250, 464);
  expect_error(server->post("/v1/completions", completion_body(prompt_250, 10)), 400, "context_length_exceeded",
               "prompt", "you requested 260 tokens (250 in the prompt, 10 in the completion)");
  // Chat on a model without a chat format.
  expect_error(server->post("/v1/chat/completions",
                            {{"model", "tiny-gpt2"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}),
               400, "no_chat_format", "model", "has no chat format");
  // A body over the limit, and an unknown path.
  expect_error(server->post_text("/v1/completions", std::string(100 << 10, ' ')), 413, "request_too_large", "",
               "larger than this server's limit");
  expect_error(server->client().Get("/v1/engines"), 404, "unknown_url", "", "GET /v1/engines");
  // Nothing was left running by any of them.
  EXPECT_EQ(server->idle_stats().running, 0);
}

TEST_F(ServeApi, ApiKeyIsCheckedOnV1Only) {
  TestServerOptions options;
  options.server.api_key = "sk-test-123";
  auto server = start(options);
  const json request = completion_body(kPrompt, 2);
  expect_error(server->post("/v1/completions", request), 401, "invalid_api_key", "", "API key");
  expect_error(server->post("/v1/completions", request, {{"Authorization", "Bearer sk-test-12"}}), 401,
               "invalid_api_key", "", "API key");
  expect_error(server->client().Get("/v1/models"), 401, "invalid_api_key", "", "API key");
  const httplib::Result ok = server->post("/v1/completions", request, {{"Authorization", "Bearer sk-test-123"}});
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(server->client().Get("/health")->status, 200);
  EXPECT_EQ(server->client().Get("/metrics")->status, 200);
}

TEST_F(ServeApi, ModelsHealthAndMetrics) {
  auto server = start();
  const httplib::Result models = server->client().Get("/v1/models");
  ASSERT_EQ(models->status, 200);
  const json list = json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "tiny-gpt2");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["max_model_len"], 256);
  EXPECT_EQ(server->client().Get("/health")->status, 200);

  ASSERT_EQ(server->post("/v1/completions", completion_body(kPrompt, 5))->status, 200);
  server->idle_stats();
  const std::string page = server->client().Get("/metrics")->body;
  const std::string label = "{model_name=\"tiny-gpt2\"";
  const int prompt_tokens = static_cast<int>(tokenizer_->encode(kPrompt).size());
  for (const std::string& line : std::vector<std::string>{
           "switchyard:num_requests_running" + label + "} 0",
           "switchyard:request_success_total" + label + ",finished_reason=\"length\"} 1",
           "switchyard:generation_tokens_total" + label + "} 5",
           "switchyard:prompt_tokens_total" + label + "} " + std::to_string(prompt_tokens),
           "switchyard:kv_blocks_used" + label + "} 0",
           "switchyard:time_to_first_token_seconds_count" + label + "} 1",
           "switchyard:time_per_output_token_seconds_count" + label + "} 4",
           "switchyard:e2e_request_latency_seconds_count" + label + "} 1",
           "switchyard:engine_step_seconds_count" + label + "} " + std::to_string(server->engine().stats().steps)}) {
    EXPECT_NE(page.find(line + "\n"), std::string::npos) << "missing: " << line << "\n" << page;
  }
  // A real device has no simulated time: the series are absent, not zero.
  EXPECT_EQ(page.find("simulated"), std::string::npos) << page;
}

// The value of the series `name{labels}` on a /metrics page; NaN when it is not there.
double metric(const std::string& page, const std::string& name_and_labels) {
  const size_t at = page.find("\n" + name_and_labels + " ");
  if (at == std::string::npos) return std::nan("");
  return std::stod(page.substr(at + name_and_labels.size() + 2));
}

// On a simulator device /metrics carries the simulated time of the engine's steps: the counter is
// what the engine recorded, the histogram has a step's worth in each observation, and the info
// series names the device.
TEST(ServeApiSimulated, MetricsCarryTheSimulatedTimeOfTheSteps) {
  const std::unique_ptr<backend::Backend> sim = backend::create_backend("trn2-sim");
  model::ModelConfig config = model::preset("tiny");
  config.num_layers = 2;
  const std::unique_ptr<model::Model> m = model::Model::create(*sim, config);
  m->init_random(9);
  const std::unique_ptr<tokenizer::Tokenizer> bytes = tokenizer::make_byte_tokenizer();
  TestServer server(*m, *bytes, "tiny-sim");
  for (const char* prompt : {"To be", "or not to be"}) {
    const json body = {{"model", "tiny-sim"}, {"prompt", prompt}, {"max_tokens", 3}, {"temperature", 0}};
    const httplib::Result res = server.post("/v1/completions", body);
    ASSERT_EQ(res->status, 200) << res->body;
  }
  const EngineStats stats = server.idle_stats();
  ASSERT_TRUE(stats.simulated_seconds.has_value());
  const std::string page = server.client().Get("/metrics")->body;
  const std::string label = "{model_name=\"tiny-sim\"}";
  const double seconds = metric(page, "switchyard:simulated_seconds_total" + label);
  EXPECT_GT(seconds, 0) << page;
  EXPECT_EQ(seconds, *stats.simulated_seconds);
  EXPECT_NEAR(metric(page, "switchyard:engine_step_simulated_seconds_sum" + label), seconds, 1e-9 * seconds);
  EXPECT_EQ(metric(page, "switchyard:engine_step_simulated_seconds_count" + label), stats.steps);
  EXPECT_EQ(metric(page, "switchyard:engine_steps_total" + label), stats.steps);
  EXPECT_EQ(metric(page, "switchyard:generation_tokens_total" + label), 6);
  EXPECT_EQ(metric(page, "switchyard:simulated_device_info{model_name=\"tiny-sim\",device=\"trn2-sim\","
                         "target=\"trn2\",core=\"" + server.engine().step_times().simulated_device()->core +
                         "\",cores_per_chip=\"8\"}"),
            1)
      << page;
  EXPECT_NE(page.find("# TYPE switchyard:simulated_seconds_total counter\n"), std::string::npos) << page;
  EXPECT_NE(page.find("# TYPE switchyard:engine_step_simulated_seconds histogram\n"), std::string::npos) << page;
}

TEST_F(ServeApi, FullQueueIs429WithRetryAfter) {
  TestServerOptions options;
  options.engine.max_queue = 1;
  options.engine.max_sequences = 1;
  options.engine_thread = false;  // nothing leaves the queue until the test steps the engine
  auto server = start(options);
  std::thread first([&] {
    const httplib::Result res = server->post("/v1/completions", completion_body(kPrompt, 3));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
  });
  // Wait (bounded) until the first request waits in the queue.
  for (int i = 0; i < 3000 && server->engine().stats().waiting == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server->engine().stats().waiting, 1);
  const httplib::Result full = server->post("/v1/completions", completion_body(kPrompt, 3));
  expect_error(full, 429, "queue_full", "", "Retry after a moment");
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  while (server->engine().step()) {
  }
  first.join();
}

TEST_F(ServeApi, ClientLeavingMidStreamFreesItsBlocks) {
  TestServerOptions options;
  options.engine_thread = false;  // the test decides when tokens come
  auto server = start(options);
  const int blocks = server->engine().stats().kv_blocks_free;
  std::atomic<bool> got_data{false}, client_done{false};
  std::thread client([&] {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    json body = completion_body(kPrompt, 200);
    body["stream"] = true;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      if (std::string(data, size).find("\"text\"") == std::string::npos) return true;
      got_data = true;
      return false;  // leave after the first text
    };
    server->client().send(req);
    client_done = true;
  });
  // One step at a time until the client has seen text and left.
  for (int i = 0; i < 200 && !got_data; ++i) {
    server->engine().step();
    for (int w = 0; w < 100 && !got_data; ++w) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  client.join();
  ASSERT_TRUE(got_data);
  EXPECT_EQ(server->engine().stats().running, 1);
  // The handler notices at its next write (a keep-alive probe) and cancels the request.
  for (int i = 0; i < 6000 && server->metrics().client_disconnects() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(server->metrics().client_disconnects(), 1);
  server->engine().step();  // the cancellation takes effect at the next step
  const EngineStats stats = server->engine().stats();
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.finished_cancelled, 1);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.kv_blocks_free, blocks);
  const std::string page = server->client().Get("/metrics")->body;
  EXPECT_NE(page.find("switchyard:num_requests_running{model_name=\"tiny-gpt2\"} 0\n"), std::string::npos) << page;
  EXPECT_NE(page.find("switchyard:kv_blocks_used{model_name=\"tiny-gpt2\"} 0\n"), std::string::npos) << page;
  EXPECT_NE(page.find("switchyard:request_success_total{model_name=\"tiny-gpt2\",finished_reason=\"abort\"} 1\n"),
            std::string::npos)
      << page;
}

TEST_F(ServeApi, SlowClientIsDroppedAfterTheReadTimeout) {
  TestServerOptions options;
  options.server.read_timeout_s = 1;
  auto server = start(options);
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  // Headers promise a body that never comes.
  const std::string partial = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mod";
  ASSERT_EQ(send(sock, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  // The server gives up on it and closes the connection (our own limit only bounds the test).
  timeval limit{.tv_sec = 120, .tv_usec = 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  char buffer[4096];
  ssize_t n;
  std::string received;
  while ((n = recv(sock, buffer, sizeof(buffer), 0)) > 0) received.append(buffer, n);
  close(sock);
  EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "the server kept the connection open: " << n << " " << errno;
  EXPECT_EQ(server->idle_stats().running, 0);
  // And it still serves others.
  EXPECT_EQ(server->client().Get("/health")->status, 200);
}

TEST_F(ServeApi, CurlReadsTheEventStream) {
  if (run_shell("command -v curl >/dev/null 2>&1").exit_code != 0) GTEST_SKIP() << "curl is not installed";
  auto server = start();
  const json body = {{"model", "tiny-gpt2"}, {"prompt", kPrompt}, {"max_tokens", 4}, {"temperature", 0},
                     {"stream", true}};
  const ShellResult r = run_shell("curl -sN --max-time 300 -H 'Content-Type: application/json' -d '" + body.dump() +
                                  "' http://127.0.0.1:" + std::to_string(server->port()) + "/v1/completions");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  bool done = false;
  const std::vector<json> chunks = sse_payloads(r.output, &done);
  EXPECT_TRUE(done) << r.output;
  std::string text;
  for (const json& c : chunks) text += c["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, text_of(reference(tokenizer_->encode(kPrompt), 4)));
}

}  // namespace
}  // namespace switchyard::serve
