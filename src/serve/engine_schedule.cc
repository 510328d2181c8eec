// What one step runs: cancellations first, then a chunk for every running sequence (one token for
// a decoding one, prompt tokens within the step's prefill budget for the others, oldest first),
// preemption of the newest sequences while the pool cannot hold that, admission of waiting
// requests in order while it can, and the forward pass over it all.
#include <algorithm>
#include <exception>

#include "serve/active_request.h"
#include "serve/engine.h"

namespace switchyard::serve {

void Engine::apply_cancellations() {
  std::vector<RequestId> ids;
  std::vector<std::unique_ptr<Active>> dropped;
  {
    std::lock_guard lock(mutex_);
    ids.swap(cancelled_);
    for (RequestId id : ids) {
      auto it = std::find_if(waiting_.begin(), waiting_.end(),
                             [&](const std::unique_ptr<Active>& a) { return a->id == id; });
      if (it == waiting_.end()) continue;
      dropped.push_back(std::move(*it));
      waiting_.erase(it);
    }
  }
  // Sinks hear of it outside the lock, so that they may submit or cancel from there.
  for (auto& a : dropped) end_request(*a, FinishReason::kCancelled);
  for (auto& a : running_) {
    if (!a->retired && std::find(ids.begin(), ids.end(), a->id) != ids.end()) {
      retire(*a, FinishReason::kCancelled);
    }
  }
  remove_retired();
}

std::vector<Engine::Planned> Engine::plan_running() const {
  std::vector<Planned> plan;
  int budget = options_.prefill_chunk;
  for (const auto& a : running_) {
    if (!a->prefilling()) {
      plan.push_back({a.get(), 1});
      continue;
    }
    // Prompts wait for the budget oldest first, so the oldest starts decoding soonest.
    const int tokens = std::min(a->pending(), budget);
    if (tokens == 0) continue;
    plan.push_back({a.get(), tokens});
    budget -= tokens;
  }
  return plan;
}

void Engine::make_room(std::vector<Planned>& plan) {
  while (!fits(plan)) {
    if (running_.size() > 1) {
      // The newest has the least work to redo and waited least: it waits again, at the front.
      Active* newest = running_.back().get();
      std::erase_if(plan, [&](const Planned& p) { return p.active == newest; });
      preempt(*newest);
    } else if (plan.front().tokens > 1) {
      plan.front().tokens /= 2;  // alone and prefilling: a smaller chunk, it goes on next step
    } else {
      // check_request() refuses requests that cannot fit alone, so this is not expected; ending
      // the request is better than waiting for room that cannot come.
      retire(*plan.front().active, FinishReason::kLength);
      plan.clear();
    }
  }
}

void Engine::admit(std::vector<Planned>& plan) {
  int budget = prefill_budget_left(plan);
  while (static_cast<int>(running_.size()) < options_.max_sequences) {
    Active* a;
    {
      // Only this thread takes from the queue, so its front stays put while the lock is off.
      std::lock_guard lock(mutex_);
      if (waiting_.empty()) break;
      a = waiting_.front().get();
    }
    const auto [sequence, cached] = generator_.cache().add_sequence_with_prefix(a->tokens);
    const int pending = static_cast<int>(a->tokens.size()) - cached;
    int tokens = pending > 1 ? std::min(pending, budget) : 1;
    // Nothing else runs: a smaller first chunk rather than none, or the request would wait for
    // ever.
    while (plan.empty() && tokens > 1 && !fits(plan, sequence, tokens)) tokens /= 2;
    if (tokens == 0 || !fits(plan, sequence, tokens)) {
      generator_.finish(sequence);  // first come, first served: no one overtakes it
      break;
    }
    std::unique_ptr<Active> owned;
    {
      std::lock_guard lock(mutex_);
      owned = std::move(waiting_.front());
      waiting_.pop_front();
    }
    a->sequence = sequence;
    a->computed = cached;
    counters_.prefix_cache_hit_tokens += cached;
    if (a->cached_prompt_tokens < 0) {  // the first admission; a preempted request comes back
      a->cached_prompt_tokens = std::min(cached, a->prompt_tokens());
      counters_.prompt_tokens += a->prompt_tokens();
    }
    if (pending > 1) budget -= tokens;
    plan.push_back({a, tokens});
    running_.push_back(std::move(owned));
  }
}

void Engine::run(const std::vector<Planned>& plan) {
  std::vector<model::Generator::Chunk> chunks;
  for (const Planned& p : plan) {
    const Active& a = *p.active;
    const auto begin = a.tokens.begin() + a.computed;
    // Logits only where the chunk reaches the last token: the next token is sampled from them.
    chunks.push_back({.sequence = *a.sequence,
                      .tokens = std::vector<int32_t>(begin, begin + p.tokens),
                      .logits = a.computed + p.tokens == static_cast<int>(a.tokens.size())});
  }
  model::Generator::LogitRows logits;
  const PassTimer timer(generator_.model());
  try {
    logits = generator_.run_rows(chunks);
  } catch (...) {
    // The pass may have stored part of the step's keys: every sequence starts over from its
    // tokens, which leaves the engine consistent for the caller to decide what to do.
    while (!running_.empty()) preempt(*running_.back());
    throw;
  }
  step_times_.record(timer.wall_seconds(), timer.simulated_seconds());
  std::vector<int> row(plan.size(), -1);  // each chunk's row of logits, if it has one
  int rows = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    plan[i].active->computed += plan[i].tokens;
    if (chunks[i].logits) row[i] = rows++;
  }
  // A draw with a temperature costs a quarter of a millisecond over GPT-2's vocabulary (top-p
  // over a near-uniform distribution, 2.5 ms): the sequences choose theirs on all cores, then
  // take them in order.
  std::vector<GeneratedToken> chosen(plan.size());
  std::vector<std::exception_ptr> failed(plan.size());
#pragma omp parallel for schedule(dynamic) if (rows > 1)
  for (int i = 0; i < static_cast<int>(plan.size()); ++i) {
    if (row[i] < 0) continue;
    try {
      chosen[i] = choose(*plan[i].active, logits.row(row[i]));
    } catch (...) {
      failed[i] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : failed) {
    if (e) std::rethrow_exception(e);
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    if (row[i] >= 0) accept(*plan[i].active, std::move(chosen[i]));
  }
  ++counters_.steps;
}

bool Engine::fits(const std::vector<Planned>& plan, model::SequenceId extra,
                  int extra_tokens) const {
  std::vector<std::pair<model::SequenceId, int>> appends;
  for (const Planned& p : plan) appends.emplace_back(*p.active->sequence, p.tokens);
  if (extra >= 0) appends.emplace_back(extra, extra_tokens);
  return generator_.cache().can_append(appends);
}

int Engine::prefill_budget_left(const std::vector<Planned>& plan) const {
  int used = 0;
  for (const Planned& p : plan) {
    if (p.active->prefilling()) used += p.tokens;
  }
  return options_.prefill_chunk - used;
}

}  // namespace switchyard::serve
