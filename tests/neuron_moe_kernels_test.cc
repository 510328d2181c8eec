// The trn*-sim backend's mixture-of-experts routing tile programs (top-k routing, grouping by
// expert, combining, the router's load statistics, and the backward passes) against the CPU kernel
// templates (moe_kernels.h) run in double on the same rounded inputs. Expert ids, grouped orders
// and counts must agree exactly (logits with many ties: integers, and bf16's rounding); weights
// and sums to fp32 rounding; combined rows to fp32 or bf16 rounding by the compute dtype. Odd
// sizes, several row tiles, repeated ids, and backward passes accumulating into what was there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/moe_kernels.h"
#include "backend/neuron/expert_combine_kernel.h"
#include "backend/neuron/group_by_expert_kernel.h"
#include "backend/neuron/router_load_kernel.h"
#include "backend/neuron/topk_routing_kernel.h"
#include "core/rng.h"
#include "expect_error.h"
#include "neuron_kernel_inputs.h"
#include "neuron/config.h"
#include "relative_error.h"

namespace switchyard::backend::neuron {
namespace {

namespace cpu = ::switchyard::backend::cpu;
using ::switchyard::neuron::trn2_config;
using Host = std::vector<double>;

// Routing weights, sums and gradients computed in fp32 tiles whatever the activations' dtype.
constexpr double kFp32Results = 1e-5;

std::vector<float> normal(size_t n, uint64_t seed, float scale) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = scale * rng.normal();
  return v;
}

// Logits on a grid of halves: many ties within a row.
std::vector<float> tied_logits(size_t n, uint64_t seed) {
  std::vector<float> v = normal(n, seed, 2.0f);
  for (float& x : v) x = std::round(2.0f * x) / 2.0f;
  return v;
}

std::vector<float> random_ids(size_t n, int64_t limit, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.next_u64() % static_cast<uint64_t>(limit));
  return v;
}

// A random permutation of [0, n) (grouped positions).
std::vector<float> permutation(int64_t n, uint64_t seed) {
  std::vector<int> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), std::mt19937_64(seed));
  return std::vector<float>(p.begin(), p.end());
}

std::vector<int32_t> read_ids(const NeuronCore& core, const View& v) {
  const std::vector<float> f = core.read(v);
  return std::vector<int32_t>(f.begin(), f.end());
}

// ---- top-k routing ----

void check_topk(DType act, int64_t N, int64_t E, int64_t k, const std::vector<float>& logits_in) {
  SCOPED_TRACE("N=" + std::to_string(N) + " E=" + std::to_string(E) + " k=" + std::to_string(k));
  NeuronCore core(trn2_config());
  const View logits = upload(core, {N, E}, act, logits_in, "logits");
  const View ids = core.hbm_alloc({N, k}, DType::kI32, "ids");
  const View weights = core.hbm_alloc({N, k}, DType::kF32, "weights");
  topk_routing_forward(core, ids, weights, logits);
  const Host x = read(core, logits);
  std::vector<int32_t> want_ids(static_cast<size_t>(N * k));
  Host want_weights(want_ids.size());
  cpu::topk_routing<double>(want_ids.data(), want_weights.data(), x.data(), static_cast<int>(N),
                            static_cast<int>(E), static_cast<int>(k));
  EXPECT_EQ(read_ids(core, ids), want_ids);
  EXPECT_LT(relative_error(read(core, weights), want_weights), kFp32Results);
}

TEST(NeuronTopKRouting, ChoosesTheLargestLogitsTiesToTheLowerExpert) {
  check_topk(DType::kF32, 37, 32, 4, tied_logits(37 * 32, 1));     // gpt-oss-20b's router
  check_topk(DType::kBF16, 130, 128, 4, normal(130 * 128, 2, 1.0f));  // 120b's, two row tiles
  check_topk(DType::kF32, 3, 5, 5, tied_logits(15, 3));            // k = E: a full sort
  check_topk(DType::kBF16, 9, 7, 1, tied_logits(63, 4));
  // Every logit of a row equal: the first k experts in order.
  check_topk(DType::kF32, 2, 6, 3, std::vector<float>(12, 0.25f));
}

