// The serving engine against model::generate: many requests batched together (greedy and sampled,
// through preemption, prefix sharing and chunked prompts) give exactly the tokens each gives alone
// and that generate() gives; cancellation, token and context limits, stop tokens,
// log-probabilities, refused requests, a full queue, the engine on its own thread; and every KV
// block free again once the requests end.
//
// fp32 on the CPU gives the same bits whatever shares a batch (batch_decode_test.cc), so every
// comparison of tokens here is exact.
#include "serve/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "expect_error.h"
#include "model/generator.h"
#include "model/model.h"
#include "random_data.h"

namespace switchyard {
namespace {

using serve::Engine;
using serve::EngineOptions;
using serve::FinishReason;
using serve::GenerationRequest;

// A sink that keeps what it receives, and lets another thread wait for the end.
class Collected : public serve::RequestSink {
 public:
  void on_token(const serve::GeneratedToken& token) override {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(finishes_, 0) << "a token after the end";
    tokens_.push_back(token);
  }
  void on_finish(FinishReason reason, const serve::Usage& usage) override {
    std::lock_guard lock(mutex_);
    ++finishes_;
    reason_ = reason;
    usage_ = usage;
    done_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return finishes_ > 0; });
  }
  std::vector<int32_t> ids() const {
    std::lock_guard lock(mutex_);
    std::vector<int32_t> out;
    for (const auto& t : tokens_) out.push_back(t.token);
    return out;
  }
  std::vector<serve::GeneratedToken> tokens() const {
    std::lock_guard lock(mutex_);
    return tokens_;
  }
  int finishes() const {
    std::lock_guard lock(mutex_);
    return finishes_;
  }
  FinishReason reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }
  serve::Usage usage() const {
    std::lock_guard lock(mutex_);
    return usage_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_;
  std::vector<serve::GeneratedToken> tokens_;
  int finishes_ = 0;
  FinishReason reason_ = FinishReason::kCancelled;
  serve::Usage usage_;
};

using Sinks = std::vector<std::shared_ptr<Collected>>;

// Holds the engine thread in its `gate`-th token until release(), so that another thread can act
// while the request is certainly still running.
class GatedSink : public Collected {
 public:
  explicit GatedSink(size_t gate) : gate_(gate) {}
  void on_token(const serve::GeneratedToken& token) override {
    Collected::on_token(token);
    if (tokens().size() != gate_) return;
    std::unique_lock lock(mutex_);
    reached_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return released_; });
  }
  void wait_for_gate() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return reached_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

 private:
  const size_t gate_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool reached_ = false, released_ = false;
};

model::ModelConfig gpt_oss_config() {
  model::ModelConfig c = model::preset("gpt-oss-tiny");
  c.num_layers = 3;
  c.layer_types = {"sliding_attention", "full_attention", "sliding_attention"};
  c.channels = 64;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.num_experts = 4;
  c.experts_per_token = 2;
  c.intermediate = 64;
  c.sliding_window = 8;
  c.vocab_size = 200;
  c.max_seq_len = 96;
  return c;
}

class ServeEngine : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = backend::create_backend("cpu"); }

  model::Model& make_model(const model::ModelConfig& config, uint64_t seed = 11) {
    model_ = model::Model::create(*backend_, config);
    model_->init_random(seed);
    return *model_;
  }
  model::Model& gpt2() { return make_model(model::preset("tiny")); }

  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<model::Model> model_;
};

GenerationRequest request(std::vector<int32_t> prompt, int max_tokens, float temperature = 0,
                          uint64_t seed = 0) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.top_k = temperature > 0 ? 40 : 0;
  r.sampling.top_p = temperature > 0 ? 0.95f : 1.0f;
  r.seed = seed;
  return r;
}

struct Expected {
  std::vector<int32_t> tokens;  // emitted: a stop token is not
  FinishReason reason;
};

