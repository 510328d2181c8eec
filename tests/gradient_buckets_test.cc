// Gradient buckets and ZeRO-1 pieces: every parameter in exactly one span and one rank's piece,
// buckets in the order the backward pass finishes them.
#include "train/gradient_buckets.h"

#include <gtest/gtest.h>

#include <vector>

#include "model/gpt2.h"
#include "model/gpt_oss.h"
#include "model/model_config.h"

namespace switchyard::train {
namespace {

// How many spans of `buckets` hold each float of the layout.
std::vector<int> coverage(const std::vector<GradientBucket>& buckets, size_t total) {
  std::vector<int> count(total, 0);
  for (const GradientBucket& b : buckets) {
    for (const FloatRange& s : b.spans) {
      for (size_t i = s.begin; i < s.end; ++i) count[i] += 1;
    }
  }
  return count;
}

void expect_every_tensor_once(const model::ParameterLayout& layout,
                              const std::vector<GradientBucket>& buckets) {
  const std::vector<int> count = coverage(buckets, layout.total());
  for (const model::ParameterTensor& t : layout.tensors()) {
    for (size_t i = t.offset; i < t.offset + t.numel; ++i) {
      ASSERT_EQ(count[i], 1) << t.name;
    }
  }
  for (const GradientBucket& b : buckets) {
    for (const FloatRange& s : b.spans) {
      EXPECT_EQ(s.decay, s.begin < layout.decay_end()) << "span crosses the decay boundary";
      EXPECT_LE(s.end <= layout.decay_end() || s.begin >= layout.decay_end(), true);
    }
  }
}

TEST(GradientBuckets, OneLayerPerBucketLastLayerFirstThenTheRest) {
  const model::ModelConfig config = model::preset("tiny");
  const model::ParameterLayout layout = model::gpt2_layout(config);
  const std::vector<GradientBucket> buckets = plan_gradient_buckets(layout, 1);
  ASSERT_EQ(buckets.size(), static_cast<size_t>(config.num_layers) + 1);
  for (int i = 0; i < config.num_layers; ++i) {
    EXPECT_EQ(buckets[i].first_layer, config.num_layers - 1 - i);
    EXPECT_EQ(buckets[i].last_layer, config.num_layers - 1 - i);
    EXPECT_EQ(buckets[i].spans.size(), 2u) << "a layer's matrices and its vectors";
  }
  EXPECT_EQ(buckets.back().first_layer, -1);
  // wte and wpe (decayed), ln_f (not).
  EXPECT_EQ(buckets.back().spans.size(), 2u);
  expect_every_tensor_once(layout, buckets);
}

TEST(GradientBuckets, LargeBucketsTakeWholeLayers) {
  const model::ModelConfig config = model::preset("tiny");
  const model::ParameterLayout layout = model::gpt2_layout(config);
  const std::vector<GradientBucket> one = plan_gradient_buckets(layout, 1);
  const std::vector<GradientBucket> pairs = plan_gradient_buckets(layout, one[0].floats() + 1);
  ASSERT_EQ(config.num_layers % 2, 0);
  ASSERT_EQ(pairs.size(), static_cast<size_t>(config.num_layers / 2) + 1);
  EXPECT_EQ(pairs[0].last_layer, config.num_layers - 1);
  EXPECT_EQ(pairs[0].first_layer, config.num_layers - 2);
  EXPECT_EQ(pairs[0].floats(), one[0].floats() + one[1].floats());
  expect_every_tensor_once(layout, pairs);
  // Everything in one bucket of layers, then the rest.
  const std::vector<GradientBucket> all = plan_gradient_buckets(layout, layout.total());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first_layer, 0);
  expect_every_tensor_once(layout, all);
}

TEST(GradientBuckets, GptOssLayersAndTheirVectors) {
  const model::ModelConfig config = model::preset("gpt-oss-tiny");
  const model::ParameterLayout layout = model::gpt_oss_layout(config);
  const std::vector<GradientBucket> buckets = plan_gradient_buckets(layout, 1);
  ASSERT_EQ(buckets.size(), static_cast<size_t>(config.num_layers) + 1);
  expect_every_tensor_once(layout, buckets);
  // The embeddings before the layers' matrices, the head between them and the layers' vectors,
  // the final norm last: three spans.
  EXPECT_EQ(buckets.back().spans.size(), 3u);
}

TEST(GradientBuckets, PiecesSplitEverySpanEvenly) {
  const FloatRange span{100, 111, true};
  std::vector<size_t> sizes;
  size_t next = span.begin;
  for (int r = 0; r < 4; ++r) {
    const FloatRange piece = piece_of(span, r, 4);
    EXPECT_EQ(piece.begin, next);
    EXPECT_TRUE(piece.decay);
    next = piece.end;
    sizes.push_back(piece.size());
  }
  EXPECT_EQ(next, span.end);
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 3, 2}));
  // Owned pieces of all ranks together: every float once.
  const model::ParameterLayout layout = model::gpt2_layout(model::preset("tiny"));
  const std::vector<GradientBucket> buckets = plan_gradient_buckets(layout, 1);
  std::vector<int> count(layout.total(), 0);
  size_t owned_total = 0;
  for (int r = 0; r < 3; ++r) {
    for (const FloatRange& p : owned_pieces(buckets, r, 3)) {
      owned_total += p.size();
      for (size_t i = p.begin; i < p.end; ++i) count[i] += 1;
    }
  }
  EXPECT_EQ(count, coverage(buckets, layout.total()));
  size_t span_total = 0;
  for (const GradientBucket& b : buckets) span_total += b.floats();
  EXPECT_EQ(owned_total, span_total);
}

}  // namespace
}  // namespace switchyard::train