TEST(NeuronTopKRouting, NaNAndInfiniteLogitsStillGiveDistinctExperts) {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {nan, 1.0f, nan, -inf, 2.0f,   // NaNs rank lowest
                                     -inf, -inf, -inf, -inf, -inf,  // all -inf: the first three
                                     3.0f, inf, 0.5f, 0.5f, -1.0f};
  NeuronCore core(trn2_config());
  const View x = upload(core, {3, 5}, DType::kF32, logits, "logits");
  const View ids = core.hbm_alloc({3, 3}, DType::kI32, "ids");
  const View weights = core.hbm_alloc({3, 3}, DType::kF32, "weights");
  topk_routing_forward(core, ids, weights, x);
  EXPECT_EQ(read_ids(core, ids), (std::vector<int32_t>{4, 1, 0, 0, 1, 2, 1, 0, 2}));
}

TEST(NeuronTopKRouting, BackwardAccumulatesRepeatedExperts) {
  for (const Mode& mode : {kFp32, kBf16}) {
    SCOPED_TRACE(mode.name);
    const int64_t N = 133, E = 32, k = 4;
    NeuronCore core(trn2_config());
    // Ids drawn independently, so a row may choose an expert twice: its gradients add up.
    const View ids = upload(core, {N, k}, DType::kI32, random_ids(N * k, E, 5), "ids");
    const View w = upload(core, {N, k}, DType::kF32, normal(N * k, 6, 0.5f), "weights");
    const View dw = upload(core, {N, k}, DType::kF32, normal(N * k, 7, 1.0f), "dweights");
    const View dlogits = upload(core, {N, E}, mode.act, normal(N * E, 8, 1.0f), "dlogits");
    Host want = read(core, dlogits);
    topk_routing_backward(core, dlogits, dw, w, ids);
    const std::vector<int32_t> id_values = read_ids(core, ids);
    cpu::topk_routing_backward<double>(want.data(), read(core, dw).data(), read(core, w).data(),
                                       id_values.data(), static_cast<int>(N),
                                       static_cast<int>(E), static_cast<int>(k));
    EXPECT_LT(relative_error(read(core, dlogits), want), mode.tol);
  }
}

TEST(NeuronTopKRouting, RejectsWhatTheKernelCannotTake) {
  NeuronCore core(trn2_config());
  const View logits = core.hbm_alloc({4, 3}, DType::kF32, "logits");
  const View ids = core.hbm_alloc({4, 4}, DType::kI32, "ids");
  const View weights = core.hbm_alloc({4, 4}, DType::kF32, "weights");
  expect_error([&] { topk_routing_forward(core, ids, weights, logits); },
               {"topk_routing_forward", "4 choices per row out of 3 experts"});
  const View wide = core.hbm_alloc({4, 600}, DType::kF32, "wide");
  expect_error([&] { topk_routing_forward(core, ids, weights, wide); },
               {"topk_routing_forward", "1 to 512 experts"});
  const View float_ids = core.hbm_alloc({4, 2}, DType::kF32, "float_ids");
  const View w2 = core.hbm_alloc({4, 2}, DType::kF32, "w2");
  expect_error([&] { topk_routing_forward(core, float_ids, w2, logits); },
               {"expert_ids", "int32"});
}

// ---- grouping by expert ----

void check_grouping(int64_t N, int64_t k, int64_t E, uint64_t seed) {
  SCOPED_TRACE("N=" + std::to_string(N) + " k=" + std::to_string(k) + " E=" + std::to_string(E));
  const int64_t A = N * k;
  NeuronCore core(trn2_config());
  const View ids = upload(core, {N, k}, DType::kI32, random_ids(A, E, seed), "ids");
  const View order = core.hbm_alloc({A, 1}, DType::kI32, "order");
  const View rows = core.hbm_alloc({A, 1}, DType::kI32, "rows");
  const View position = core.hbm_alloc({A, 1}, DType::kI32, "position");
  const View offsets = core.hbm_alloc({1, E + 1}, DType::kI32, "offsets");
  group_by_expert(core, order, rows, position, offsets, ids, E);
  const std::vector<int32_t> id_values = read_ids(core, ids);
  std::vector<int32_t> want_order(A), want_rows(A), want_position(A), want_offsets(E + 1);
  cpu::group_by_expert(want_order.data(), want_rows.data(), want_position.data(),
                       want_offsets.data(), id_values.data(), static_cast<int>(A),
                       static_cast<int>(k), static_cast<int>(E));
  EXPECT_EQ(read_ids(core, order), want_order);
  EXPECT_EQ(read_ids(core, rows), want_rows);
  EXPECT_EQ(read_ids(core, position), want_position);
  EXPECT_EQ(read_ids(core, offsets), want_offsets);
}