// What model::generate gives for the request, alone in a cache of its own.
Expected reference(model::Model& m, const GenerationRequest& r) {
  const int prompt = static_cast<int>(r.prompt.size());
  const int limit = std::min(r.max_tokens, m.config().max_seq_len - prompt);
  model::Generator g(m, 1, prompt + limit);
  model::GenerateOptions o{.max_new_tokens = limit, .sampling = r.sampling,
                           .stop_tokens = r.stop_tokens, .prefill_chunk = 0};
  Rng rng(r.seed);
  model::GenerateResult result = model::generate(g, r.prompt, o, rng, [](int32_t) {});
  const auto& stops = r.stop_tokens;
  if (!result.tokens.empty() &&
      std::find(stops.begin(), stops.end(), result.tokens.back()) != stops.end()) {
    result.tokens.pop_back();
    return {result.tokens, FinishReason::kStop};
  }
  return {result.tokens, FinishReason::kLength};
}

// Steps until nothing is left (bounded, so that a scheduling bug fails instead of hanging).
void run_to_idle(Engine& engine) {
  for (int steps = 0; engine.step(); ++steps) {
    ASSERT_LT(steps, 100000) << "the engine never went idle";
  }
}

void expect_idle(const Engine& engine) {
  const serve::EngineStats s = engine.stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_GT(s.kv_blocks_free, 0);
}

Sinks serve_all(Engine& engine, const std::vector<GenerationRequest>& requests) {
  Sinks sinks;
  for (const auto& r : requests) {
    sinks.push_back(std::make_shared<Collected>());
    engine.submit(r, sinks.back());
  }
  run_to_idle(engine);
  expect_idle(engine);
  return sinks;
}

// Each request's tokens equal generate()'s and those it gives alone in an engine of its own.
void expect_exact(model::Model& m, const std::vector<GenerationRequest>& requests,
                  const Sinks& batched, const EngineOptions& options) {
  ASSERT_EQ(batched.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Expected want = reference(m, requests[i]);
    Engine alone(m, options);
    const Sinks one = serve_all(alone, {requests[i]});
    EXPECT_EQ(one[0]->ids(), want.tokens) << "request " << i << " alone";
    EXPECT_EQ(batched[i]->ids(), want.tokens) << "request " << i << " batched";
    EXPECT_EQ(batched[i]->finishes(), 1) << "request " << i;
    EXPECT_EQ(batched[i]->reason(), want.reason) << "request " << i;
    EXPECT_EQ(batched[i]->usage().completion_tokens,
              static_cast<int>(want.tokens.size()) + (want.reason == FinishReason::kStop))
        << "request " << i;
  }
}

// 32 prompts of 1 to 125 tokens asking for 1 to 40 tokens.
std::vector<GenerationRequest> varied_requests(int vocab, float temperature) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 32; ++i) {
    const int prompt = 1 + (i * 37) % 125, tokens = 1 + (i * 13) % 40;
    requests.push_back(request(random_tokens(prompt, vocab, 100 + i), tokens, temperature, 7 * i));
  }
  return requests;
}

TEST_F(ServeEngine, ThirtyTwoGreedyRequestsTogetherGiveWhatEachGivesAlone) {
  model::Model& m = gpt2();
  const EngineOptions options{.max_sequences = 32, .prefill_chunk = 64};
  Engine engine(m, options);
  const auto requests = varied_requests(m.config().vocab_size, 0);
  const Sinks sinks = serve_all(engine, requests);
  expect_exact(m, requests, sinks, options);
  const serve::EngineStats s = engine.stats();
  EXPECT_EQ(s.finished_length, 32);
  int64_t prompt_tokens = 0, generated = 0;
  for (const auto& r : requests) prompt_tokens += static_cast<int64_t>(r.prompt.size());
  for (const auto& sink : sinks) generated += sink->usage().completion_tokens;
  EXPECT_EQ(s.prompt_tokens, prompt_tokens);
  EXPECT_EQ(s.generated_tokens, generated);
  // 2,000 prompt tokens at most 64 a step (one-token remainders aside): decoding overlapped the
  // prompts, or it would have taken those steps plus up to 40 for each answer after them.
  EXPECT_LT(s.steps, prompt_tokens / 64 + 1 + 40 + 32);
}

