// Which gradients data-parallel training sends together, and which part of each a rank owns.
//
// The backward pass finishes the layers from the last to the first; a bucket holds the gradients
// of one or more consecutive layers, so its reduction can start while the backward pass goes on
// with the layers before it. The tensors outside the layers (embeddings, head, final norm) form the
// last bucket: the tied embedding's gradient is complete only when the whole pass is.
//
// A bucket is a few contiguous spans of the flat gradient (ParameterLayout puts a layer's matrices
// among the decayed tensors and its vectors among the others). Every span is split evenly across
// the ranks (ZeRO-1): rank r reduces, updates and holds the optimizer state of the r-th piece of
// every span, then the pieces are gathered back into every rank's full parameters.
#pragma once

#include <cstddef>
#include <vector>

#include "model/parameter_layout.h"

namespace switchyard::train {

using model::FloatRange;

struct GradientBucket {
  int first_layer = -1;  // the layers it holds, first_layer <= l <= last_layer;
  int last_layer = -1;   // both -1 for the tensors outside the layers
  std::vector<FloatRange> spans;  // in layout order, each inside one decay region
  size_t floats() const;
};

// Buckets in the order the backward pass completes them: layers from the last down, each bucket
// growing by whole layers until it holds at least `min_bucket_floats`, then the tensors outside
// the layers. Every tensor of the layout is in exactly one span.
std::vector<GradientBucket> plan_gradient_buckets(const model::ParameterLayout& layout,
                                                  size_t min_bucket_floats);

// Rank `rank`'s piece of `span` among `ranks`: contiguous, split as dist::even_counts splits (the
// first span.size() % ranks pieces one float longer than the others).
FloatRange piece_of(const FloatRange& span, int rank, int ranks);

// Every piece `rank` owns, bucket by bucket and span by span: the ranges whose optimizer state it
// keeps.
std::vector<FloatRange> owned_pieces(const std::vector<GradientBucket>& buckets, int rank, int ranks);

}  // namespace switchyard::train
