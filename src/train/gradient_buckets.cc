#include "train/gradient_buckets.h"

#include <algorithm>
#include <iterator>
#include <map>

#include "core/error.h"
#include "dist/communicator.h"

namespace switchyard::train {

size_t GradientBucket::floats() const {
  size_t total = 0;
  for (const FloatRange& span : spans) total += span.size();
  return total;
}

namespace {

// The tensors of `layer` as spans: runs of them with no other tensor between (the alignment
// padding inside a run goes with it), split where the decay region ends. The layout's tensors are
// in offset order.
std::vector<FloatRange> spans_of_layers(const model::ParameterLayout& layout, int first, int last) {
  std::vector<FloatRange> spans;
  bool open = false;
  for (const model::ParameterTensor& t : layout.tensors()) {
    if (t.layer < first || t.layer > last) {
      open = false;
      continue;
    }
    if (open && spans.back().decay == t.decay) {
      spans.back().end = t.offset + t.numel;
    } else {
      spans.push_back({t.offset, t.offset + t.numel, t.decay});
    }
    open = true;
  }
  return spans;
}

}  // namespace

std::vector<GradientBucket> plan_gradient_buckets(const model::ParameterLayout& layout,
                                                  size_t min_bucket_floats) {
  std::map<int, size_t> layer_floats;  // -1: the tensors outside the layers
  for (const model::ParameterTensor& t : layout.tensors()) layer_floats[t.layer] += t.numel;
  std::vector<GradientBucket> buckets;
  int last = -1;
  size_t floats = 0;
  for (auto it = layer_floats.rbegin(); it != layer_floats.rend() && it->first >= 0; ++it) {
    if (floats == 0) last = it->first;
    floats += it->second;
    const bool first_layer = std::next(it) == layer_floats.rend() || std::next(it)->first < 0;
    if (floats >= min_bucket_floats || first_layer) {
      buckets.push_back({it->first, last, spans_of_layers(layout, it->first, last)});
      floats = 0;
    }
  }
  if (layer_floats.count(-1)) buckets.push_back({-1, -1, spans_of_layers(layout, -1, -1)});
  return buckets;
}

FloatRange piece_of(const FloatRange& span, int rank, int ranks) {
  require(rank >= 0 && rank < ranks, "rank {} of {} ranks", rank, ranks);
  // The split the collectives use (dist::even_counts), so that the pieces are theirs.
  const std::vector<int64_t> counts = dist::even_counts(static_cast<int64_t>(span.size()), ranks);
  size_t begin = span.begin;
  for (int r = 0; r < rank; ++r) begin += static_cast<size_t>(counts[static_cast<size_t>(r)]);
  return {begin, begin + static_cast<size_t>(counts[static_cast<size_t>(rank)]), span.decay};
}

std::vector<FloatRange> owned_pieces(const std::vector<GradientBucket>& buckets, int rank,
                                     int ranks) {
  std::vector<FloatRange> pieces;
  for (const GradientBucket& bucket : buckets) {
    for (const FloatRange& span : bucket.spans) {
      const FloatRange piece = piece_of(span, rank, ranks);
      if (piece.size() > 0) pieces.push_back(piece);
    }
  }
  return pieces;
}

}  // namespace switchyard::train
