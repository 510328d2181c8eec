// A gpt-oss checkpoint in the published layout (tools/make_gpt_oss_reference.py wrote it): two
// shards found through their index, bf16 everywhere but the experts, the experts' MXFP4 blocks and
// scales in the published shapes, and MXFP4 decoding bit-exact against the reference's decoding.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/safetensors_set.h"

namespace switchyard::model {
namespace {

const std::string kData = SWITCHYARD_TEST_DATA;
const std::string kCheckpoint = kData + "/gpt_oss_reference";
const std::string kReference = kData + "/gpt_oss_reference.safetensors";
constexpr int64_t kExperts = 5, kHidden = 96, kIntermediate = 32, kLayers = 3;

TEST(GptOssCheckpoint, ShardsOpenThroughTheIndexWithThePublishedDtypesAndShapes) {
  const SafetensorsSet set = SafetensorsSet::open(kCheckpoint);
  EXPECT_NE(set.file_of("model.embed_tokens.weight").source(),
            set.file_of("lm_head.weight").source());  // the reference splits the weights in two
  for (int layer = 0; layer < kLayers; ++layer) {
    const std::string experts = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    const TensorInfo* blocks = set.find(experts + "gate_up_proj_blocks");
    const TensorInfo* scales = set.find(experts + "gate_up_proj_scales");
    const TensorInfo* down = set.find(experts + "down_proj_blocks");
    ASSERT_TRUE(blocks && scales && down) << "layer " << layer;
    EXPECT_EQ(blocks->dtype, DType::kU8);
    EXPECT_EQ(blocks->shape, (std::vector<int64_t>{kExperts, 2 * kIntermediate, kHidden / 32, 16}));
    EXPECT_EQ(scales->shape, (std::vector<int64_t>{kExperts, 2 * kIntermediate, kHidden / 32}));
    EXPECT_EQ(down->shape, (std::vector<int64_t>{kExperts, kHidden, kIntermediate / 32, 16}));
  }
  for (const TensorInfo* t : set.tensors()) {
    if (t->name.ends_with("_blocks") || t->name.ends_with("_scales")) continue;
    EXPECT_EQ(t->dtype, DType::kBF16) << t->name;
  }
}

// Decodes [E, rows, cols / 32] MXFP4 blocks into [E, rows, cols].
std::vector<float> decode_experts(const SafetensorsSet& set, const std::string& name) {
  const TensorInfo* blocks = set.find(name + "_blocks");
  const std::span<const uint8_t> codes = set.raw(name + "_blocks"), scales = set.raw(name + "_scales");
  const int64_t block_count = blocks->shape[0] * blocks->shape[1] * blocks->shape[2];
  std::vector<float> out(static_cast<size_t>(block_count) * 32);
  for (int64_t b = 0; b < block_count; ++b) {
    decode_mxfp4_block(codes.data() + 16 * b, scales[static_cast<size_t>(b)], out.data() + 32 * b);
  }
  return out;
}

TEST(GptOssCheckpoint, Mxfp4DecodingIsBitExact) {
  const SafetensorsSet set = SafetensorsSet::open(kCheckpoint);
  const std::vector<float> decoded = decode_experts(set, "model.layers.0.mlp.experts.down_proj");
  // The reference stores the decoded weights in the unquantised [E, in, out] layout: the
  // transpose of the blocks' [E, out, in].
  const SafetensorsFile reference = SafetensorsFile::open(kReference);
  const std::vector<float> want =
      reference.read_f32("mxfp4.decoded.model.layers.0.mlp.experts.down_proj");
  ASSERT_EQ(want.size(), decoded.size());
  int mismatches = 0;
  for (int64_t e = 0; e < kExperts; ++e) {
    for (int64_t out = 0; out < kHidden; ++out) {
      for (int64_t in = 0; in < kIntermediate; ++in) {
        const float got = decoded[static_cast<size_t>((e * kHidden + out) * kIntermediate + in)];
        const float expected = want[static_cast<size_t>((e * kIntermediate + in) * kHidden + out)];
        mismatches += std::memcmp(&got, &expected, sizeof(float)) != 0;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
}  // namespace switchyard::model
