#include "tokenizer/gpt2_tokenizer.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace switchyard::tokenizer {

namespace {

// Chunks longer than this are rare (long runs of letters, digits or spaces) and not worth caching.
constexpr size_t kMaxCachedChunkBytes = 256;
// The cache is emptied when it holds more ids than this (16 MiB) or more chunks than kMaxCachedChunks.
constexpr size_t kMaxCachedIds = size_t{1} << 22;
constexpr size_t kMaxCachedChunks = size_t{1} << 20;

}  // namespace

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& directory) : vocab_(load_gpt2_vocab(directory)) {}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  pretokenizer_.split(text, chunks_);
  for (const Chunk& chunk : chunks_) encode_chunk(text.substr(chunk.begin, chunk.end - chunk.begin), ids);
  return ids;
}

void Gpt2Tokenizer::encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
  if (chunk.size() == 1) {
    out.push_back(vocab_.byte_token[static_cast<uint8_t>(chunk[0])]);
    return;
  }
  if (chunk.size() > kMaxCachedChunkBytes) {
    apply_merges(chunk, out);
    return;
  }
  if (const auto it = cache_.find(chunk); it != cache_.end()) {
    const int32_t* first = cache_ids_.data() + it->second.offset;
    out.insert(out.end(), first, first + it->second.count);
    return;
  }
  if (cache_ids_.size() + chunk.size() > kMaxCachedIds || cache_.size() >= kMaxCachedChunks) {
    cache_.clear();
    cache_ids_.clear();
  }
  const size_t offset = cache_ids_.size();
  apply_merges(chunk, cache_ids_);
  const auto count = static_cast<uint32_t>(cache_ids_.size() - offset);
  cache_.emplace(std::string(chunk), CacheEntry{static_cast<uint32_t>(offset), count});
  out.insert(out.end(), cache_ids_.begin() + static_cast<ptrdiff_t>(offset), cache_ids_.end());
}

// OpenAI's loop rescans the whole chunk for the lowest-ranked pair after every merge, which is
// quadratic in the chunk length. This gives the same result in O(n log n): candidate pairs sit in a
// min-heap ordered by (rank, position); all candidates of the lowest rank are taken out together
// and merged left to right, skipping those a previous merge consumed (as in "a a a" -> "aa a").
// Pairs that a merge creates are pushed only after the whole rank is done being taken out, so they
// wait for the next round even when their rank is lower, exactly as in the reference. A stale
// candidate is recognised by its ids: a symbol's id only ever changes into a longer token.
void Gpt2Tokenizer::apply_merges(std::string_view chunk, std::vector<int32_t>& out) const {
  // Symbols are indexed with int32_t; a chunk is one run of letters, digits, spaces or symbols.
  require(chunk.size() <= static_cast<size_t>(INT32_MAX),
          "GPT-2 tokenizer: a chunk of {} bytes (one unbroken run of letters, digits, spaces or "
          "symbols) is too long; at most {} bytes are supported", chunk.size(), INT32_MAX);
  const auto n = static_cast<int32_t>(chunk.size());
  std::vector<Symbol>& symbols = symbols_;
  symbols.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = Symbol{vocab_.byte_token[static_cast<uint8_t>(chunk[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  std::vector<Candidate>& heap = heap_;
  heap.clear();
  const auto candidate = [&](int32_t left, bool push) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = vocab_.merges.find(merge_key(symbols[left].id, symbols[right].id));
    if (it == vocab_.merges.end()) return;
    heap.push_back(Candidate{it->second.rank, left, symbols[left].id, symbols[right].id});
    if (push) std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) candidate(i, false);
  std::make_heap(heap.begin(), heap.end(), later);

  std::vector<Candidate>& batch = batch_;
  while (!heap.empty()) {
    const int32_t rank = heap.front().rank;
    batch.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      batch.push_back(heap.back());
      heap.pop_back();
    }
    // One rank is one pair of token ids, and so one result.
    const int32_t result = vocab_.merges.at(merge_key(batch[0].left_id, batch[0].right_id)).result;
    for (const Candidate& c : batch) {
      Symbol& left = symbols[c.left];
      if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
      Symbol& right = symbols[left.next];
      left.id = result;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      right.id = -1;
      if (left.prev >= 0) candidate(left.prev, true);
      candidate(c.left, true);
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

const std::string& Gpt2Tokenizer::token_bytes(int32_t id) const {
  require(id >= 0 && id < vocab_size(), "token id {} is outside the GPT-2 vocabulary [0, {})", id,
          vocab_size());
  return vocab_.token_bytes[static_cast<size_t>(id)];
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    require(ids[i] >= 0 && ids[i] < vocab_size(),
            "token id {} (position {}) is outside the GPT-2 vocabulary [0, {})", ids[i], i, vocab_size());
    total += vocab_.token_bytes[static_cast<size_t>(ids[i])].size();
  }
  std::string text;
  text.reserve(total);
  for (const int32_t id : ids) text += vocab_.token_bytes[static_cast<size_t>(id)];
  return text;
}

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& directory) {
  return std::make_unique<Gpt2Tokenizer>(directory);
}

}  // namespace switchyard::tokenizer
