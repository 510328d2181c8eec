// Serves (input, target) batches from token shards, in order, remembering its position so that a
// resumed run continues with exactly the batch that came next.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace switchyard::data {

// Where the loader is: which shard, which token inside it, and how many full passes were made.
struct LoaderPosition {
  size_t shard = 0;
  size_t offset = 0;
  size_t epoch = 0;
};

class BatchLoader {
 public:
  // Loads every shard in `paths` (in order). Throws Error if a shard is invalid, if any token is
  // >= vocab_size (naming shard, index, token and vocabulary size), or if no shard holds the
  // B*T+1 tokens one batch needs.
  BatchLoader(std::vector<std::string> paths, int B, int T, int vocab_size);

  // Fills inputs[B*T] and targets[B*T] (targets are inputs shifted by one) from B consecutive
  // windows of T+1 tokens that overlap by one token, then advances by B*T tokens. Moves to the next
  // shard when the current one has fewer than B*T+1 tokens left; after the last shard wraps to the
  // first and increments epoch.
  void next_batch(std::vector<int32_t>& inputs, std::vector<int32_t>& targets);

  LoaderPosition position() const { return position_; }
  // Throws Error if the position does not exist in these shards.
  void seek(const LoaderPosition& position);
  size_t total_tokens() const;
  int batch_size() const { return B_; }
  int seq_len() const { return T_; }

 private:
  std::vector<std::string> paths_;
  std::vector<std::vector<uint32_t>> shards_;
  int B_, T_;
  LoaderPosition position_;
};

// Consecutive non-overlapping evaluation windows over one token sequence: window i feeds tokens
// [iT, (i+1)T) and predicts [iT+1, (i+1)T+1); a trailing partial window is dropped.
size_t count_eval_windows(size_t num_tokens, int T);

}  // namespace switchyard::data
