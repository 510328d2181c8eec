#include "data/batch_loader.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "data/token_shard.h"

namespace switchyard::data {
namespace {

// Moves `position` forward until a whole batch of `needed` tokens fits at it, skipping shards too
// small to hold one and wrapping (one more epoch) after the last. The constructor guarantees some
// shard is large enough, so this terminates within one pass over the shards.
void settle(const std::vector<std::vector<uint32_t>>& shards, size_t needed,
            LoaderPosition& position) {
  while (shards[position.shard].size() < position.offset + needed) {
    position.offset = 0;
    if (++position.shard == shards.size()) {
      position.shard = 0;
      ++position.epoch;
    }
  }
}

}  // namespace

BatchLoader::BatchLoader(std::vector<std::string> paths, int B, int T, int vocab_size)
    : paths_(std::move(paths)), B_(B), T_(T) {
  require(B > 0 && T > 0, "batch loader: batch size {} and sequence length {} must be positive", B, T);
  require(vocab_size > 0, "batch loader: vocabulary size {} must be positive", vocab_size);
  require(!paths_.empty(), "batch loader: no token shards given");
  const size_t needed = static_cast<size_t>(B) * static_cast<size_t>(T) + 1;

  bool any_fits = false;
  shards_.reserve(paths_.size());
  for (const std::string& path : paths_) {
    std::vector<uint32_t> tokens = read_shard(path);
    for (size_t i = 0; i < tokens.size(); ++i) {
      require(tokens[i] < static_cast<uint32_t>(vocab_size),
              "token shard {}: token at index {} is {}, outside the vocabulary of size {}", path, i,
              tokens[i], vocab_size);
    }
    any_fits = any_fits || tokens.size() >= needed;
    shards_.push_back(std::move(tokens));
  }
  if (!any_fits) {
    size_t largest = 0;
    for (const auto& s : shards_) largest = std::max(largest, s.size());
    fail("batch loader: no shard holds the {} tokens one batch of B={} x T={} needs (+1 for the last "
         "target); the largest of the {} shard(s) holds {}",
         needed, B, T, shards_.size(), largest);
  }
  settle(shards_, needed, position_);
}

void BatchLoader::next_batch(std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  const size_t n = static_cast<size_t>(B_) * static_cast<size_t>(T_);
  inputs.resize(n);
  targets.resize(n);
  // settle() has already made sure n + 1 tokens are available from the current offset.
  const uint32_t* tokens = shards_[position_.shard].data() + position_.offset;
  for (size_t i = 0; i < n; ++i) {
    inputs[i] = tokens[i];
    targets[i] = tokens[i + 1];
  }
  position_.offset += n;
  settle(shards_, n + 1, position_);
}

void BatchLoader::seek(const LoaderPosition& position) {
  const size_t needed = static_cast<size_t>(B_) * static_cast<size_t>(T_) + 1;
  require(position.shard < shards_.size(),
          "batch loader: cannot seek to shard {} (there are {} shards)", position.shard,
          shards_.size());
  const size_t held = shards_[position.shard].size();
  require(position.offset <= held && held - position.offset >= needed,
          "batch loader: cannot seek to offset {} in shard {} ({}): it holds {} tokens and a batch "
          "needs {} from the offset",
          position.offset, position.shard, paths_[position.shard], held, needed);
  position_ = position;
}

size_t BatchLoader::total_tokens() const {
  size_t total = 0;
  for (const auto& s : shards_) total += s.size();
  return total;
}

size_t count_eval_windows(size_t num_tokens, int T) {
  require(T > 0, "evaluation sequence length {} must be positive", T);
  // Window i needs tokens up to index (i+1)T inclusive, so it fits when (i+1)T + 1 <= num_tokens.
  if (num_tokens == 0) return 0;
  return (num_tokens - 1) / static_cast<size_t>(T);
}

}  // namespace switchyard::data