TEST_F(ServeEngine, SampledRequestsGiveTheSameTokensAloneAndBatched) {
  model::Model& m = gpt2();
  const EngineOptions options{.max_sequences = 16, .prefill_chunk = 48};
  auto requests = varied_requests(m.config().vocab_size, 0.9f);
  requests.resize(16);
  // The same prompt under two seeds: the seeds, not the batch, decide what is sampled.
  requests.push_back(requests[5]);
  requests.back().seed = 12345;
  Engine engine(m, options);
  const Sinks sinks = serve_all(engine, requests);
  expect_exact(m, requests, sinks, options);
  EXPECT_NE(sinks[5]->ids(), sinks.back()->ids());
}

// A pool of 24 blocks for 8 requests that need 7 each: admitted on their first chunk, they outgrow
// the pool while decoding and the newest are preempted, recomputed later and sampled on from the
// same random state.
TEST_F(ServeEngine, PreemptionLeavesTheAnswersUnchanged) {
  model::Model& m = gpt2();
  const EngineOptions options{.max_sequences = 8, .prefill_chunk = 512, .kv_blocks = 24};
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 8; ++i) {
    requests.push_back(request(random_tokens(40, m.config().vocab_size, 200 + i), 60,
                               i % 2 ? 0.8f : 0.0f, 1000 + i));
  }
  Engine engine(m, options);
  const Sinks sinks = serve_all(engine, requests);
  EXPECT_GT(engine.stats().preemptions, 0);
  expect_exact(m, requests, sinks, options);
  for (const auto& sink : sinks) EXPECT_EQ(sink->usage().prompt_tokens, 40);
}

TEST_F(ServeEngine, RequestsSharingAPrefixHitThePrefixCache) {
  model::Model& m = gpt2();
  const EngineOptions options{.max_sequences = 16, .prefill_chunk = 128};
  const std::vector<int32_t> shared = random_tokens(100, m.config().vocab_size, 300);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> prompt = shared;
    for (int32_t t : random_tokens(5, m.config().vocab_size, 301 + i)) prompt.push_back(t);
    requests.push_back(request(prompt, 12, i % 3 ? 0.0f : 1.0f, i));
  }
  Engine engine(m, options);
  const Sinks sinks = serve_all(engine, requests);
  const serve::EngineStats s = engine.stats();
  EXPECT_GT(s.prefix_cache_hit_tokens, 0);
  // The first prompt fills the step's budget; those admitted once its blocks were in the cache
  // found the shared prefix's six full blocks.
  int hits = 0;
  int64_t cached = 0;
  for (const auto& sink : sinks) {
    hits += sink->usage().cached_prompt_tokens == 96;
    cached += sink->usage().cached_prompt_tokens;
  }
  EXPECT_GE(hits, 14);
  EXPECT_EQ(s.prefix_cache_hit_tokens, cached);  // no preemption here: one admission each
  expect_exact(m, requests, sinks, options);
}

// gpt-oss: sliding-window and full-attention groups, experts, prefix sharing across the windows
// and preemption, against generate().
TEST_F(ServeEngine, GptOssRequestsTogetherGiveWhatEachGivesAlone) {
  model::Model& m = make_model(gpt_oss_config(), 5);
  const EngineOptions options{.max_sequences = 12, .prefill_chunk = 40, .kv_blocks = 20,
                              .block_size = 8};
  const std::vector<int32_t> shared = random_tokens(30, m.config().vocab_size, 400);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> prompt = i % 2 ? shared : std::vector<int32_t>{};
    for (int32_t t : random_tokens(3 + 4 * i, m.config().vocab_size, 401 + i)) prompt.push_back(t);
    requests.push_back(request(prompt, 10 + 3 * i, i % 3 == 1 ? 0.0f : 0.7f, 50 + i));
  }
  Engine engine(m, options);
  const Sinks sinks = serve_all(engine, requests);
  EXPECT_GT(engine.stats().preemptions, 0);
  EXPECT_GT(engine.stats().prefix_cache_hit_tokens, 0);
  expect_exact(m, requests, sinks, options);
}

