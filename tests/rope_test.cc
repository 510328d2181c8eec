// RoPE frequencies and tables: plain RoPE by its definition, YaRN against the PyTorch reference of
// gpt-oss (tools/make_gpt_oss_reference.py), and clear errors for impossible settings.
#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "expect_error.h"
#include "model/safetensors.h"

namespace switchyard::model {
namespace {

// gpt-oss's published settings with the reference model's head_dim of 16.
RopeConfig gpt_oss_rope(int head_dim) {
  return RopeConfig{.head_dim = head_dim, .theta = 150000.0, .yarn_factor = 32.0,
                    .original_context = 4096, .beta_fast = 32.0, .beta_slow = 1.0,
                    .truncate = false};
}

TEST(Rope, PlainRopeIsThetaToTheMinusTwoIOverD) {
  const RopeFrequencies f = rope_frequencies(RopeConfig{.head_dim = 8, .theta = 10000.0});
  ASSERT_EQ(f.inv_freq.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(f.inv_freq[i], 1.0 / std::pow(10000.0, i / 4.0));
  EXPECT_EQ(f.attention_factor, 1.0);
}

TEST(Rope, YarnMatchesTheReference) {
  const SafetensorsFile reference =
      SafetensorsFile::open(std::string(SWITCHYARD_TEST_DATA) + "/gpt_oss_reference.safetensors");
  const std::vector<float> want = reference.read_f32("rope.inv_freq");
  const RopeFrequencies f = rope_frequencies(gpt_oss_rope(16));
  ASSERT_EQ(f.inv_freq.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(f.inv_freq[i], want[i], 2e-7 * want[i]) << "pair " << i;
  }
  EXPECT_NEAR(f.attention_factor, reference.read_f32("rope.attention_factor")[0], 1e-7);
  // The fastest pair keeps its frequency, the slowest is divided by the factor.
  EXPECT_DOUBLE_EQ(f.inv_freq[0], 1.0);
  EXPECT_DOUBLE_EQ(f.inv_freq[7], std::pow(150000.0, -14.0 / 16) / 32.0);
}

TEST(Rope, TruncatingRoundsTheRampToWholePairs) {
  RopeConfig c = gpt_oss_rope(64);
  const RopeFrequencies exact = rope_frequencies(c);
  c.truncate = true;
  const RopeFrequencies rounded = rope_frequencies(c);
  int differ = 0;
  for (size_t i = 0; i < exact.inv_freq.size(); ++i) differ += exact.inv_freq[i] != rounded.inv_freq[i];
  EXPECT_GT(differ, 0);
  EXPECT_EQ(exact.inv_freq.front(), rounded.inv_freq.front());
  EXPECT_EQ(exact.inv_freq.back(), rounded.inv_freq.back());
}

TEST(Rope, TablesHoldScaledCosAndSinOfEveryPosition) {
  const RopeConfig c = gpt_oss_rope(16);
  const RopeFrequencies f = rope_frequencies(c);
  const RopeTables t = rope_tables(c, 300);
  ASSERT_EQ(t.cos.size(), 300u * 8);
  for (const int p : {0, 1, 127, 299}) {
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(t.cos[p * 8 + i], static_cast<float>(std::cos(p * f.inv_freq[i]) * f.attention_factor));
      EXPECT_EQ(t.sin[p * 8 + i], static_cast<float>(std::sin(p * f.inv_freq[i]) * f.attention_factor));
    }
  }
}

TEST(Rope, ImpossibleSettingsAreErrors) {
  expect_error([] { rope_frequencies(RopeConfig{.head_dim = 7}); }, {"head_dim", "even", "7"});
  expect_error([] { rope_frequencies(RopeConfig{.head_dim = 8, .theta = 1.0}); }, {"theta"});
  expect_error([] { rope_frequencies(RopeConfig{.head_dim = 8, .yarn_factor = 0.5}); }, {"factor"});
  expect_error([] { rope_frequencies(RopeConfig{.head_dim = 8, .yarn_factor = 4.0}); },
               {"original context"});
  RopeConfig c = gpt_oss_rope(16);
  c.beta_slow = 64.0;
  expect_error([&] { rope_frequencies(c); }, {"beta_fast > beta_slow"});
  expect_error([] { rope_tables(RopeConfig{.head_dim = 8}, -1); }, {"positions"});
}

}  // namespace
}  // namespace switchyard::model
