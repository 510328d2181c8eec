// Running sequences through a model over a paged KV cache: prompts prefilled in one pass (or in
// chunks), then decode steps that take one new token from each of several sequences in one batch.
//
// The Generator owns the KvCache; callers own the sequences it returns. generate() is the usual
// loop over it for one prompt (sample, stop at end of text, at a token budget or at the context)
// and reports each token through a callback, so the CLI and the server print what they like.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/rng.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"

namespace switchyard::model {

class Generator {
 public:
  // A cache with room for `max_sequences` sequences of up to `max_tokens` tokens each (capped at
  // the model's context).
  Generator(Model& model, int max_sequences, int max_tokens, int block_size = 16);
  // A cache of exactly `blocks` blocks in each layer group's pool, for callers that size the pool
  // themselves (the serving engine, whose sequences wait for room instead of reserving a context).
  struct PoolSize {
    int blocks = 0;
    int block_size = 16;
  };
  Generator(Model& model, PoolSize pool);

  Model& model() { return model_; }
  KvCache& cache() { return *cache_; }
  const KvCache& cache() const { return *cache_; }

  struct Chunk {
    SequenceId sequence;
    std::vector<int32_t> tokens;  // the sequence's next tokens
    bool logits = true;           // whether the last of them gets logits
  };
  // The logits of a pass: a row [vocab] for each chunk that asked, in order, in one host buffer
  // (a batch of 32 rows over GPT-2's vocabulary is 6.4 MB, copied once rather than twice).
  struct LogitRows {
    std::vector<float> values;
    size_t rows = 0, vocab = 0;
    std::span<const float> row(size_t r) const { return {values.data() + r * vocab, vocab}; }
  };
  // One forward pass over the chunks; returns the logits of each chunk that asked, in order.
  // Throws KvCacheFull when the cache cannot take them all, and Error when a sequence would outgrow
  // the model's context, running and changing nothing.
  LogitRows run_rows(const std::vector<Chunk>& chunks);
  // run_rows, each row a vector of its own.
  std::vector<std::vector<float>> run(const std::vector<Chunk>& chunks);

  // A new sequence holding `prompt`, run in chunks of at most `chunk` tokens (0: one pass); returns
  // it and the logits after its last token.
  std::pair<SequenceId, std::vector<float>> start(const std::vector<int32_t>& prompt,
                                                   int chunk = 0);
  void finish(SequenceId sequence) { cache_->free_sequence(sequence); }

 private:
  Model& model_;
  std::unique_ptr<KvCache> cache_;
};

struct GenerateOptions {
  int max_new_tokens = 100;
  SamplingOptions sampling;
  std::vector<int32_t> stop_tokens;  // stop when one is sampled (it ends the result's tokens)
  int prefill_chunk = 0;     // 0: the whole prompt in one pass
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, the end-of-text token included when sampled
  bool hit_context = false;     // stopped at the model's context
  double prompt_seconds = 0, generate_seconds = 0;
};

// Samples up to options.max_new_tokens tokens after `prompt`, calling on_token(token) for each as
// it is chosen (before the next is computed). Throws Error for a prompt that leaves no room in the
// context.
GenerateResult generate(Generator& generator, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options, Rng& rng,
                        const std::function<void(int32_t)>& on_token);

}  // namespace switchyard::model
