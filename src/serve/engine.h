// The serving engine: continuous batching over the paged KV cache.
//
// Requests wait in a queue and join the running batch at the next step; every step is one forward
// pass (model::Generator::run) over one new token of each decoding sequence plus prompt chunks of
// sequences still prefilling (at most `prefill_chunk` prompt tokens a step, so running streams keep
// flowing while long prompts go in). A sequence leaves the batch the step it finishes (a stop
// token, its token budget, the model's context) or is cancelled, and its blocks go back to the
// pool at once. When the pool cannot hold the next step, the newest sequences are preempted: their
// blocks are freed and they wait again at the front of the queue, to recompute their tokens later
// (sampling continues from the same random state, so the answer does not change). Prompts that
// share a prefix share its full KV blocks (KvCache::add_sequence_with_prefix).
//
// Answers do not depend on batching: the CPU products are batch-invariant and each request samples
// from its own seeded random stream, so a request returns the same tokens alone or among 31 others.
//
// Threading: submit(), cancel(), stop() and stats() may be called from any thread; step(),
// run_until_stopped() and cancel_all() from one engine thread (or while none runs). Tokens and the
// end of a request reach its RequestSink on the engine thread, which must not block or throw in
// them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "serve/step_times.h"

namespace switchyard::serve {

enum class FinishReason { kStop, kLength, kCancelled };
std::string_view finish_reason_name(FinishReason reason);  // "stop", "length", "cancelled"

// What a request asks the engine to do, in tokens (text handling is the API layer's).
struct GenerationRequest {
  std::vector<int32_t> prompt;          // at least one token, all below the vocabulary size
  int max_tokens = 16;                  // > 0; capped by the context left after the prompt
                                        // (prompt + completion <= the model's context)
  model::SamplingOptions sampling;      // temperature 0: greedy
  uint64_t seed = 0;                    // the request's own random stream
  std::vector<int32_t> stop_tokens;     // end the request (reason stop) when sampled; not emitted
  int top_logprobs = -1;                // -1: no log-probabilities; 0..20: the chosen token's and
                                        // this many alternatives'
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // natural log of the probability under softmax(logits) (temperature 1)
};

struct GeneratedToken {
  int32_t token = 0;
  std::optional<TokenLogprob> chosen;  // set when the request asked for log-probabilities
  std::vector<TokenLogprob> top;       // the top_logprobs most likely tokens, most likely first
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;     // tokens sampled, a stop token included
  int cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache
};

// Receives a request's results on the engine thread.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // One generated token (never a stop token).
  virtual void on_token(const GeneratedToken& token) = 0;
  // The request has ended; called exactly once, after its last on_token.
  virtual void on_finish(FinishReason reason, const Usage& usage) = 0;
};

struct EngineOptions {
  int max_sequences = 32;   // sequences in the running batch at most
  int max_queue = 256;      // waiting requests at most; submit() refuses more
  int prefill_chunk = 512;  // prompt tokens prefilled per step at most (over all sequences)
  int kv_blocks = 0;        // blocks per KV pool; 0: room for max_sequences full contexts. A
                            // request that could not fit the pool even alone is refused.
  int block_size = 16;
};

// Thrown by submit() when max_queue requests are already waiting.
class QueueFull : public Error {
 public:
  QueueFull() : Error("the request queue is full") {}
};

// A snapshot for /metrics and the tests.
struct EngineStats {
  int running = 0;
  int waiting = 0;
  int64_t finished_stop = 0, finished_length = 0, finished_cancelled = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;  // of admitted requests; sampled tokens
  int64_t prefix_cache_hit_tokens = 0;  // cached tokens found at each admission (readmissions too)
  int kv_blocks_used = 0, kv_blocks_free = 0;  // summed over the cache's groups
  int64_t steps = 0;
  std::optional<double> simulated_seconds;  // simulator devices: of all steps; nullopt elsewhere
};

using RequestId = int64_t;

class Engine {
 public:
  Engine(model::Model& model, const EngineOptions& options);
  ~Engine();

  // Queues a request. Throws Error naming the problem for an invalid request (empty prompt, token
  // out of range, prompt leaving no room in the context, max_tokens <= 0, bad sampling options)
  // and QueueFull when the queue is full.
  RequestId submit(GenerationRequest request, std::shared_ptr<RequestSink> sink);
  // Ends a request (waiting or running) at the next step: its blocks are freed and its sink gets
  // on_finish(kCancelled). Unknown or finished ids are ignored.
  void cancel(RequestId id);

  // One scheduling step: admit, preempt if needed, one forward pass, sample, retire. Returns false
  // when there was nothing to do.
  bool step();
  // Steps until stop() is called; sleeps while there is no work.
  void run_until_stopped();
  // Makes run_until_stopped() return after the current step (from any thread).
  void stop();
  // Cancels every waiting and running request (their sinks get kCancelled).
  void cancel_all();

  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }
  model::Model& model() { return generator_.model(); }
  // The wall and (on a simulator device) simulated seconds of each step's forward pass.
  const StepTimes& step_times() const { return step_times_; }

 private:
  struct Active;  // a request's state (active_request.h)
  // A step's share of one running sequence: its next `tokens` uncomputed tokens.
  struct Planned {
    Active* active;
    int tokens;
  };

  // The parts of step(), in the order it calls them (engine_schedule.cc).
  void apply_cancellations();
  std::vector<Planned> plan_running() const;
  void make_room(std::vector<Planned>& plan);
  void admit(std::vector<Planned>& plan);
  void run(const std::vector<Planned>& plan);
  // Whether the cache can take the plan's tokens and `extra_tokens` of sequence `extra` (-1: none).
  bool fits(const std::vector<Planned>& plan, model::SequenceId extra = -1,
            int extra_tokens = 0) const;
  int prefill_budget_left(const std::vector<Planned>& plan) const;

  // Sampling and ending requests (engine.cc).
  // The next token of `a` from its logits (with log-probabilities where asked). It touches only
  // a's own random state, so the sequences of a step choose theirs in parallel.
  static GeneratedToken choose(Active& a, std::span<const float> logits);
  // Takes a chosen token: the request's tokens, its stream, and its end at a stop token or limit.
  void accept(Active& a, GeneratedToken chosen);
  void preempt(Active& a);
  void retire(Active& a, FinishReason reason);
  void end_request(Active& a, FinishReason reason);
  void remove_retired();
  void publish_stats();

  EngineOptions options_;
  model::Generator generator_;
  mutable std::mutex mutex_;            // guards the queue, the cancellations and the stats
  std::condition_variable work_;
  std::deque<std::unique_ptr<Active>> waiting_;
  std::vector<std::unique_ptr<Active>> running_;  // engine thread only; oldest admitted first
  std::vector<RequestId> cancelled_;
  RequestId next_id_ = 1;
  uint64_t events_ = 0;                 // submits, cancels and stops so far: wakes the idle loop
  std::atomic<bool> stopping_{false};
  EngineStats counters_;                // engine thread only; published into stats_ each step
  EngineStats stats_;                   // the snapshot stats() returns
  StepTimes step_times_;
};

}  // namespace switchyard::serve