TEST_F(ServeEngine, CancellingFreesTheBlocksWithinOneStep) {
  model::Model& m = gpt2();
  Engine engine(m, {.max_sequences = 3, .prefill_chunk = 512});
  std::vector<GenerationRequest> requests;
  Sinks sinks;
  for (int i = 0; i < 4; ++i) {
    requests.push_back(request(random_tokens(30 + 10 * i, m.config().vocab_size, 500 + i), 50));
    sinks.push_back(std::make_shared<Collected>());
  }
  std::vector<serve::RequestId> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(engine.submit(requests[i], sinks[i]));
  for (int i = 0; i < 5; ++i) engine.step();
  ASSERT_EQ(sinks[1]->ids().size(), 5u);
  EXPECT_EQ(engine.stats().running, 3);
  EXPECT_EQ(engine.stats().waiting, 1);
  // One running and the waiting one.
  engine.cancel(ids[1]);
  engine.cancel(ids[3]);
  engine.cancel(9999);  // unknown: ignored
  engine.step();
  EXPECT_EQ(sinks[1]->finishes(), 1);
  EXPECT_EQ(sinks[1]->reason(), FinishReason::kCancelled);
  EXPECT_EQ(sinks[1]->usage().completion_tokens, 5);
  EXPECT_EQ(sinks[3]->reason(), FinishReason::kCancelled);
  EXPECT_TRUE(sinks[3]->ids().empty());
  EXPECT_EQ(sinks[3]->usage().completion_tokens, 0);
  // The others hold just their own tokens, all but the last sampled: prompt + 6 - 1.
  const serve::EngineStats s = engine.stats();
  EXPECT_EQ(s.running, 2);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.kv_blocks_used, (30 + 5 + 15) / 16 + (50 + 5 + 15) / 16);
  EXPECT_EQ(s.finished_cancelled, 2);
  run_to_idle(engine);
  engine.cancel(ids[0]);  // finished: ignored
  engine.step();
  EXPECT_EQ(sinks[0]->finishes(), 1);
  EXPECT_EQ(sinks[0]->reason(), FinishReason::kLength);
  EXPECT_EQ(sinks[0]->ids(), reference(m, requests[0]).tokens);
  EXPECT_EQ(engine.stats().finished_cancelled, 2);
  expect_idle(engine);
}

TEST_F(ServeEngine, TokenAndContextLimitsEndWithLength) {
  model::Model& m = gpt2();
  const int context = m.config().max_seq_len, V = m.config().vocab_size;
  Engine engine(m, {.max_sequences = 4, .prefill_chunk = 100});
  const std::vector<GenerationRequest> requests = {
      request(random_tokens(10, V, 600), 7),
      request(random_tokens(context - 3, V, 601), 10),  // 3 tokens left in the context
      request(random_tokens(context - 1, V, 602), 5),   // 1 token left
      request(random_tokens(context - 20, V, 603), 20, 1.0f, 9),  // exactly up to the context
  };
  const Sinks sinks = serve_all(engine, requests);
  const int counts[] = {7, 3, 1, 20};
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(sinks[i]->reason(), FinishReason::kLength) << i;
    EXPECT_EQ(static_cast<int>(sinks[i]->ids().size()), counts[i]) << i;
    EXPECT_EQ(sinks[i]->usage().completion_tokens, counts[i]) << i;
    EXPECT_EQ(sinks[i]->usage().prompt_tokens, static_cast<int>(requests[i].prompt.size())) << i;
    EXPECT_EQ(sinks[i]->ids(), reference(m, requests[i]).tokens) << i;
  }
  EXPECT_EQ(engine.stats().finished_length, 4);
}

