// What the engine checks of a request before it queues it, so that a queued request can always
// run to its end: tokens in the vocabulary, room in the context, options in range, and a KV pool
// that could hold the request even if it ran alone.
#pragma once

#include "model/kv_cache.h"
#include "model/model_config.h"
#include "serve/engine.h"

namespace switchyard::serve {

// The most tokens the request may sample: max_tokens capped by the context left after the prompt.
int completion_limit(const GenerationRequest& request, int context);

// Blocks of one cache group a single sequence holds at most while it grows to `tokens` tokens one
// step at a time (a sliding window keeps only the blocks its next query reads).
int blocks_alone(int tokens, int window, int block_size);

// Throws Error naming the problem when the request cannot be served; returns its completion limit.
int check_request(const GenerationRequest& request, const model::ModelConfig& model,
                  const model::KvCacheConfig& cache);

}  // namespace switchyard::serve
