// The engine's life cycle, its threads and a request's end: submitting, cancelling, the step loop,
// sampling each new token and retiring requests. What a step runs is chosen in engine_schedule.cc.
#include "serve/engine.h"

#include <algorithm>

#include "serve/active_request.h"
#include "serve/request_check.h"
#include "serve/token_logprobs.h"

namespace switchyard::serve {
namespace {

// The pool the options ask for, checking them first (this runs before the cache is built).
model::Generator::PoolSize pool_size(const model::Model& model, const EngineOptions& o) {
  require(o.max_sequences > 0, "max_sequences must be > 0, got {}", o.max_sequences);
  require(o.max_queue > 0, "max_queue must be > 0, got {}", o.max_queue);
  require(o.prefill_chunk > 0, "prefill_chunk must be > 0, got {}", o.prefill_chunk);
  require(o.kv_blocks >= 0, "kv_blocks must be >= 0 (0: room for every sequence), got {}",
          o.kv_blocks);
  require(o.block_size > 0 && o.block_size <= 256, "block_size must be in [1, 256], got {}",
          o.block_size);
  const int context = model.config().max_seq_len;
  const int per_sequence = (context + o.block_size - 1) / o.block_size;
  return {.blocks = o.kv_blocks > 0 ? o.kv_blocks : o.max_sequences * per_sequence,
          .block_size = o.block_size};
}

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

Engine::Engine(model::Model& model, const EngineOptions& options)
    : options_(options), generator_(model, pool_size(model, options)),
      step_times_(model::simulated_device(model)) {
  publish_stats();
}

Engine::~Engine() {
  // Every sink hears of its request's end exactly once, the engine's own end included.
  try {
    cancel_all();
  } catch (...) {
  }
}

RequestId Engine::submit(GenerationRequest request, std::shared_ptr<RequestSink> sink) {
  require(sink != nullptr, "a request needs a sink for its tokens");
  // The model's configuration and the cache's layout never change, so any thread may read them.
  const int limit =
      check_request(request, generator_.model().config(), generator_.cache().config());
  std::lock_guard lock(mutex_);
  if (static_cast<int>(waiting_.size()) >= options_.max_queue) throw QueueFull();
  const RequestId id = next_id_++;
  waiting_.push_back(std::make_unique<Active>(id, std::move(request), std::move(sink), limit));
  stats_.waiting = static_cast<int>(waiting_.size());
  ++events_;
  work_.notify_all();
  return id;
}

void Engine::cancel(RequestId id) {
  // Recorded only: the engine thread owns the running batch and applies it at the next step.
  std::lock_guard lock(mutex_);
  cancelled_.push_back(id);
  ++events_;
  work_.notify_all();
}

bool Engine::step() {
  apply_cancellations();
  std::vector<Planned> plan = plan_running();
  make_room(plan);
  admit(plan);
  if (!plan.empty()) run(plan);
  remove_retired();
  publish_stats();
  return !plan.empty();
}

void Engine::run_until_stopped() {
  while (!stopping_) {
    uint64_t seen;
    {
      std::lock_guard lock(mutex_);
      seen = events_;
    }
    if (step()) continue;
    // Nothing ran: sleep until a submit, cancel or stop arrives (one during the step counts).
    std::unique_lock lock(mutex_);
    work_.wait(lock, [&] { return stopping_ || events_ != seen; });
  }
}

void Engine::stop() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  ++events_;
  work_.notify_all();
}

void Engine::cancel_all() {
  std::deque<std::unique_ptr<Active>> waiting;
  {
    std::lock_guard lock(mutex_);
    waiting.swap(waiting_);
    cancelled_.clear();
  }
  for (auto& a : waiting) end_request(*a, FinishReason::kCancelled);
  for (auto& a : running_) {
    if (!a->retired) retire(*a, FinishReason::kCancelled);
  }
  remove_retired();
  publish_stats();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

GeneratedToken Engine::choose(Active& a, std::span<const float> logits) {
  const int32_t token = model::sample_token(logits, a.request.sampling, a.rng);
  return a.request.top_logprobs >= 0 ? token_with_logprobs(logits, token, a.request.top_logprobs)
                                     : GeneratedToken{.token = token, .chosen = {}, .top = {}};
}

void Engine::accept(Active& a, GeneratedToken chosen) {
  const int32_t token = chosen.token;
  a.tokens.push_back(token);
  ++counters_.generated_tokens;
  const auto& stops = a.request.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    retire(a, FinishReason::kStop);
    return;
  }
  a.sink->on_token(std::move(chosen));
  if (a.generated() == a.completion_limit) retire(a, FinishReason::kLength);
}

void Engine::preempt(Active& a) {
  // Its samples and random state stay with it: it recomputes them and samples on from there.
  generator_.finish(*a.sequence);
  a.sequence.reset();
  a.computed = 0;
  ++counters_.preemptions;
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const std::unique_ptr<Active>& r) { return r.get() == &a; });
  std::unique_ptr<Active> owned = std::move(*it);
  running_.erase(it);
  std::lock_guard lock(mutex_);
  waiting_.push_front(std::move(owned));
}

void Engine::retire(Active& a, FinishReason reason) {
  if (a.sequence) generator_.finish(*a.sequence);
  a.sequence.reset();
  a.retired = true;
  end_request(a, reason);
}

void Engine::end_request(Active& a, FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: ++counters_.finished_stop; break;
    case FinishReason::kLength: ++counters_.finished_length; break;
    case FinishReason::kCancelled: ++counters_.finished_cancelled; break;
  }
  const Usage usage{.prompt_tokens = a.prompt_tokens(),
                    .completion_tokens = a.generated(),
                    .cached_prompt_tokens = std::max(0, a.cached_prompt_tokens)};
  a.sink->on_finish(reason, usage);
}

void Engine::remove_retired() {
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->retired; });
}

void Engine::publish_stats() {
  EngineStats s = counters_;
  s.simulated_seconds = step_times_.simulated_total();
  s.running = static_cast<int>(running_.size());
  const model::KvCache& cache = generator_.cache();
  for (int g = 0; g < static_cast<int>(cache.config().groups.size()); ++g) {
    s.kv_blocks_used += cache.used_blocks(g);
    s.kv_blocks_free += cache.free_blocks(g);
  }
  std::lock_guard lock(mutex_);
  s.waiting = static_cast<int>(waiting_.size());
  stats_ = s;
}

}  // namespace switchyard::serve