TEST_F(ServeEngine, StopTokensEndTheRequestAndAreNotEmitted) {
  model::Model& m = gpt2();
  GenerationRequest r = request(random_tokens(20, m.config().vocab_size, 700), 30, 1.0f, 3);
  const std::vector<int32_t> free_run = reference(m, r).tokens;
  ASSERT_EQ(free_run.size(), 30u);
  // Stop at the first occurrence of the ninth token's id (or of the last id, should it come first).
  r.stop_tokens = {free_run[8], m.config().vocab_size - 1};
  const int first = static_cast<int>(
      std::find_first_of(free_run.begin(), free_run.end(), r.stop_tokens.begin(),
                         r.stop_tokens.end()) - free_run.begin());
  ASSERT_LE(first, 8);
  Engine engine(m, {});
  const Sinks sinks = serve_all(engine, {r});
  EXPECT_EQ(sinks[0]->reason(), FinishReason::kStop);
  EXPECT_EQ(sinks[0]->ids(), std::vector<int32_t>(free_run.begin(), free_run.begin() + first));
  EXPECT_EQ(sinks[0]->usage().completion_tokens, first + 1);
  EXPECT_EQ(sinks[0]->ids(), reference(m, r).tokens);
  EXPECT_EQ(engine.stats().finished_stop, 1);
}

