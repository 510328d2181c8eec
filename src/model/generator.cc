#include "model/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "model/batch.h"

namespace switchyard::model {

Generator::Generator(Model& model, int max_sequences, int max_tokens, int block_size)
    : model_(model) {
  require(max_sequences > 0 && max_tokens > 0,
          "a generator needs room for at least one sequence of one token");
  const int tokens = std::min(max_tokens, model.config().max_seq_len);
  const int blocks_per_sequence = (tokens + block_size - 1) / block_size;
  cache_ = std::make_unique<KvCache>(
      model.backend(), model.kv_cache_config(max_sequences * blocks_per_sequence, block_size));
}

Generator::Generator(Model& model, PoolSize pool) : model_(model) {
  require(pool.blocks > 0, "a KV pool needs at least one block, got {}", pool.blocks);
  cache_ = std::make_unique<KvCache>(model.backend(),
                                     model.kv_cache_config(pool.blocks, pool.block_size));
}

Generator::LogitRows Generator::run_rows(const std::vector<Chunk>& chunks) {
  require(!chunks.empty(), "nothing to run");
  // Check the context and the room first, so that a chunk that cannot run changes nothing.
  const int context = model_.config().max_seq_len;
  std::vector<std::pair<SequenceId, int>> appends;
  for (const Chunk& c : chunks) {
    const int length = cache_->length(c.sequence) + static_cast<int>(c.tokens.size());
    require(length <= context, "sequence {} would hold {} tokens, but the model's context is {}",
            c.sequence, length, context);
    appends.emplace_back(c.sequence, static_cast<int>(c.tokens.size()));
  }
  int missing = 0;
  if (!cache_->can_append(appends, &missing)) {
    const int free = cache_->free_blocks(0);
    throw KvCacheFull(missing + free, free, cache_->total_blocks(0));
  }
  BatchBuilder builder(*cache_);
  for (const Chunk& c : chunks) builder.add(c.sequence, c.tokens, c.logits);
  const Batch batch = builder.build();
  model_.forward(batch, cache_.get());
  return {.values = model_.logits_to_host(),
          .rows = batch.logits_rows.size(),
          .vocab = static_cast<size_t>(model_.config().vocab_size)};
}

std::vector<std::vector<float>> Generator::run(const std::vector<Chunk>& chunks) {
  const LogitRows all = run_rows(chunks);
  std::vector<std::vector<float>> logits;
  for (size_t r = 0; r < all.rows; ++r) logits.emplace_back(all.row(r).begin(), all.row(r).end());
  return logits;
}

std::pair<SequenceId, std::vector<float>> Generator::start(const std::vector<int32_t>& prompt,
                                                           int chunk) {
  require(!prompt.empty(), "an empty prompt has nothing to run");
  require(static_cast<int>(prompt.size()) <= model_.config().max_seq_len,
          "prompt is {} tokens, but the model's context is {}", prompt.size(),
          model_.config().max_seq_len);
  const SequenceId id = cache_->add_sequence();
  const size_t step = chunk > 0 ? static_cast<size_t>(chunk) : prompt.size();
  std::vector<float> logits;
  try {
    for (size_t begin = 0; begin < prompt.size(); begin += step) {
      const size_t end = std::min(prompt.size(), begin + step);
      Chunk c{.sequence = id,
              .tokens = std::vector<int32_t>(prompt.begin() + static_cast<std::ptrdiff_t>(begin),
                                             prompt.begin() + static_cast<std::ptrdiff_t>(end)),
              .logits = end == prompt.size()};
      std::vector<std::vector<float>> out = run({c});
      if (c.logits) logits = std::move(out.front());
    }
  } catch (...) {
    cache_->free_sequence(id);
    throw;
  }
  return {id, std::move(logits)};
}

GenerateResult generate(Generator& generator, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options, Rng& rng,
                        const std::function<void(int32_t)>& on_token) {
  validate(options.sampling);
  const int context = generator.model().config().max_seq_len;
  require(static_cast<int>(prompt.size()) < context,
          "prompt is {} tokens, but the model's context is {} (it needs room for at least one new "
          "token)",
          prompt.size(), context);
  using Clock = std::chrono::steady_clock;
  GenerateResult result;
  const auto t0 = Clock::now();
  auto [sequence, logits] = generator.start(prompt, options.prefill_chunk);
  const auto t1 = Clock::now();
  int length = static_cast<int>(prompt.size());
  while (static_cast<int>(result.tokens.size()) < options.max_new_tokens) {
    const int32_t next = sample_token(logits, options.sampling, rng);
    result.tokens.push_back(next);
    on_token(next);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) !=
        options.stop_tokens.end()) {
      break;
    }
    if (static_cast<int>(result.tokens.size()) == options.max_new_tokens) break;
    if (length >= context) {
      result.hit_context = true;
      break;
    }
    logits = std::move(generator.run({{.sequence = sequence, .tokens = {next}}}).front());
    ++length;
  }
  generator.finish(sequence);
  result.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.generate_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return result;
}

}  // namespace switchyard::model