TEST(NeuronGroupByExpert, MatchesTheCountingSortExactly) {
  check_grouping(32, 4, 32, 11);   // a gpt-oss-20b decode step: one tile of 32 rows
  check_grouping(101, 4, 128, 12); // four row tiles, the last partial; 120b's experts
  check_grouping(7, 3, 300, 13);   // three chunks of experts (offsets over 128 each)
  check_grouping(50, 1, 5, 14);    // one choice per row
  check_grouping(3, 8, 2, 15);     // rows choosing the same expert many times
  check_grouping(20, 8, 512, 16);  // the most experts and one-hot cells the kernel takes
}

TEST(NeuronGroupByExpert, RejectsWhatTheKernelCannotTake) {
  NeuronCore core(trn2_config());
  const View ids = core.hbm_alloc({4, 2}, DType::kI32, "ids");
  const View flat = core.hbm_alloc({8, 1}, DType::kI32, "flat");
  const View offsets = core.hbm_alloc({1, 601}, DType::kI32, "offsets");
  expect_error([&] { group_by_expert(core, flat, flat, flat, offsets, ids, 600); },
               {"group_by_expert", "experts must be in [1, 512]"});
  const View short_offsets = core.hbm_alloc({1, 4}, DType::kI32, "short");
  expect_error([&] { group_by_expert(core, flat, flat, flat, short_offsets, ids, 4); },
               {"offsets", "[1, 5]"});
}

// ---- combining ----

struct CombineInputs {
  View expert_out, weights, position;
};

CombineInputs combine_inputs(NeuronCore& core, const Mode& mode, int64_t N, int64_t k, int64_t C) {
  const int64_t A = N * k;
  return {upload(core, {A, C}, mode.act, normal(A * C, 21, 1.0f), "expert_out"),
          upload(core, {N, k}, DType::kF32, normal(A, 22, 0.5f), "weights"),
          upload(core, {N, k}, DType::kI32, permutation(A, 23), "position")};
}

void check_combine(const Mode& mode, int64_t N, int64_t k, int64_t C) {
  SCOPED_TRACE(std::string(mode.name) + " N=" + std::to_string(N) + " k=" + std::to_string(k) +
               " C=" + std::to_string(C));
  NeuronCore core(trn2_config());
  const CombineInputs in = combine_inputs(core, mode, N, k, C);
  const View out = core.hbm_alloc({N, C}, mode.act, "out");
  expert_combine_forward(core, out, in.expert_out, in.weights, in.position, mode.compute);
  Host want(static_cast<size_t>(N * C));
  const std::vector<int32_t> position = read_ids(core, in.position);
  cpu::expert_combine_forward<double>(want.data(), read(core, in.expert_out).data(),
                                      read(core, in.weights).data(), position.data(),
                                      static_cast<int>(N), static_cast<int>(C),
                                      static_cast<int>(k));
  EXPECT_LT(relative_error(read(core, out), want), mode.tol);
}

TEST(NeuronExpertCombine, SumsEachRowsWeightedExpertOutputs) {
  check_combine(kBf16, 32, 4, 2880);  // a gpt-oss-20b decode step: 128 stacked partitions
  check_combine(kFp32, 37, 4, 70);    // two row tiles, the last of 5 rows
  check_combine(kFp32, 5, 3, 4500);   // two column pieces, odd partitions (15)
  check_combine(kFp32, 200, 1, 9);    // k = 1: two tiles of 128 and 72 rows
  check_combine(kFp32, 256, 2, 128);  // gpt-oss-tiny's training step: four row tiles of 64
}

void check_combine_backward(const Mode& mode, int64_t N, int64_t k, int64_t C) {
  SCOPED_TRACE(std::string(mode.name) + " N=" + std::to_string(N) + " k=" + std::to_string(k) +
               " C=" + std::to_string(C));
  const int64_t A = N * k;
  NeuronCore core(trn2_config());
  const CombineInputs in = combine_inputs(core, mode, N, k, C);
  const View dout = upload(core, {N, C}, mode.act, normal(N * C, 24, 1.0f), "dout");
  // Both gradients start non-zero: the kernel must add to them.
  const View dexpert = upload(core, {A, C}, mode.act, normal(A * C, 25, 1.0f), "dexpert_out");
  const View dweights = upload(core, {N, k}, DType::kF32, normal(A, 26, 1.0f), "dweights");
  Host want_dexpert = read(core, dexpert), want_dweights = read(core, dweights);
  expert_combine_backward(core, dexpert, dweights, dout, in.expert_out, in.weights, in.position,
                          mode.compute);
  const std::vector<int32_t> position = read_ids(core, in.position);
  cpu::expert_combine_backward<double>(
      want_dexpert.data(), want_dweights.data(), read(core, dout).data(),
      read(core, in.expert_out).data(), read(core, in.weights).data(), position.data(),
      static_cast<int>(N), static_cast<int>(C), static_cast<int>(k));
  EXPECT_LT(relative_error(read(core, dexpert), want_dexpert), mode.tol);
  EXPECT_LT(relative_error(read(core, dweights), want_dweights), mode.tol);
}