// log p(t) = logit_t - log(sum exp(logits)), from the logits the model gives for the same tokens.
TEST_F(ServeEngine, LogprobsAreTheLogSoftmaxOfTheLogits) {
  model::Model& m = gpt2();
  GenerationRequest greedy = request(random_tokens(12, m.config().vocab_size, 800), 6);
  greedy.top_logprobs = 5;
  GenerationRequest sampled = request(random_tokens(9, m.config().vocab_size, 801), 6, 1.3f, 4);
  sampled.top_logprobs = 0;
  GenerationRequest none = request(random_tokens(9, m.config().vocab_size, 802), 3);
  Engine engine(m, {});
  const Sinks sinks = serve_all(engine, {greedy, sampled, none});
  for (const auto& t : sinks[2]->tokens()) {
    EXPECT_FALSE(t.chosen.has_value());
    EXPECT_TRUE(t.top.empty());
  }
  for (int which = 0; which < 2; ++which) {
    const GenerationRequest& r = which == 0 ? greedy : sampled;
    const auto tokens = sinks[which]->tokens();
    ASSERT_EQ(tokens.size(), 6u);
    model::Generator g(m, 1, 32);
    auto [sequence, logits] = g.start(r.prompt);
    for (const serve::GeneratedToken& t : tokens) {
      long double sum = 0;
      for (float l : logits) sum += std::exp(static_cast<long double>(l));
      auto want = [&](int32_t token) {
        return static_cast<double>(logits[token] - std::log(sum));
      };
      ASSERT_TRUE(t.chosen.has_value());
      EXPECT_EQ(t.chosen->token, t.token);
      EXPECT_NEAR(t.chosen->logprob, want(t.token), 1e-5);
      ASSERT_EQ(static_cast<int>(t.top.size()), r.top_logprobs);
      std::vector<int32_t> order(logits.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
      for (int k = 0; k < r.top_logprobs; ++k) {
        EXPECT_EQ(t.top[k].token, order[k]);
        EXPECT_NEAR(t.top[k].logprob, want(order[k]), 1e-5);
      }
      if (which == 0) {
        EXPECT_EQ(t.top[0].token, t.token);  // greedy takes the most likely
      }
      logits = g.run({{.sequence = sequence, .tokens = {t.token}}}).front();
    }
    g.finish(sequence);
  }
}

TEST_F(ServeEngine, InvalidRequestsAreRefusedWithAClearMessage) {
  model::Model& m = gpt2();
  const int V = m.config().vocab_size, context = m.config().max_seq_len;
  Engine engine(m, {.max_sequences = 2, .kv_blocks = 8});  // 128 tokens of room
  auto sink = std::make_shared<Collected>();
  const GenerationRequest good = request(random_tokens(10, V, 900), 5);
  auto refused = [&](GenerationRequest r, const std::vector<std::string>& words) {
    expect_error([&] { engine.submit(r, sink); }, words);
  };
  refused(request({}, 5), {"prompt is empty"});
  refused(request({1, V, 2}, 5), {"prompt token 256", "position 1", "vocabulary"});
  refused(request({-1}, 5), {"prompt token -1"});
  refused(request(random_tokens(context, V, 901), 5), {"256 tokens", "no room", "context"});
  refused(request({1, 2}, 0), {"max_tokens", "> 0"});
  GenerationRequest r = good;
  r.sampling.temperature = -1;
  refused(r, {"sampling", "temperature"});
  r = good;
  r.sampling.top_p = 0;
  refused(r, {"top-p"});
  r = good;
  r.top_logprobs = 21;
  refused(r, {"top_logprobs"});
  r = good;
  r.stop_tokens = {V + 3};
  refused(r, {"stop token 259"});
  // 120 prompt tokens and up to 20 more need 9 blocks of 16; the pool has 8.
  refused(request(random_tokens(120, V, 902), 20), {"needs 9 KV blocks", "pool has 8"});
  expect_error([&] { engine.submit(good, nullptr); }, {"sink"});
  expect_error([&] { Engine bad(m, {.prefill_chunk = 0}); }, {"prefill_chunk"});
  expect_error([&] { Engine bad(m, {.max_sequences = 0}); }, {"max_sequences"});
  // Nothing was queued; a good request still runs.
  EXPECT_EQ(engine.stats().waiting, 0);
  const Sinks sinks = serve_all(engine, {good});
  EXPECT_EQ(sinks[0]->ids().size(), 5u);
  EXPECT_EQ(sink->finishes(), 0);
}

TEST_F(ServeEngine, AFullQueueRefusesMore) {
  model::Model& m = gpt2();
  Engine engine(m, {.max_queue = 2});
  const GenerationRequest r = request(random_tokens(5, m.config().vocab_size, 950), 3);
  Sinks sinks;
  for (int i = 0; i < 3; ++i) sinks.push_back(std::make_shared<Collected>());
  engine.submit(r, sinks[0]);
  engine.submit(r, sinks[1]);
  EXPECT_THROW(engine.submit(r, sinks[2]), serve::QueueFull);
  EXPECT_EQ(engine.stats().waiting, 2);
  engine.step();  // both admitted: the queue has room again
  engine.submit(r, sinks[2]);
  run_to_idle(engine);
  for (const auto& sink : sinks) EXPECT_EQ(sink->ids(), sinks[0]->ids());
  expect_idle(engine);
}

TEST_F(ServeEngine, EndingTheEngineEndsItsRequests) {
  model::Model& m = gpt2();
  Sinks sinks;
  {
    Engine engine(m, {.max_sequences = 1});
    for (int i = 0; i < 2; ++i) {
      sinks.push_back(std::make_shared<Collected>());
      engine.submit(request(random_tokens(5, m.config().vocab_size, 960 + i), 30), sinks.back());
    }
    engine.step();
    engine.step();
  }
  for (const auto& sink : sinks) {
    EXPECT_EQ(sink->finishes(), 1);
    EXPECT_EQ(sink->reason(), FinishReason::kCancelled);
  }
  EXPECT_EQ(sinks[0]->ids().size(), 2u);
}

// The engine on its own thread; four threads submit and wait for their answers, one cancels.
TEST_F(ServeEngine, RunsOnItsOwnThreadWithSubmitsFromOthers) {
  model::Model& m = gpt2();
  Engine engine(m, {.max_sequences = 6, .prefill_chunk = 32});
  std::thread engine_thread([&] { engine.run_until_stopped(); });
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 16; ++i) {
    requests.push_back(request(random_tokens(5 + 3 * i, m.config().vocab_size, 1100 + i),
                               4 + i % 5, i % 2 ? 0.9f : 0.0f, i));
  }
  Sinks sinks(16);
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < 16; i += 4) {
        sinks[i] = std::make_shared<Collected>();
        engine.submit(requests[i], sinks[i]);
        sinks[i]->wait();
      }
    });
  }
  for (auto& t : clients) t.join();
  // A long request cancelled from this thread while the engine runs it: it ends at the next step.
  auto endless = std::make_shared<GatedSink>(3);
  const serve::RequestId id =
      engine.submit(request(random_tokens(5, m.config().vocab_size, 1200), 200), endless);
  endless->wait_for_gate();
  engine.cancel(id);
  endless->release();
  endless->wait();
  EXPECT_EQ(endless->reason(), FinishReason::kCancelled);
  EXPECT_EQ(endless->usage().completion_tokens, 3);
  engine.stop();
  engine_thread.join();
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(sinks[i]->ids(), reference(m, requests[i]).tokens) << "request " << i;
  }
  expect_idle(engine);
}

