// MXFP4 quantisation against blocks worked out by hand from the OCP Microscaling rules (exact
// values, ties to even, saturation, zero blocks, values at the bottom of the float range), and a
// property over random blocks: every decoded element is a nearest value the block's scale can
// represent, a tie going to the even code, under the scale the rules give.
#include "core/mxfp4_quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace switchyard {
namespace {

struct Block {
  uint8_t codes[16] = {};
  uint8_t scale = 0xFF;
};

// A block of 32 values: `head` first, zeros after.
Block quantize(std::vector<float> head) {
  head.resize(32, 0.0f);
  Block b;
  quantize_mxfp4_block(head.data(), b.codes, &b.scale);
  return b;
}

std::vector<uint8_t> codes_of(const Block& b) { return std::vector<uint8_t>(b.codes, b.codes + 16); }

// Code bytes from the 4-bit codes of the leading values (low nibble first), zeros after.
std::vector<uint8_t> packed(const std::vector<uint8_t>& nibbles) {
  std::vector<uint8_t> bytes(16, 0);
  for (size_t i = 0; i < nibbles.size(); ++i) bytes[i / 2] |= static_cast<uint8_t>(nibbles[i] << (4 * (i % 2)));
  return bytes;
}

TEST(Mxfp4Quantize, GridValuesAreExactAndTiesGoToTheEvenCode) {
  // Largest magnitude 5.5: floor(log2 5.5) = 2, minus E2M1's largest exponent 2 gives 2^0, byte 127.
  const Block b = quantize({0.5f, -1.0f, 1.5f, 2.0f, -3.0f, 4.0f, 0.0f, -0.5f,
                            // halfway between neighbours: 0|0.5, 0.5|1, 1|1.5, 1.5|2, 2|3, 3|4, 4|6
                            0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, -2.5f,
                            -0.75f, 0.26f, 2.9f, -5.5f});
  EXPECT_EQ(b.scale, 127);
  EXPECT_EQ(codes_of(b), packed({0x1, 0xA, 0x3, 0x4, 0xD, 0x6, 0x0, 0x9,
                                 0x0, 0x2, 0x2, 0x4, 0x4, 0x6, 0x6, 0xC,
                                 0xA, 0x1, 0x5, 0xF}));
}

TEST(Mxfp4Quantize, ScaleFollowsTheLargestMagnitudeAndSaturatesAtSix) {
  // Largest 120: floor(log2 120) = 6, scale 2^4 = 16 (byte 131). 120 / 16 = 7.5 and 100 / 16 = 6.25
  // saturate to 6; -40 / 16 = -2.5 is a tie (2 is even); 1 / 16 rounds to 0; 4 / 16 = 0.25 is a
  // tie that goes to 0, and -4 to -0; 12 / 16 = 0.75 is a tie that goes to 1.
  Block b = quantize({100.0f, -40.0f, 1.0f, 120.0f, 24.0f, -8.0f, 4.0f, -4.0f, 12.0f});
  EXPECT_EQ(b.scale, 131);
  EXPECT_EQ(codes_of(b), packed({0x7, 0xC, 0x0, 0x7, 0x3, 0x9, 0x0, 0x8, 0x2}));

  // Just below a power of two keeps the lower scale and saturates; the power itself takes the next.
  b = quantize({7.9f, 1.0f});
  EXPECT_EQ(b.scale, 127);
  EXPECT_EQ(codes_of(b), packed({0x7, 0x2}));
  b = quantize({8.0f, 1.0f});
  EXPECT_EQ(b.scale, 128);
  EXPECT_EQ(codes_of(b), packed({0x6, 0x1}));

  // The largest float: floor(log2) = 127, scale 2^125 (byte 252); FLT_MAX / 2^125 is just under 8.
  b = quantize({FLT_MAX, -FLT_MAX / 2});
  EXPECT_EQ(b.scale, 252);
  EXPECT_EQ(codes_of(b), packed({0x7, 0xE}));
}

TEST(Mxfp4Quantize, ZeroBlocksDecodeToZeros) {
  for (float zero : {0.0f, -0.0f}) {
    const Block b = quantize(std::vector<float>(32, zero));
    EXPECT_EQ(b.scale, 0);  // 2^-127, the smallest scale
    float out[32];
    decode_mxfp4_block(b.codes, b.scale, out);
    for (float v : out) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Mxfp4Quantize, TinyValuesClampTheScaleToE8M0sRange) {
  // Largest 3 * 2^-126: floor(log2) = -125, scale 2^-127 exactly (byte 0, not clamped).
  Block b = quantize({3 * std::ldexp(1.0f, -126), std::ldexp(1.0f, -128), std::ldexp(1.0f, -129),
                      -std::ldexp(1.0f, -127)});
  EXPECT_EQ(b.scale, 0);
  EXPECT_EQ(codes_of(b), packed({0x7, 0x1, 0x0, 0xA}));  // 6, 0.5, 0.25 -> 0 (tie), -1

  // Subnormal largest 2^-130 would want 2^-132; clamped to 2^-127, every value rounds to zero.
  b = quantize({std::ldexp(1.0f, -130), -std::ldexp(1.0f, -131), std::ldexp(1.0f, -149)});
  EXPECT_EQ(b.scale, 0);
  EXPECT_EQ(codes_of(b), packed({0x0, 0x8, 0x0}));

  // A block whose largest is 2^-124 next to the smallest subnormal: scale 2^-126, 2^-149 -> 0.
  b = quantize({std::ldexp(1.0f, -124), std::ldexp(1.0f, -149)});
  EXPECT_EQ(b.scale, 1);
  EXPECT_EQ(codes_of(b), packed({0x6, 0x0}));
}

TEST(Mxfp4Quantize, TensorsAreQuantisedRowByRowInBlocksOf32) {
  // Two rows of 64: four blocks, each with its own scale.
  std::vector<float> values(128);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 7) * std::ldexp(1.0f, static_cast<int>(i / 32));
  const Mxfp4Tensor t = quantize_mxfp4("w", values, 64);
  ASSERT_EQ(t.blocks.size(), 4u * 16);
  ASSERT_EQ(t.scales.size(), 4u);
  for (size_t b = 0; b < 4; ++b) {
    Block want;
    quantize_mxfp4_block(values.data() + 32 * b, want.codes, &want.scale);
    EXPECT_EQ(t.scales[b], want.scale) << b;
    EXPECT_EQ(std::vector<uint8_t>(t.blocks.begin() + 16 * b, t.blocks.begin() + 16 * (b + 1)), codes_of(want));
    EXPECT_EQ(t.scales[b], 127 + b) << b;  // largest 6 * 2^b: floor(log2) = b + 2, scale 2^b
  }
}

TEST(Mxfp4Quantize, NonFiniteValuesAndPartialBlocksAreErrorsNamingTheTensor) {
  std::vector<float> values(2 * 64, 1.0f);
  values[64 + 37] = std::nanf("");
  try {
    quantize_mxfp4("model.layers.1.mlp.experts.down_proj", values, 64);
    FAIL() << "NaN was quantised";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'model.layers.1.mlp.experts.down_proj' holds nan at row 1, column 37: "
                           "MXFP4 has no code for it");
  }
  values[64 + 37] = -INFINITY;
  EXPECT_THROW(quantize_mxfp4("w", values, 64), Error);
  std::vector<float> block(32, 1.0f);
  block[3] = INFINITY;
  uint8_t codes[16], scale;
  EXPECT_THROW(quantize_mxfp4_block(block.data(), codes, &scale), Error);
  try {
    quantize_mxfp4("model.layers.0.mlp.experts.gate_up_proj", std::vector<float>(96, 1.0f), 48);
    FAIL() << "rows of 48 were quantised";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.layers.0.mlp.experts.gate_up_proj' has rows of 48"),
              std::string::npos) << e.what();
  }
}

