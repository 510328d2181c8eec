// cpu-bf16's batch product over weights packed in column panels (bf16_panel_linear.h) against a
// double-precision reference over the same bf16 values: within fp32 summation's error and one
// rounding to bf16, at row counts on both sides of a vector (16) and of a pass (32), outputs past
// the last whole panel included; a row's result the same alone and among others; the packing's
// padding zero; an odd C refused.
#include "backend/cpu/bf16_panel_linear.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "bf16_product_check.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

class Bf16PanelLinear : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!bf16_panel_linear_available()) {
      GTEST_SKIP() << "this build's CPU kernels have no AVX-512 BF16";
    }
  }
};

std::vector<uint16_t> packed(const std::vector<uint16_t>& weight, int C, int OC) {
  std::vector<uint16_t> panels(bf16_panel_values(C, OC), 0xFFFF);
  pack_bf16_panels(panels.data(), weight.data(), C, OC);
  return panels;
}

TEST_F(Bf16PanelLinear, MatchesTheExactProductWithinOneBf16Rounding) {
  for (const auto [N, C, OC] : {std::array{5, 768, 50}, std::array{16, 96, 12}, std::array{17, 64, 37},
                                std::array{32, 2, 13}, std::array{33, 130, 25}, std::array{64, 96, 200}}) {
    const std::vector<uint16_t> inp = random_bf16(size_t(N) * C, 1, 1.0f);
    const std::vector<uint16_t> weight = random_bf16(size_t(OC) * C, 2, 0.1f);
    const std::vector<uint16_t> panels = packed(weight, C, OC);
    std::vector<float> bias(OC);
    for (int o = 0; o < OC; ++o) bias[o] = 0.01f * static_cast<float>(o - OC / 2);
    for (const bool with_bias : {false, true}) {
      std::vector<uint16_t> out(size_t(N) * OC, 0xFFFF);
      bf16_panel_linear(out.data(), inp.data(), panels.data(), with_bias ? bias.data() : nullptr,
                        N, C, OC);
      expect_bf16_product(out, inp, weight, with_bias ? bias.data() : nullptr, N, C, OC);
    }
  }
}

TEST_F(Bf16PanelLinear, ARowGetsTheSameBitsAloneOrAmongOthers) {
  const int N = 40, C = 200, OC = 29;
  const std::vector<uint16_t> weight = random_bf16(size_t(OC) * C, 4, 0.1f);
  const std::vector<uint16_t> panels = packed(weight, C, OC);
  const std::vector<uint16_t> inp = random_bf16(size_t(N) * C, 3, 1.0f);
  std::vector<uint16_t> together(size_t(N) * OC);
  bf16_panel_linear(together.data(), inp.data(), panels.data(), nullptr, N, C, OC);
  for (const int n : {0, 15, 16, 31, 32, 39}) {
    std::vector<uint16_t> alone(OC);
    bf16_panel_linear(alone.data(), inp.data() + size_t(n) * C, panels.data(), nullptr, 1, C, OC);
    EXPECT_EQ(alone, std::vector<uint16_t>(together.begin() + size_t(n) * OC,
                                           together.begin() + size_t(n + 1) * OC))
        << "row " << n;
  }
}

TEST_F(Bf16PanelLinear, PacksPairsOfInputsSideBySideAndPadsWithZeros) {
  const int C = 4, OC = 13;  // two panels, the second with one output
  std::vector<uint16_t> weight(size_t(OC) * C);
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<uint16_t>(i + 1);
  const std::vector<uint16_t> panels = packed(weight, C, OC);
  ASSERT_EQ(panels.size(), size_t(2) * C * kPanelColumns);
  // Panel 0, pair 1 (c = 2, 3), output 5: weight[5][2], weight[5][3].
  EXPECT_EQ(panels[(1 * kPanelColumns + 5) * 2], weight[5 * C + 2]);
  EXPECT_EQ(panels[(1 * kPanelColumns + 5) * 2 + 1], weight[5 * C + 3]);
  // Panel 1 holds output 12, then zeros.
  const uint16_t* second = panels.data() + size_t(C) * kPanelColumns;
  EXPECT_EQ(second[0], weight[12 * C]);
  for (int j = 1; j < kPanelColumns; ++j) EXPECT_EQ(second[2 * j], 0) << j;
}

TEST_F(Bf16PanelLinear, RefusesAnOddNumberOfInputs) {
  std::vector<uint16_t> weight(3 * 12), panels(bf16_panel_values(4, 12)), out(12), inp(3);
  EXPECT_THROW(pack_bf16_panels(panels.data(), weight.data(), 3, 12), Error);
  EXPECT_THROW(bf16_panel_linear(out.data(), inp.data(), panels.data(), nullptr, 1, 3, 12), Error);
}

}  // namespace
}  // namespace switchyard::backend::cpu
