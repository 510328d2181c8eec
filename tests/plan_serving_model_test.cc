// The serving model's arithmetic against hand counts: a dense model's decode step at batch 1 is its
// bytes over the bandwidth, the expected distinct experts against brute-force enumeration, the
// cache of sliding layers, tensor-parallel collectives against the ring's closed form, and the
// queueing formulas against their textbook closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "expect_error.h"
#include "model/model_config.h"
#include "plan/serving_mix.h"
#include "plan/serving_model.h"
#include "plan/serving_queue.h"

namespace switchyard::plan {
namespace {

ModelShape preset_shape(const std::string& name) {
  return shape_from_config(model::preset(name), name);
}

// A chip whose FLOPs are so plentiful that a decode step is all memory traffic.
ServingChip memory_bound_chip() {
  ServingChip c;
  c.memory_bytes_per_s = 1000e9;
  c.other_flops_per_s = c.expert_flops_per_s = 1e30;
  c.link_bytes_per_s = 100e9;
  c.link_latency_s = 5e-6;
  return c;
}

TEST(PlanServingModel, DenseDecodeAtBatchOneIsBytesOverBandwidth) {
  const ModelShape gpt2 = preset_shape("gpt2-124m");
  const ServedModel model(gpt2, serving_precision("bf16", "bf16", gpt2));
  // GPT-2 small by hand: 124,439,808 parameters; a decoded token reads all but 1,023 of the 1,024
  // rows of the position table (768 wide), at 2 bytes each.
  const double weights = (124439808.0 - 1023.0 * 768.0) * 2.0;
  // Keys and values of 12 layers x 768 channels for 100 positions, 2 bytes each.
  const double cache = 2.0 * 12 * 768 * 100 * 2.0;
  EXPECT_DOUBLE_EQ(model.weight_bytes_read(1), weights);
  EXPECT_DOUBLE_EQ(model.kv_bytes(100), cache);
  ServingKnobs ideal{1.0, 0.0};
  const StepTime step = decode_step(model, memory_bound_chip(), ideal, 1, 100, 1);
  EXPECT_NEAR(step.total(), (weights + cache) / 1000e9, 1e-15);
  // A dense model reads the same weights at any batch; only the cache grows.
  EXPECT_DOUBLE_EQ(model.weight_bytes_read(64), weights);
  EXPECT_NEAR(decode_step(model, memory_bound_chip(), ideal, 64, 100, 1).memory_s,
              (weights + 64 * cache) / 1000e9, 1e-15);
  // The overhead adds, the efficiency divides the roofline.
  ServingKnobs real{0.5, 2e-3};
  EXPECT_NEAR(decode_step(model, memory_bound_chip(), real, 1, 100, 1).total(),
              2e-3 + 2.0 * (weights + cache) / 1000e9, 1e-15);
}

// Average number of distinct experts b tokens touch, each choosing k of E uniformly, by listing
// every combination.
double brute_force_distinct(int experts, int per_token, int tokens) {
  std::vector<unsigned> subsets;
  for (unsigned m = 0; m < (1u << experts); ++m) {
    if (__builtin_popcount(m) == per_token) subsets.push_back(m);
  }
  double total = 0, count = 0;
  std::vector<size_t> pick(tokens, 0);
  while (true) {
    unsigned touched = 0;
    for (size_t i : pick) touched |= subsets[i];
    total += __builtin_popcount(touched);
    count += 1;
    int t = 0;
    while (t < tokens && ++pick[t] == subsets.size()) pick[t++] = 0;
    if (t == tokens) break;
  }
  return total / count;
}

TEST(PlanServingModel, ExpectedDistinctExpertsMatchEnumerationAndTendToAll) {
  EXPECT_DOUBLE_EQ(expected_distinct_experts(32, 4, 1), 4.0);
  EXPECT_DOUBLE_EQ(expected_distinct_experts(128, 4, 1), 4.0);
  EXPECT_DOUBLE_EQ(expected_distinct_experts(4, 2, 2), 3.0);  // 4 (1 - (1/2)^2)
  for (int tokens : {1, 2, 3}) {
    EXPECT_NEAR(expected_distinct_experts(5, 2, tokens), brute_force_distinct(5, 2, tokens), 1e-12)
        << tokens;
    EXPECT_NEAR(expected_distinct_experts(6, 3, tokens), brute_force_distinct(6, 3, tokens), 1e-12)
        << tokens;
  }
  double previous = 0;
  for (double b : {1.0, 2.0, 8.0, 64.0, 512.0}) {
    const double d = expected_distinct_experts(128, 4, b);
    EXPECT_GT(d, previous);
    EXPECT_LE(d, 128.0);
    previous = d;
  }
  EXPECT_NEAR(expected_distinct_experts(128, 4, 2000), 128.0, 1e-9);
  expect_error([] { expected_distinct_experts(4, 5, 1); }, {"per_token"});
}

TEST(PlanServingModel, MixtureReadsItsActiveExpertsAtBatchOneAndAllOfThemAtLargeBatches) {
  const ModelShape oss = preset_shape("gpt-oss-120b");
  const ServedModel model(oss, serving_precision("mxfp4", "bf16", oss));
  EXPECT_DOUBLE_EQ(model.weight_bytes_read(1), oss.weight_bytes_read_per_token(4.25, 16));
  // With every expert touched, a step reads every weight but the 201,087 unread rows of the input
  // embedding table (2,880 wide, bf16).
  const double all = model.resident_weight_bytes() - (201088.0 - 1) * 2880.0 * 2.0;
  EXPECT_NEAR(model.weight_bytes_read(1e5), all, all * 1e-9);
  // The experts' matrices by hand: 36 layers x 128 experts x 3 matrices of 2880 x 2880, at 4.25
  // bits; bf16 holds the same matrices in 16 bits.
  const double experts_mxfp4 = 36.0 * 128 * 3 * 2880 * 2880 * 4.25 / 8;
  const ServedModel bf16(oss, serving_precision("bf16", "bf16", oss));
  EXPECT_NEAR(bf16.resident_weight_bytes() - model.resident_weight_bytes(),
              experts_mxfp4 * (16 / 4.25 - 1), 1.0);
}

TEST(PlanServingModel, SlidingLayersCacheOnlyTheirWindow) {
  const ModelShape oss = preset_shape("gpt-oss-20b");  // 24 layers, 12 of them sliding over 128
  const ServedModel model(oss, serving_precision("mxfp4", "fp8", oss));
  // Keys and values: 8 heads x 64 per layer; 12 full layers hold 4096 positions, 12 sliding ones
  // 128; one byte each in fp8.
  EXPECT_DOUBLE_EQ(model.kv_bytes(4096), 2.0 * 8 * 64 * (12.0 * 4096 + 12.0 * 128));
  EXPECT_DOUBLE_EQ(model.kv_bytes(100), 2.0 * 8 * 64 * 24.0 * 100);
}

TEST(PlanServingModel, TensorParallelStepsAddTheRingAllReduces) {
  const ModelShape gpt2 = preset_shape("gpt2-124m");
  const ServedModel model(gpt2, serving_precision("bf16", "bf16", gpt2));
  const ServingChip chip = memory_bound_chip();
  ServingKnobs ideal{1.0, 0.0};
  const StepTime one = decode_step(model, chip, ideal, 8, 256, 1);
  const StepTime four = decode_step(model, chip, ideal, 8, 256, 4);
  EXPECT_NEAR(four.memory_s, one.memory_s / 4, 1e-15);
  // Two all-reduces per layer of 8 tokens x 768 channels x 2 bytes over 4 chips:
  // 2 (n - 1) / n x S / B + 2 (n - 1) x latency each.
  const double bytes = 8.0 * 768 * 2;
  const double per = 2.0 * 3 / 4 * bytes / 100e9 + 2.0 * 3 * 5e-6;
  EXPECT_NEAR(four.comm_s, 12 * 2 * per, 1e-15);
  EXPECT_EQ(one.comm_s, 0.0);
}

TEST(PlanServingModel, PrefillTimeComesFromThePromptsFlops) {
  const ModelShape gpt2 = preset_shape("gpt2-124m");
  const ServedModel model(gpt2, serving_precision("bf16", "bf16", gpt2));
  ServingChip chip;
  chip.memory_bytes_per_s = 1e30;  // all compute
  chip.other_flops_per_s = chip.expert_flops_per_s = 100e12;
  ServingKnobs knobs{0.5, 1e-3};
  const StepTime prefill = prefill_step(model, chip, knobs, 512, 1);
  EXPECT_NEAR(prefill.compute_s, gpt2.prompt_flops(512) / 100e12, 1e-15);
  EXPECT_NEAR(prefill.total(), 1e-3 + gpt2.prompt_flops(512) / 100e12 / 0.5, 1e-15);
}

TEST(PlanServingModel, PrecisionsAndChipRates) {
  const ModelShape gpt2 = preset_shape("gpt2-124m");
  expect_error([&] { serving_precision("mxfp4", "bf16", gpt2); }, {"mxfp4", "no experts"});
  expect_error([&] { serving_precision("fp4", "bf16", gpt2); }, {"--precision", "fp4"});
  expect_error([&] { serving_precision("bf16", "int8", gpt2); }, {"--kv-cache", "int8"});
  ChipSpec chip;
  chip.name = "x";
  chip.bf16_tflops.value = 100;
  chip.memory_gbs.value = 2000;
  chip.chip_to_chip_gbs.value = 400;
  const ModelShape oss = preset_shape("gpt-oss-20b");
  const ServingPrecision mx = serving_precision("mxfp4", "bf16", oss);
  ServingChip rates = serving_chip(chip, mx, 5e-6);
  EXPECT_DOUBLE_EQ(rates.expert_flops_per_s, 100e12);  // decoded to bf16
  EXPECT_DOUBLE_EQ(rates.link_bytes_per_s, 200e9);     // both directions counted: a ring gets half
  EXPECT_NE(weight_format_sentence(chip, mx, oss).find("decoded to bf16"), std::string::npos);
  chip.mxfp4_tflops = Figure{400, "s", "d", ""};
  rates = serving_chip(chip, mx, 5e-6);
  EXPECT_DOUBLE_EQ(rates.expert_flops_per_s, 400e12);
  EXPECT_DOUBLE_EQ(rates.other_flops_per_s, 100e12);
  EXPECT_NE(weight_format_sentence(chip, mx, oss).find("natively"), std::string::npos);
}

TEST(PlanServingMix, MeansWeighRequestsAndSlots) {
  RequestMix mix = RequestMix::parse("1000:100:3,3000:300:1");
  ASSERT_EQ(mix.classes().size(), 2u);
  EXPECT_DOUBLE_EQ(mix.classes()[0].share, 0.75);
  EXPECT_DOUBLE_EQ(mix.mean_output(), 0.75 * 100 + 0.25 * 300);
  // Slots held in proportion to share x output: 75 : 75, so contexts 1050 and 3150 weigh equally.
  EXPECT_DOUBLE_EQ(mix.decode_context(), (1050.0 + 3150.0) / 2);
  EXPECT_EQ(mix.longest(), 3300);
  EXPECT_EQ(mix.describe(), "75% 1000/100, 25% 3000/300");
  expect_error([] { RequestMix::parse("1024:256"); }, {"PROMPT:OUTPUT:SHARE", "1024:256"});
  expect_error([] { RequestMix::parse("a:256:1"); }, {"prompt tokens", "'a'"});
  expect_error([] { RequestMix::parse("1024:0:1"); }, {"output tokens", "'0'"});
  expect_error([] { RequestMix::parse("1024:5:0"); }, {"share", "'0'"});
  expect_error([] { RequestMix::parse("1024:5:nan"); }, {"share", "'nan'"});
}

TEST(PlanServingQueue, ClosedFormsForOneAndTwoServers) {
  // M/M/1: an arrival waits with probability rho.
  EXPECT_NEAR(erlang_c(1, 0.7), 0.7, 1e-12);
  // M/D/1 by Pollaczek-Khinchine: rho S / (2 (1 - rho)); Allen-Cunneen at c = 1 is the same.
  const double s = 0.2, lambda = 3.5;  // rho = 0.7
  EXPECT_NEAR(md1_wait_seconds(lambda, s), 0.7 * 0.2 / (2 * 0.3), 1e-12);
  EXPECT_NEAR(mdc_wait_seconds(1, lambda, s), md1_wait_seconds(lambda, s), 1e-12);
  // M/M/2 at a = 1.2 erlangs: P0 = 1 / (1 + a + a^2 / (2 (1 - a/2))), C = a^2 / (2 (1 - a/2)) P0.
  const double a = 1.2;
  const double tail = a * a / (2 * (1 - a / 2));
  EXPECT_NEAR(erlang_c(2, a), tail / (1 + a + tail), 1e-12);
  // Thousands of servers stay finite and in (0, 1).
  const double c = erlang_c(1024, 1000);
  EXPECT_GT(c, 0.0);
  EXPECT_LT(c, 1.0);
  EXPECT_TRUE(std::isinf(mdc_wait_seconds(4, 10, 1)));  // 10 erlangs on 4 servers
  EXPECT_TRUE(std::isinf(md1_wait_seconds(2, 0.5)));
}

}  // namespace
}  // namespace switchyard::plan
