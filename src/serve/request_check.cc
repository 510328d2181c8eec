#include "serve/request_check.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "model/sampler.h"

namespace switchyard::serve {
namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

void check_tokens(const GenerationRequest& r, int vocab) {
  require(!r.prompt.empty(), "the prompt is empty: a request needs at least one prompt token");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    require(r.prompt[i] >= 0 && r.prompt[i] < vocab,
            "prompt token {} (at position {}) is outside the vocabulary [0, {})", r.prompt[i], i,
            vocab);
  }
  for (int32_t t : r.stop_tokens) {
    require(t >= 0 && t < vocab, "stop token {} is outside the vocabulary [0, {})", t, vocab);
  }
}

void check_options(const GenerationRequest& r) {
  require(r.max_tokens > 0, "max_tokens must be > 0, got {}", r.max_tokens);
  require(r.top_logprobs >= -1 && r.top_logprobs <= 20,
          "top_logprobs must be -1 (none) or in [0, 20], got {}", r.top_logprobs);
  try {
    model::validate(r.sampling);
  } catch (const Error& e) {
    fail("invalid sampling options: {}", e.what());
  }
}

// The pool must hold the request alone, or it could wait (or be preempted) for ever.
void check_pool(const GenerationRequest& r, int limit, const model::KvCacheConfig& cache) {
  // The last sampled token is never run, so the cache holds at most prompt + limit - 1 tokens.
  const int tokens = static_cast<int>(r.prompt.size()) + limit - 1;
  for (const model::KvCacheGroup& group : cache.groups) {
    const int needed = blocks_alone(tokens, group.window, cache.block_size);
    require(needed <= group.blocks,
            "the request needs {} KV blocks of {} tokens ({} prompt tokens + up to {} new), but "
            "the pool has {}",
            needed, cache.block_size, r.prompt.size(), limit, group.blocks);
  }
}

}  // namespace

int completion_limit(const GenerationRequest& request, int context) {
  return std::min(request.max_tokens, context - static_cast<int>(request.prompt.size()));
}

int blocks_alone(int tokens, int window, int block_size) {
  const int all = ceil_div(tokens, block_size);
  if (window <= 0) return all;
  // Appending position p reads keys from p - window + 1 on: window positions over at most
  // ceil((window - 1) / block_size) + 1 blocks.
  return std::min(all, ceil_div(window - 1, block_size) + 1);
}

int check_request(const GenerationRequest& request, const model::ModelConfig& model,
                  const model::KvCacheConfig& cache) {
  check_tokens(request, model.vocab_size);
  const int context = model.max_seq_len;
  require(static_cast<int>(request.prompt.size()) < context,
          "the prompt is {} tokens, which leaves no room in the model's context of {}",
          request.prompt.size(), context);
  check_options(request);
  const int limit = completion_limit(request, context);
  check_pool(request, limit, cache);
  return limit;
}

}  // namespace switchyard::serve