// The code of element i of a block.
int code_at(const uint8_t* codes, int i) { return (codes[i / 2] >> (4 * (i % 2))) & 0xF; }

TEST(Mxfp4Quantize, EveryElementDecodesToANearestRepresentableValue) {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<float> uniform(-8.0f, 8.0f);
  std::uniform_int_distribution<int> binade(-150, 125), pick(0, 4), grid_index(0, 15);
  for (int trial = 0; trial < 4000; ++trial) {
    const int e = binade(rng);
    float values[32];
    for (float& v : values) {
      switch (pick(rng)) {
        case 0: v = 0.0f; break;
        // on the grid, and halfway between grid values (ties), at the block's own binade
        case 1: v = std::ldexp(kFp4E2M1Values[grid_index(rng)], e); break;
        case 2: {
          const int k = grid_index(rng) % 7;
          v = std::ldexp((kFp4E2M1Values[k] + kFp4E2M1Values[k + 1]) / 2, e);
          if (grid_index(rng) % 2) v = -v;
          break;
        }
        default: v = std::ldexp(uniform(rng), e); break;
      }
    }
    uint8_t codes[16], scale;
    quantize_mxfp4_block(values, codes, &scale);
    double largest = 0;
    for (float v : values) largest = std::max(largest, std::fabs(static_cast<double>(v)));
    const int want_exponent =
        largest > 0 ? std::clamp(static_cast<int>(std::floor(std::log2(largest))) - 2, -127, 127) : -127;
    ASSERT_EQ(scale, want_exponent + 127) << "trial " << trial;
    float decoded[32];
    decode_mxfp4_block(codes, scale, decoded);
    for (int i = 0; i < 32; ++i) {
      const double x = values[i], got = decoded[i];
      const double got_distance = std::fabs(got - x);
      for (int c = 0; c < 16; ++c) {
        const double candidate = std::ldexp(static_cast<double>(kFp4E2M1Values[c]), want_exponent);
        const double distance = std::fabs(candidate - x);
        ASSERT_LE(got_distance, distance) << "trial " << trial << " element " << i << ": " << x << " became "
                                          << got << ", but " << candidate << " is nearer";
        if (distance == got_distance && candidate != got) {
          ASSERT_EQ(code_at(codes, i) & 1, 0) << "trial " << trial << " element " << i << ": tie at " << x
                                              << " went to an odd code";
        }
      }
    }
  }
}

}  // namespace
}  // namespace switchyard