// The simulated seconds the device's own clock advanced while `engine` stepped to idle (every
// device operation of a step is in its forward pass), and the steps it took.
std::pair<double, int64_t> step_to_idle_on_the_clock(Engine& engine, const backend::Backend& device) {
  double seconds = 0;
  int64_t steps = 0;
  for (;;) {
    const double before = backend::simulation_report(device)->total_ns;
    if (!engine.step()) break;
    seconds += (backend::simulation_report(device)->total_ns - before) * 1e-9;
    ++steps;
  }
  return {seconds, steps};
}

// On a simulator device the engine records each step's simulated time beside its wall time: the
// total is what the device's clock advanced over the steps, and each histogram holds one
// observation a step.
TEST_F(ServeEngine, RecordsTheSimulatedTimeOfEachStepOnASimulatorDevice) {
  const std::unique_ptr<backend::Backend> sim = backend::create_backend("trn2-sim");
  model::ModelConfig config = model::preset("tiny");
  config.num_layers = 2;
  const std::unique_ptr<model::Model> m = model::Model::create(*sim, config);
  m->init_random(3);
  Engine engine(*m, {.max_sequences = 4, .prefill_chunk = 8});
  Sinks sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<Collected>());
    engine.submit(request(random_tokens(3 + 5 * i, config.vocab_size, 70 + i), 3), sinks.back());
  }
  const auto [clock_seconds, steps] = step_to_idle_on_the_clock(engine, *sim);
  for (const auto& sink : sinks) EXPECT_EQ(sink->ids().size(), 3u);
  const serve::EngineStats stats = engine.stats();
  EXPECT_EQ(stats.steps, steps);
  ASSERT_TRUE(stats.simulated_seconds.has_value());
  EXPECT_GT(*stats.simulated_seconds, 0);
  EXPECT_NEAR(*stats.simulated_seconds, clock_seconds, 1e-9 * clock_seconds);
  const serve::StepTimes& times = engine.step_times();
  ASSERT_TRUE(times.simulated_device().has_value());
  EXPECT_EQ(times.simulated_device()->device, "trn2-sim");
  EXPECT_EQ(times.simulated_device()->target, "trn2");
  EXPECT_EQ(times.simulated_device()->cores_per_chip, 8);
  ASSERT_NE(times.simulated_seconds(), nullptr);
  const serve::Histogram::Snapshot simulated = times.simulated_seconds()->snapshot();
  EXPECT_EQ(simulated.count, static_cast<uint64_t>(steps));
  EXPECT_NEAR(simulated.sum, clock_seconds, 1e-9 * clock_seconds);
  const serve::Histogram::Snapshot wall = times.wall_seconds().snapshot();
  EXPECT_EQ(wall.count, static_cast<uint64_t>(steps));
  EXPECT_GT(wall.sum, 0);
}

TEST_F(ServeEngine, RecordsNoSimulatedTimeOnARealDevice) {
  model::Model& m = gpt2();
  Engine engine(m, {});
  serve_all(engine, {request(random_tokens(6, m.config().vocab_size, 80), 4)});
  const serve::EngineStats stats = engine.stats();
  EXPECT_FALSE(stats.simulated_seconds.has_value());
  EXPECT_FALSE(engine.step_times().simulated_device().has_value());
  EXPECT_EQ(engine.step_times().simulated_seconds(), nullptr);
  EXPECT_EQ(engine.step_times().wall_seconds().snapshot().count, static_cast<uint64_t>(stats.steps));
}

TEST(ServeFinishReason, Names) {
  EXPECT_EQ(serve::finish_reason_name(FinishReason::kStop), "stop");
  EXPECT_EQ(serve::finish_reason_name(FinishReason::kLength), "length");
  EXPECT_EQ(serve::finish_reason_name(FinishReason::kCancelled), "cancelled");
}

}  // namespace
}  // namespace switchyard