TEST(NeuronExpertCombine, BackwardAccumulatesBothGradients) {
  check_combine_backward(kFp32, 37, 4, 70);
  check_combine_backward(kBf16, 32, 4, 2880);
  check_combine_backward(kFp32, 5, 3, 4500);
  check_combine_backward(kFp32, 256, 2, 128);
}

TEST(NeuronExpertCombine, RejectsPositionsOutsideTheGroupedRows) {
  NeuronCore core(trn2_config());
  const View expert_out = core.hbm_alloc({4, 8}, DType::kF32, "expert_out");
  core.write(expert_out, std::vector<float>(32, 1.0f));
  const View weights = upload(core, {2, 2}, DType::kF32, {1, 1, 1, 1}, "weights");
  const View position = upload(core, {2, 2}, DType::kI32, {0, 1, 2, 9}, "position");
  const View out = core.hbm_alloc({2, 8}, DType::kF32, "out");
  expect_error(
      [&] { expert_combine_forward(core, out, expert_out, weights, position, DType::kF32); },
      {"expert_combine_forward", "index 9", "outside"});
  const View wrong = core.hbm_alloc({3, 8}, DType::kF32, "wrong");
  expect_error(
      [&] { expert_combine_forward(core, out, wrong, weights, position, DType::kF32); },
      {"expert_out", "[4, 8]"});
}

// ---- the router's load statistics ----

TEST(NeuronRouterLoad, StatsCountAndSumLikeTheReference) {
  for (const DType act : {DType::kF32, DType::kBF16}) {
    const int64_t N = 150, E = 32, k = 4;
    NeuronCore core(trn2_config());
    const View logits = upload(core, {N, E}, act, normal(N * E, 31, 2.0f), "logits");
    const View ids = upload(core, {N, k}, DType::kI32, random_ids(N * k, E, 32), "ids");
    const std::vector<double> got = router_load_stats(core, logits, ids);
    std::vector<double> want(static_cast<size_t>(2 * E), 0.0);
    const std::vector<int32_t> id_values = read_ids(core, ids);
    cpu::router_load_stats<double>(want.data(), read(core, logits).data(), id_values.data(),
                                   static_cast<int>(N), static_cast<int>(E), static_cast<int>(k));
    for (int64_t e = 0; e < E; ++e) {
      EXPECT_EQ(got[e], want[e]) << "count of expert " << e;
      EXPECT_NEAR(got[E + e], want[E + e], kFp32Results * want[E + e]) << "probability " << e;
    }
  }
}

TEST(NeuronRouterLoad, BackwardAccumulatesTheLossGradient) {
  for (const Mode& mode : {kFp32, kBf16}) {
    SCOPED_TRACE(mode.name);
    const int64_t N = 131, E = 128;
    NeuronCore core(trn2_config());
    const View logits = upload(core, {N, E}, mode.act, normal(N * E, 33, 2.0f), "logits");
    const View dlogits = upload(core, {N, E}, mode.act, normal(N * E, 34, 0.1f), "dlogits");
    const View counts = upload(core, {1, E}, DType::kF32, random_ids(E, 40, 35), "counts");
    Host want = read(core, dlogits);
    std::vector<double> totals(static_cast<size_t>(2 * E), 0.0);
    const Host c = read(core, counts);
    std::copy(c.begin(), c.end(), totals.begin());
    router_load_backward(core, dlogits, logits, counts, 0.01f);
    cpu::router_load_backward<double>(want.data(), read(core, logits).data(), totals.data(), 0.01,
                                      static_cast<int>(N), static_cast<int>(E));
    EXPECT_LT(relative_error(read(core, dlogits), want), mode.tol);
  }
}

}  // namespace
}  // namespace switchyard::backend::neuron
