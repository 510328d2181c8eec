#include "tokenizer/rank_bpe.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace switchyard::tokenizer {

namespace {

constexpr uint32_t kNoPart = std::numeric_limits<uint32_t>::max();

}  // namespace

int32_t RankBpe::rank_of(std::string_view chunk, size_t begin, size_t end) const {
  const auto it = ranks_.find(chunk.substr(begin, end - begin));
  return it == ranks_.end() ? -1 : it->second;
}

void RankBpe::encode(std::string_view chunk, std::vector<int32_t>& out) const {
  if (const int32_t whole = rank_of(chunk, 0, chunk.size()); whole >= 0) {
    out.push_back(whole);
    return;
  }
  merge(chunk, out);
}

// The reference rescans every pair after each merge, which is quadratic in the chunk length (a long
// run of digits or spaces is one chunk). This keeps candidate pairs in a min-heap ordered by
// (rank, start), so each step takes the lowest-ranked, then leftmost, pair exactly as the reference
// does, in O(n log n). A merge leaves stale candidates behind; a candidate is still current only if
// both of its parts are unchanged: parts only ever grow, so checking their ends suffices.
void RankBpe::merge(std::string_view chunk, std::vector<int32_t>& out) const {
  require(chunk.size() < kNoPart, "BPE: a chunk of {} bytes (one unbroken run of letters, digits, "
          "spaces or symbols) is too long; at most {} bytes are supported", chunk.size(), kNoPart - 1);
  const auto n = static_cast<uint32_t>(chunk.size());
  part_end_.resize(n);
  part_prev_.resize(n);
  heap_.clear();
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.start > b.start;
  };
  const auto consider = [&](uint32_t start, uint32_t mid, uint32_t end) {
    const int32_t rank = rank_of(chunk, start, end);
    if (rank < 0) return;
    heap_.push_back(Candidate{rank, start, mid, end});
    std::push_heap(heap_.begin(), heap_.end(), later);
  };
  for (uint32_t i = 0; i < n; ++i) {
    part_end_[i] = i + 1;
    part_prev_[i] = i == 0 ? kNoPart : i - 1;
    if (i + 1 < n) consider(i, i + 1, i + 2);
  }
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const Candidate c = heap_.back();
    heap_.pop_back();
    if (part_end_[c.start] != c.mid || part_end_[c.mid] != c.end) continue;  // stale
    part_end_[c.start] = c.end;
    part_end_[c.mid] = 0;
    if (c.end < n) {
      part_prev_[c.end] = c.start;
      consider(c.start, c.end, part_end_[c.end]);
    }
    if (const uint32_t prev = part_prev_[c.start]; prev != kNoPart) consider(prev, c.start, c.end);
  }
  for (uint32_t start = 0; start < n; start = part_end_[start]) {
    const int32_t rank = rank_of(chunk, start, part_end_[start]);
    if (rank < 0) fail("BPE: byte 0x{:02X} has no token in the vocabulary", static_cast<uint8_t>(chunk[start]));
    out.push_back(rank);
  }
}

}  // namespace switchyard::tokenizer
