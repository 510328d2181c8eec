// A request's state inside the engine, from submit() to its end: what it asked, the tokens it has
// so far, its random stream and, while it runs, its sequence in the KV cache.
//
// The tokens are the prompt followed by every token sampled so far; the cache holds the first
// `computed` of them. A running sequence always has at least one token to compute (the prompt's
// rest, or the token sampled last), so a preempted request simply loses its cache sequence and
// `computed`, and recomputes its tokens when it runs again; its samples and its random stream are
// kept, so it goes on exactly where it stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "model/kv_cache.h"
#include "serve/engine.h"

namespace switchyard::serve {

struct Engine::Active {
  Active(RequestId request_id, GenerationRequest r, std::shared_ptr<RequestSink> s, int limit)
      : id(request_id),
        request(std::move(r)),
        sink(std::move(s)),
        rng(request.seed),
        completion_limit(limit),
        tokens(request.prompt) {}

  RequestId id;
  GenerationRequest request;
  std::shared_ptr<RequestSink> sink;
  Rng rng;                       // this request's samples only, so batching cannot change them
  int completion_limit;          // max_tokens capped by the context left after the prompt
  std::vector<int32_t> tokens;   // the prompt, then the sampled tokens
  std::optional<model::SequenceId> sequence;  // while running
  int computed = 0;              // tokens in the cache
  int cached_prompt_tokens = -1; // prompt tokens the prefix cache held at its first admission
  bool retired = false;          // ended; removed from the running batch at the end of the step

  int prompt_tokens() const { return static_cast<int>(request.prompt.size()); }
  int generated() const { return static_cast<int>(tokens.size()) - prompt_tokens(); }
  int pending() const { return static_cast<int>(tokens.size()) - computed; }
  // More than one token to compute: prompt tokens (or tokens to recompute) that draw on the
  // step's prefill budget, unlike the one new token of a decoding sequence.
  bool prefilling() const { return pending() > 1; }
};

}  // namespace switchyard::serve
