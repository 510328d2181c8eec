// The CPU mixture-of-experts kernels (moe_kernels.h, expert_linear_kernels.h): forward passes
// against formulas written out here, every backward pass against central finite differences in
// double precision, float against double, the accumulate-into-gradients rule, the top-k tie rule,
// the grouped order; then the ops through CpuBackend: batch-invariant expert products equal to
// ops::Linear, operand errors, and a whole MoE layer against a per-row loop over dense experts.
#include "backend/cpu/moe_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/expert_linear_kernels.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/tensor.h"
#include "expect_error.h"
#include "gradient_check.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard::backend::cpu {
namespace {

using switchyard::dot;  // not cpu::dot over raw pointers

// Awkward sizes: N rows, C channels, E experts, k choices per row, I intermediate channels.
constexpr int kN = 7, kC = 24, kE = 5, kK = 2, kI = 12, kA = kN * kK;

// ---- routing ----

// The k largest of a row, largest first and the lower expert first on ties, by sorting.
std::vector<int32_t> direct_topk(const double* l, int E, int k) {
  std::vector<int32_t> ids(E);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  ids.resize(k);
  return ids;
}

TEST(TopKRouting, ChoosesTheLargestAndSoftmaxesThem) {
  for (const int k : {1, kK, 4, kE}) {
    SCOPED_TRACE(testing::Message() << "k=" << k);
    const Vec logits = random_vec(kN * kE, 1, 3.0);
    std::vector<int32_t> ids(kN * k, -1);
    Vec weights(kN * k);
    topk_routing(ids.data(), weights.data(), logits.data(), kN, kE, k);
    std::vector<int32_t> ids_f(kN * k, -1);
    std::vector<float> weights_f(kN * k);
    const std::vector<float> logits_f = to_float(logits);
    topk_routing(ids_f.data(), weights_f.data(), logits_f.data(), kN, kE, k);
    EXPECT_EQ(ids_f, ids);
    for (int n = 0; n < kN; ++n) {
      const double* l = logits.data() + n * kE;
      const std::vector<int32_t> want = direct_topk(l, kE, k);
      double sum = 0;
      for (int j = 0; j < k; ++j) sum += std::exp(l[want[j]]);
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(ids[n * k + j], want[j]) << "row " << n << " choice " << j;
        const double w = std::exp(l[want[j]]) / sum;
        EXPECT_NEAR(weights[n * k + j], w, 1e-15);
        EXPECT_NEAR(weights_f[n * k + j], w, 1e-6);
      }
    }
  }
}

TEST(TopKRouting, EqualLogitsGoToTheLowerExpertFirst) {
  const int E = 6;
  const std::vector<float> logits = {1, 3, 3, 0, 3, -2,    // three-way tie for first
                                     2, 2, 2, 2, 2, 2,     // all equal
                                     -1, 0, 5, 0, 0, 5};   // ties for first and for third
  auto route = [&](int k) {
    std::vector<int32_t> ids(3 * k);
    std::vector<float> weights(3 * k);
    topk_routing(ids.data(), weights.data(), logits.data(), 3, E, k);
    return std::make_pair(ids, weights);
  };
  EXPECT_EQ(route(2).first, (std::vector<int32_t>{1, 2, 0, 1, 2, 5}));
  EXPECT_EQ(route(3).first, (std::vector<int32_t>{1, 2, 4, 0, 1, 2, 2, 5, 1}));
  EXPECT_EQ(route(E).first, (std::vector<int32_t>{1, 2, 4, 0, 3, 5, 0, 1, 2, 3, 4, 5,
                                                  2, 5, 1, 3, 4, 0}));
  const std::vector<float> equal = route(4).second;
  for (int j = 0; j < 4; ++j) EXPECT_FLOAT_EQ(equal[4 + j], 0.25f);  // the all-equal row
}

// A NaN logit must not break the choice (ids stay distinct and in range) and must show in the
// weights of a row that chose it.
TEST(TopKRouting, NanLogitsKeepIdsValid) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {nan, 1, 2, 0, 3, 1, 2, nan, 0, 3};
  std::vector<int32_t> ids(2 * 3);
  std::vector<float> weights(2 * 3);
  topk_routing(ids.data(), weights.data(), logits.data(), 2, 5, 3);
  for (int n = 0; n < 2; ++n) {
    std::vector<int32_t> row(ids.begin() + 3 * n, ids.begin() + 3 * n + 3);
    for (int32_t e : row) EXPECT_TRUE(e >= 0 && e < 5) << e;
    std::sort(row.begin(), row.end());
    EXPECT_EQ(std::unique(row.begin(), row.end()), row.end()) << "row " << n;
  }
  EXPECT_TRUE(std::isnan(weights[0])) << "row 0 chose its NaN first";
}

TEST(TopKRouting, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int k = 3;
  Vec logits = random_vec(kN * kE, 2, 3.0);
  const Vec dweights = random_vec(kN * k, 3);
  std::vector<int32_t> ids(kN * k);
  Vec weights(kN * k);
  auto loss = [&] {
    topk_routing(ids.data(), weights.data(), logits.data(), kN, kE, k);
    return dot(weights, dweights);
  };
  loss();
  const std::vector<int32_t> chosen = ids;
  const Vec prior = random_vec(logits.size(), 4);
  Vec dlogits = prior;
  topk_routing_backward(dlogits.data(), dweights.data(), weights.data(), ids.data(), kN, kE, k);
  const Vec numeric = numeric_grad(logits, loss);
  EXPECT_EQ(ids, chosen) << "the steps changed the choice";
  expect_grad(dlogits, prior, numeric, "dlogits");
  loss();  // the weights of the unperturbed logits again
  std::vector<float> dlogits_f(prior.begin(), prior.end());
  const std::vector<float> dweights_f = to_float(dweights), weights_f = to_float(weights);
  topk_routing_backward(dlogits_f.data(), dweights_f.data(), weights_f.data(), ids.data(), kN, kE,
                        k);
  EXPECT_LT(rel_error(dlogits_f, dlogits), 1e-6);
  for (int n = 0; n < kN; ++n) {  // experts not chosen get nothing
    for (int e = 0; e < kE; ++e) {
      if (std::find(chosen.begin() + n * k, chosen.begin() + n * k + k, e) ==
          chosen.begin() + n * k + k) {
        EXPECT_EQ(dlogits[n * kE + e], prior[n * kE + e]);
      }
    }
  }
}

// ---- grouping ----

// Checks the grouped order of expert_ids [N, k] against its definition.
void expect_grouping(const std::vector<int32_t>& expert_ids, int k, int E) {
  const int A = static_cast<int>(expert_ids.size());
  std::vector<int32_t> order(A, -1), rows(A, -1), position(A, -1), offsets(E + 1, -1);
  group_by_expert(order.data(), rows.data(), position.data(), offsets.data(), expert_ids.data(), A,
                  k, E);
  ASSERT_EQ(offsets[0], 0);
  ASSERT_EQ(offsets[E], A);
  for (int e = 0; e < E; ++e) {
    EXPECT_EQ(offsets[e + 1] - offsets[e], std::count(expert_ids.begin(), expert_ids.end(), e))
        << "expert " << e;
    for (int g = offsets[e]; g < offsets[e + 1]; ++g) {
      EXPECT_EQ(expert_ids[order[g]], e) << "position " << g;
      if (g > offsets[e]) {
        EXPECT_LT(order[g - 1], order[g]) << "stable within expert " << e;
      }
    }
  }
  for (int g = 0; g < A; ++g) {
    ASSERT_TRUE(order[g] >= 0 && order[g] < A);
    EXPECT_EQ(rows[g], order[g] / k);
    EXPECT_EQ(position[order[g]], g);
  }
}

TEST(GroupByExpert, IsAStableCountingSortWithInversePositions) {
  // Expert 3 has no assignment; expert 4 only the last.
  expect_grouping({2, 0, 1, 2, 0, 1, 2, 2, 0, 1, 1, 0, 2, 4}, kK, kE);
  expect_grouping(random_tokens(kA, kE, 5), kK, kE);
  expect_grouping(random_tokens(64 * 4, 32, 6), 4, 32);
  expect_grouping({0}, 1, 1);
  expect_grouping({}, 2, 3);
}

// ---- expert products ----

// Rows per expert (an empty expert and one past kGemvMaxRows, so both kinds of product run) and
// their offsets.
const std::vector<int32_t> kRowsPerExpert = {3, 0, 1, 17, 5};

std::vector<int32_t> offsets_of(const std::vector<int32_t>& rows) {
  std::vector<int32_t> offsets(rows.size() + 1, 0);
  std::partial_sum(rows.begin(), rows.end(), offsets.begin() + 1);
  return offsets;
}

TEST(ExpertLinear, ForwardMatchesPerExpertProducts) {
  const std::vector<int32_t> offsets = offsets_of(kRowsPerExpert);
  const int A = offsets[kE], C = kC, OC = 2 * kI;
  const Vec inp = random_vec(A * C, 10), weight = random_vec(kE * OC * C, 11),
            bias = random_vec(kE * OC, 12);
  for (const bool with_bias : {true, false}) {
    SCOPED_TRACE(testing::Message() << "bias " << with_bias);
    Vec want(A * OC, 0.0);
    for (int e = 0; e < kE; ++e) {
      for (int g = offsets[e]; g < offsets[e + 1]; ++g) {
        for (int o = 0; o < OC; ++o) {
          double s = with_bias ? bias[e * OC + o] : 0.0;
          for (int c = 0; c < C; ++c) s += inp[g * C + c] * weight[(e * OC + o) * C + c];
          want[g * OC + o] = s;
        }
      }
    }
    Vec out(A * OC, 99.0);
    expert_linear_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr,
                          offsets.data(), kE, C, OC, false);
    EXPECT_LT(rel_error(out, want), 1e-14);
    const std::vector<float> inp_f = to_float(inp), weight_f = to_float(weight),
                             bias_f = to_float(bias);
    for (const bool invariant : {false, true}) {
      std::vector<float> out_f(A * OC, 99.0f);
      expert_linear_forward(out_f.data(), inp_f.data(), weight_f.data(),
                            with_bias ? bias_f.data() : nullptr, offsets.data(), kE, C, OC,
                            invariant);
      EXPECT_LT(rel_error(out_f, want), 1e-6) << "batch_invariant " << invariant;
    }
  }
}

TEST(ExpertLinear, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const std::vector<int32_t> offsets = offsets_of(kRowsPerExpert);
  const int A = offsets[kE], C = 13, OC = 6;
  Vec inp = random_vec(A * C, 20), weight = random_vec(kE * OC * C, 21),
      bias = random_vec(kE * OC, 22);
  const Vec w = random_vec(A * OC, 23);
  Vec out(A * OC);
  auto loss = [&] {
    expert_linear_forward(out.data(), inp.data(), weight.data(), bias.data(), offsets.data(), kE,
                          C, OC, false);
    return dot(out, w);
  };
  const Vec prior_inp = random_vec(inp.size(), 24), prior_w = random_vec(weight.size(), 25),
            prior_b = random_vec(bias.size(), 26);
  Vec dinp = prior_inp, dweight = prior_w, dbias = prior_b;
  expert_linear_backward(dinp.data(), dweight.data(), dbias.data(), w.data(), inp.data(),
                         weight.data(), offsets.data(), kE, C, OC);
  expect_grad(dinp, prior_inp, numeric_grad(inp, loss), "dinp");
  expect_grad(dweight, prior_w, numeric_grad(weight, loss), "dweight");
  expect_grad(dbias, prior_b, numeric_grad(bias, loss), "dbias");
  for (int i = 0; i < OC * C; ++i) ASSERT_EQ(dweight[OC * C + i], prior_w[OC * C + i]);  // empty

  // Without dinp and dbias: the same weight gradient.
  Vec dweight_only = prior_w;
  expert_linear_backward<double>(nullptr, dweight_only.data(), nullptr, w.data(), inp.data(),
                                 weight.data(), offsets.data(), kE, C, OC);
  EXPECT_EQ(dweight_only, dweight);

  // float against double.
  std::vector<float> dinp_f(prior_inp.begin(), prior_inp.end()),
      dweight_f(prior_w.begin(), prior_w.end()), dbias_f(prior_b.begin(), prior_b.end());
  const std::vector<float> w_f = to_float(w), inp_f = to_float(inp), weight_f = to_float(weight);
  expert_linear_backward(dinp_f.data(), dweight_f.data(), dbias_f.data(), w_f.data(), inp_f.data(),
                         weight_f.data(), offsets.data(), kE, C, OC);
  EXPECT_LT(rel_error(dinp_f, dinp), 1e-6);
  EXPECT_LT(rel_error(dweight_f, dweight), 1e-6);
  EXPECT_LT(rel_error(dbias_f, dbias), 1e-6);
}

// The float products (oneDNN, the batch-invariant kernels) against the double loops, forward with
// both kinds of product and backward.
void expect_float_experts_agree(int E, int C, int OC, const std::vector<int32_t>& rows_per_expert) {
  const std::vector<int32_t> offsets = offsets_of(rows_per_expert);
  const int A = offsets[E];
  const Vec inp = random_vec(A * C, 27), weight = random_vec(E * OC * C, 28),
            bias = random_vec(E * OC, 29), dout = random_vec(A * OC, 30);
  Vec out(A * OC), dinp(A * C, 0.5), dweight(weight.size(), -0.25), dbias(bias.size(), 1.0);
  expert_linear_forward(out.data(), inp.data(), weight.data(), bias.data(), offsets.data(), E, C,
                        OC, false);
  expert_linear_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                         weight.data(), offsets.data(), E, C, OC);
  const std::vector<float> inp_f = to_float(inp), weight_f = to_float(weight),
                           bias_f = to_float(bias), dout_f = to_float(dout);
  for (const bool invariant : {false, true}) {
    std::vector<float> out_f(out.size());
    expert_linear_forward(out_f.data(), inp_f.data(), weight_f.data(), bias_f.data(),
                          offsets.data(), E, C, OC, invariant);
    EXPECT_LT(rel_error(out_f, out), 1e-5) << "batch_invariant " << invariant;
  }
  std::vector<float> dinp_f(dinp.size(), 0.5f), dweight_f(dweight.size(), -0.25f),
      dbias_f(dbias.size(), 1.0f);
  expert_linear_backward(dinp_f.data(), dweight_f.data(), dbias_f.data(), dout_f.data(),
                         inp_f.data(), weight_f.data(), offsets.data(), E, C, OC);
  EXPECT_LT(rel_error(dinp_f, dinp), 1e-5);
  EXPECT_LT(rel_error(dweight_f, dweight), 1e-5);
  EXPECT_LT(rel_error(dbias_f, dbias), 1e-5);
}

// Experts past kSmallExpertWeights run one at a time, each product on every thread.
TEST(ExpertLinear, LargeExpertsAgreeWithDouble) {
  ASSERT_GT(size_t{203} * 170, kSmallExpertWeights);
  expect_float_experts_agree(kE, 203, 170, kRowsPerExpert);
}

// Many small experts with enough rows in all run side by side, one per thread.
TEST(ExpertLinear, SmallExpertsSideBySideAgreeWithDouble) {
  std::vector<int32_t> rows = random_tokens(16, 40, 31);
  rows[3] = rows[11] = 0;
  rows[7] = 1;
  ASSERT_GT(std::accumulate(rows.begin(), rows.end(), 0) * size_t{40} * 24, kParallelThreshold);
  expect_float_experts_agree(16, 40, 24, rows);
}

// ---- clamped SwiGLU ----

constexpr double kAlpha = 1.702, kLimit = 7.0;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double swiglu(double gate, double up) {
  const double g = std::min(gate, kLimit), u = std::clamp(up, -kLimit, kLimit);
  return (u + 1.0) * g * sigmoid(kAlpha * g);
}

// Inputs over [-10, 10], beyond the clamps on both sides, kept 1e-3 away from the kinks so that
// finite differences do not straddle one.
Vec swiglu_inputs(int A, int I, uint64_t seed) {
  Vec x = random_vec(static_cast<size_t>(A) * 2 * I, seed, 10.0);
  for (double& v : x) {
    if (std::abs(std::abs(v) - kLimit) < 1e-3) v += 2e-3;
  }
  return x;
}

TEST(ClampedSwiglu, ForwardMatchesFormula) {
  const Vec inp = swiglu_inputs(kA, kI, 30);
  Vec out(kA * kI);
  clamped_swiglu_forward(out.data(), inp.data(), kA, kI, kAlpha, kLimit);
  std::vector<float> out_f(out.size());
  const std::vector<float> inp_f = to_float(inp);
  clamped_swiglu_forward(out_f.data(), inp_f.data(), kA, kI, static_cast<float>(kAlpha),
                         static_cast<float>(kLimit));
  Vec want(out.size());
  int clamped = 0;
  for (int a = 0; a < kA; ++a) {
    for (int i = 0; i < kI; ++i) {
      const double gate = inp[a * 2 * kI + 2 * i], up = inp[a * 2 * kI + 2 * i + 1];
      want[a * kI + i] = swiglu(gate, up);
      clamped += gate > kLimit || std::abs(up) > kLimit;
    }
  }
  EXPECT_GT(clamped, 10) << "the inputs should reach past the clamps";
  EXPECT_LT(rel_error(out, want), 1e-14);
  EXPECT_LT(rel_error(out_f, want), 1e-6);
  // Far below the gate's range the sigmoid underflows: the product is (nearly) 0, not NaN.
  const std::vector<double> low = {-1000.0, 0.5};
  const std::vector<float> low_f = to_float(low);
  double y = 1.0;
  float y_f = 1.0f;
  clamped_swiglu_forward(&y, low.data(), 1, 1, kAlpha, kLimit);
  clamped_swiglu_forward(&y_f, low_f.data(), 1, 1, static_cast<float>(kAlpha),
                         static_cast<float>(kLimit));
  EXPECT_LT(std::abs(y), 1e-30);
  EXPECT_LT(std::abs(y_f), 1e-30f);
}

TEST(ClampedSwiglu, BackwardMatchesFiniteDifferencesAndAccumulates) {
  Vec inp = swiglu_inputs(kA, kI, 31);
  const Vec w = random_vec(kA * kI, 32);
  Vec out(kA * kI);
  auto loss = [&] {
    clamped_swiglu_forward(out.data(), inp.data(), kA, kI, kAlpha, kLimit);
    return dot(out, w);
  };
  const Vec prior = random_vec(inp.size(), 33);
  Vec dinp = prior;
  clamped_swiglu_backward(dinp.data(), inp.data(), w.data(), kA, kI, kAlpha, kLimit);
  expect_grad(dinp, prior, numeric_grad(inp, loss), "dinp");

  std::vector<float> dinp_f(prior.begin(), prior.end());
  const std::vector<float> inp_f = to_float(inp), w_f = to_float(w);
  clamped_swiglu_backward(dinp_f.data(), inp_f.data(), w_f.data(), kA, kI,
                          static_cast<float>(kAlpha), static_cast<float>(kLimit));
  EXPECT_LT(rel_error(dinp_f, dinp), 1e-5);
}

// At a bound the clamp passes the gradient (torch.clamp's rule); past it, nothing.
TEST(ClampedSwiglu, BoundsPassTheGradient) {
  // (gate, up) pairs: both at the upper bound; gate past it with up at the lower bound; up past
  // the lower bound.
  const std::vector<double> inp = {kLimit, kLimit, 7.5, -kLimit, 2.0, -7.5};
  std::vector<double> dinp(6, 0.0);
  const std::vector<double> dout = {1.0, 1.0, 1.0};
  clamped_swiglu_backward(dinp.data(), inp.data(), dout.data(), 1, 3, kAlpha, kLimit);
  auto dgate = [](double g, double u) {
    const double s = sigmoid(kAlpha * g);
    return (u + 1) * (s + kAlpha * g * s * (1 - s));
  };
  const double s7 = sigmoid(kAlpha * kLimit);
  EXPECT_NEAR(dinp[0], dgate(kLimit, kLimit), 1e-12);
  EXPECT_NEAR(dinp[1], kLimit * s7, 1e-12);
  EXPECT_EQ(dinp[2], 0.0);
  EXPECT_NEAR(dinp[3], kLimit * s7, 1e-12);  // g = min(7.5, 7)
  EXPECT_NEAR(dinp[4], dgate(2.0, -kLimit), 1e-12);
  EXPECT_EQ(dinp[5], 0.0);
}

// ---- combining ----

// A permutation of [0, A) as GroupByExpert would give for random choices.
std::vector<int32_t> grouped_positions(int N, int k, int E, uint64_t seed) {
  const std::vector<int32_t> ids = random_tokens(static_cast<size_t>(N) * k, E, seed);
  const int A = N * k;
  std::vector<int32_t> order(A), rows(A), position(A), offsets(E + 1);
  group_by_expert(order.data(), rows.data(), position.data(), offsets.data(), ids.data(), A, k, E);
  return position;
}

TEST(ExpertCombine, ForwardMatchesFormulaAndBackwardMatchesFiniteDifferences) {
  const std::vector<int32_t> position = grouped_positions(kN, kK, kE, 40);
  Vec expert_out = random_vec(kA * kC, 41), weights = random_vec(kA, 42);
  Vec out(kN * kC, 99.0);
  expert_combine_forward(out.data(), expert_out.data(), weights.data(), position.data(), kN, kC,
                         kK);
  for (int n = 0; n < kN; ++n) {
    for (int c = 0; c < kC; ++c) {
      double s = 0;
      for (int j = 0; j < kK; ++j) {
        s += weights[n * kK + j] * expert_out[position[n * kK + j] * kC + c];
      }
      EXPECT_NEAR(out[n * kC + c], s, 1e-14);
    }
  }

  const Vec w = random_vec(kN * kC, 43);
  auto loss = [&] {
    expert_combine_forward(out.data(), expert_out.data(), weights.data(), position.data(), kN, kC,
                           kK);
    return dot(out, w);
  };
  const Vec prior_x = random_vec(expert_out.size(), 44), prior_w = random_vec(weights.size(), 45);
  Vec dexpert_out = prior_x, dweights = prior_w;
  expert_combine_backward(dexpert_out.data(), dweights.data(), w.data(), expert_out.data(),
                          weights.data(), position.data(), kN, kC, kK);
  expect_grad(dexpert_out, prior_x, numeric_grad(expert_out, loss), "dexpert_out");
  expect_grad(dweights, prior_w, numeric_grad(weights, loss), "dweights");

  std::vector<float> out_f(out.size()), dexpert_out_f(prior_x.begin(), prior_x.end()),
      dweights_f(prior_w.begin(), prior_w.end());
  const std::vector<float> x_f = to_float(expert_out), weights_f = to_float(weights),
                           w_f = to_float(w);
  expert_combine_forward(out_f.data(), x_f.data(), weights_f.data(), position.data(), kN, kC, kK);
  expert_combine_backward(dexpert_out_f.data(), dweights_f.data(), w_f.data(), x_f.data(),
                          weights_f.data(), position.data(), kN, kC, kK);
  loss();
  EXPECT_LT(rel_error(out_f, out), 1e-6);
  EXPECT_LT(rel_error(dexpert_out_f, dexpert_out), 1e-6);
  EXPECT_LT(rel_error(dweights_f, dweights), 1e-6);
}

// ---- load-balancing statistics ----

TEST(RouterLoad, StatsAccumulateCountsAndProbabilities) {
  const int N = 37, E = 7, k = 3;
  const Vec logits = random_vec(N * E, 50, 4.0);
  const std::vector<int32_t> ids = random_tokens(N * k, E, 51);
  const std::vector<double> prior = {1, 2, 3, 4, 5, 6, 7, 0.5, 0.25, 0, 1, 2, 3, 4};
  std::vector<double> totals = prior, totals_f = prior;
  router_load_stats(totals.data(), logits.data(), ids.data(), N, E, k);
  const std::vector<float> logits_f = to_float(logits);
  router_load_stats(totals_f.data(), logits_f.data(), ids.data(), N, E, k);
  for (int e = 0; e < E; ++e) {
    const double count = static_cast<double>(std::count(ids.begin(), ids.end(), e));
    double probability = 0;
    for (int n = 0; n < N; ++n) {
      double sum = 0;
      for (int i = 0; i < E; ++i) sum += std::exp(logits[n * E + i]);
      probability += std::exp(logits[n * E + e]) / sum;
    }
    EXPECT_EQ(totals[e], prior[e] + count);
    EXPECT_EQ(totals_f[e], prior[e] + count);
    EXPECT_NEAR(totals[E + e], prior[E + e] + probability, 1e-13);
    EXPECT_NEAR(totals_f[E + e], prior[E + e] + probability, 1e-5);
  }
}

TEST(RouterLoad, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int N = kN, E = kE;
  Vec logits = random_vec(N * E, 52, 3.0);
  const std::vector<double> totals = {3, 0, 7, 1, 3, 4.5, 1.5, 2, 3, 2};  // counts, then sums
  const double scale = 0.37;
  auto loss = [&] {  // scale * sum over rows and experts of counts[e] * softmax(logits[n])[e]
    double total = 0;
    for (int n = 0; n < N; ++n) {
      double sum = 0;
      for (int e = 0; e < E; ++e) sum += std::exp(logits[n * E + e]);
      for (int e = 0; e < E; ++e) total += totals[e] * std::exp(logits[n * E + e]) / sum;
    }
    return scale * total;
  };
  const Vec prior = random_vec(logits.size(), 53);
  Vec dlogits = prior;
  router_load_backward(dlogits.data(), logits.data(), totals.data(), scale, N, E);
  expect_grad(dlogits, prior, numeric_grad(logits, loss), "dlogits");

  std::vector<float> dlogits_f(prior.begin(), prior.end());
  const std::vector<float> logits_f = to_float(logits);
  router_load_backward(dlogits_f.data(), logits_f.data(), totals.data(), static_cast<float>(scale),
                       N, E);
  EXPECT_LT(rel_error(dlogits_f, dlogits), 1e-6);
}

// ---- through CpuBackend ----

Tensor f32(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kF32, shape);
}
Tensor i32(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kI32, shape);
}

// With batch_invariant, an expert's row gets the same bits alone or among 40 rows, and the same
// bits as ops::Linear (batch_invariant) over that row.
TEST(ExpertLinearOp, BatchInvariantRowsDoNotDependOnTheirExpertsOtherRows) {
  CpuBackend backend;
  const int E = 3, C = 40, OC = 2 * kI, many = 40;
  std::vector<float> weight = random_floats(E * OC * C, 60), bias = random_floats(E * OC, 61),
                     inp = random_floats((many + 2) * C, 62);
  // Expert 1 holds rows 1..40, experts 0 and 2 one row each.
  std::vector<int32_t> crowded = {0, 1, 1 + many, 2 + many};
  std::vector<float> out((many + 2) * OC);
  backend.run(ops::ExpertLinear{.out = f32(out, {many + 2, OC}), .inp = f32(inp, {many + 2, C}),
                                .weight = f32(weight, {E, OC, C}), .bias = f32(bias, {E, OC}),
                                .offsets = i32(crowded, {E + 1}), .batch_invariant = true});
  for (const int row : {1, 17, many}) {  // each of expert 1's rows alone
    std::vector<float> x(inp.begin() + row * C, inp.begin() + (row + 1) * C), alone(OC), linear(OC);
    std::vector<int32_t> single = {0, 0, 1, 1};
    backend.run(ops::ExpertLinear{.out = f32(alone, {1, OC}), .inp = f32(x, {1, C}),
                                  .weight = f32(weight, {E, OC, C}), .bias = f32(bias, {E, OC}),
                                  .offsets = i32(single, {E + 1}), .batch_invariant = true});
    const std::vector<float> crowded_row(out.begin() + row * OC, out.begin() + (row + 1) * OC);
    EXPECT_EQ(alone, crowded_row) << "row " << row;
    backend.run(ops::Linear{.out = f32(linear, {1, OC}), .inp = f32(x, {1, C}),
                            .weight = Tensor::dense(weight.data() + OC * C, DType::kF32, {OC, C}),
                            .bias = Tensor::dense(bias.data() + OC, DType::kF32, {OC}),
                            .batch_invariant = true});
    EXPECT_EQ(linear, crowded_row) << "row " << row;
  }
  // Without batch_invariant the crowded expert takes the GEMM path: close, not necessarily equal.
  std::vector<float> fast(out.size());
  backend.run(ops::ExpertLinear{.out = f32(fast, {many + 2, OC}), .inp = f32(inp, {many + 2, C}),
                                .weight = f32(weight, {E, OC, C}), .bias = f32(bias, {E, OC}),
                                .offsets = i32(crowded, {E + 1})});
  EXPECT_LT(relative_error(fast, out), 1e-6);
}

TEST(MoeOps, BadOperandsAreErrorsNamingTheOpAndOperand) {
  CpuBackend backend;
  std::vector<float> logits = random_floats(kN * kE, 70), weights(kA), x(kA * kC),
                     w(kE * kC * kC), out(kA * kC);
  std::vector<int32_t> ids(kA, 0), order(kA), rows(kA), position(kA), offsets(kE + 1);

  expect_error([&] {
    std::vector<int32_t> many(kN * 6);
    std::vector<float> many_weights(kN * 6);
    backend.run(ops::TopKRouting{.expert_ids = i32(many, {kN, 6}),
                                 .weights = f32(many_weights, {kN, 6}),
                                 .logits = f32(logits, {kN, kE})});
  }, {"cpu topk_routing", "6 choices per row out of 5 experts"});

  ids[9] = kE;  // row 4, choice 1
  expect_error([&] {
    backend.run(ops::GroupByExpert{.order = i32(order, {kA}), .rows = i32(rows, {kA}),
                                   .position = i32(position, {kA}),
                                   .offsets = i32(offsets, {kE + 1}),
                                   .expert_ids = i32(ids, {kN, kK}), .experts = kE});
  }, {"cpu group_by_expert", "expert id 5 of row 4 (choice 1)", "[0, 5)"});
  expect_error([&] {
    std::vector<float> dlogits(kN * kE), dweights(kA);
    backend.run(ops::TopKRoutingBackward{.dlogits = f32(dlogits, {kN, kE}),
                                         .dweights = f32(dweights, {kN, kK}),
                                         .weights = f32(weights, {kN, kK}),
                                         .expert_ids = i32(ids, {kN, kK})});
  }, {"cpu topk_routing_backward", "expert id 5 of row 4"});
  ids[9] = 0;
  expect_error([&] {
    std::vector<float> float_ids(kA);
    backend.run(ops::GroupByExpert{.order = i32(order, {kA}), .rows = i32(rows, {kA}),
                                   .position = i32(position, {kA}),
                                   .offsets = i32(offsets, {kE + 1}),
                                   .expert_ids = f32(float_ids, {kN, kK}), .experts = kE});
  }, {"cpu group_by_expert", "expert_ids must be int32"});

  auto expert_linear = [&](std::vector<int32_t> bounds) {
    backend.run(ops::ExpertLinear{.out = f32(out, {kA, kC}), .inp = f32(x, {kA, kC}),
                                  .weight = f32(w, {kE, kC, kC}),
                                  .offsets = i32(bounds, {kE + 1})});
  };
  expect_error([&] { expert_linear({0, 3, 3, 9, 12, 13}); },
               {"cpu expert_linear", "offsets must run from 0 to 14 rows", "0 to 13"});
  expect_error([&] { expert_linear({0, 3, 2, 9, 12, 14}); },
               {"cpu expert_linear", "offsets must not decrease", "3 then 2"});
  expect_error([&] {
    std::vector<uint16_t> half(kE * kC * kC);
    std::vector<int32_t> bounds = {0, 3, 3, 9, 12, 14};
    backend.run(ops::ExpertLinear{.out = f32(out, {kA, kC}), .inp = f32(x, {kA, kC}),
                                  .weight = Tensor::dense(half.data(), DType::kF16, {kE, kC, kC}),
                                  .offsets = i32(bounds, {kE + 1})});
  }, {"cpu expert_linear", "weight must be fp32, bf16 or mxfp4", "fp16"});
  expect_error([&] {
    std::vector<int32_t> bounds = {0, 3, 3, 9, 12, 14};
    std::vector<float> dw(kE * kC * kC), dout(kA * kC);
    backend.run(ops::ExpertLinearBackward{.dweight = f32(dw, {kE, kC, kC - 1}),
                                          .dout = f32(dout, {kA, kC}), .inp = f32(x, {kA, kC}),
                                          .weight = f32(w, {kE, kC, kC}),
                                          .offsets = i32(bounds, {kE + 1})});
  }, {"cpu expert_linear_backward", "dweight must be [5, 24, 24]"});

  expect_error([&] {
    std::vector<float> half_width(kA * kI);
    backend.run(ops::ClampedSwiglu{.out = f32(half_width, {kA, kI}), .inp = f32(x, {kA, 23})});
  }, {"cpu clamped_swiglu", "inp must be [A, 2I]"});
  expect_error([&] {
    std::vector<float> y(kA * kI);
    backend.run(ops::ClampedSwiglu{.out = f32(y, {kA, kI}), .inp = f32(x, {kA, 2 * kI}),
                                   .limit = 0});
  }, {"cpu clamped_swiglu", "limit positive"});

  std::iota(position.begin(), position.end(), 0);
  position[5] = 4;  // 4 twice, 5 never
  std::vector<float> combined(kN * kC);
  expect_error([&] {
    backend.run(ops::ExpertCombine{.out = f32(combined, {kN, kC}), .expert_out = f32(x, {kA, kC}),
                                   .weights = f32(weights, {kN, kK}),
                                   .position = i32(position, {kA})});
  }, {"cpu expert_combine", "position 4 appears twice"});
  position[5] = kA;
  expect_error([&] {
    std::vector<float> dx(kA * kC), dweights(kA);
    backend.run(ops::ExpertCombineBackward{.dexpert_out = f32(dx, {kA, kC}),
                                           .dweights = f32(dweights, {kN, kK}),
                                           .dout = f32(combined, {kN, kC}),
                                           .expert_out = f32(x, {kA, kC}),
                                           .weights = f32(weights, {kN, kK}),
                                           .position = i32(position, {kA})});
  }, {"cpu expert_combine_backward", "position 14 at 5 is outside [0, 14)"});

  expect_error([&] {
    std::vector<float> totals(2 * kE);
    backend.run(ops::RouterLoadStats{.totals = f32(totals, {2, kE}),
                                     .logits = f32(logits, {kN, kE}),
                                     .expert_ids = i32(ids, {kN, kK})});
  }, {"cpu router_load_stats", "totals must be fp64"});
  expect_error([&] {
    std::vector<double> totals(2 * (kE + 1));
    std::vector<float> dlogits(kN * kE);
    backend.run(ops::RouterLoadBackward{
        .dlogits = f32(dlogits, {kN, kE}), .logits = f32(logits, {kN, kE}),
        .totals = Tensor::dense(totals.data(), DType::kF64, {2, kE + 1}), .scale = 1.0f});
  }, {"cpu router_load_backward", "totals must be [2, 5]"});
}

// A whole MoE layer through CpuBackend's ops in the order ops.h gives, against a per-row loop in
// double that runs each chosen expert densely: router -> top-k -> (experts' SwiGLU MLPs) ->
// weighted sum.
TEST(MoeOps, LayerMatchesDenseExpertsPerRow) {
  CpuBackend backend;
  const int N = kN, C = kC, E = kE, k = kK, I = kI, A = N * k;
  // Inputs scaled so that some gate and up values pass the clamps.
  std::vector<float> x = random_floats(N * C, 80, 3.0f), router_w = random_floats(E * C, 81),
                     router_b = random_floats(E, 82), w1 = random_floats(E * 2 * I * C, 83),
                     b1 = random_floats(E * 2 * I, 84), w2 = random_floats(E * C * I, 85, 0.5f),
                     b2 = random_floats(E * C, 86);
  std::vector<float> logits(N * E), weights(A), gathered(A * C), hidden(A * 2 * I), act(A * I),
      expert_out(A * C), out(N * C);
  std::vector<int32_t> ids(A), order(A), rows(A), position(A), offsets(E + 1);

  backend.run(ops::Linear{.out = f32(logits, {N, E}), .inp = f32(x, {N, C}),
                          .weight = f32(router_w, {E, C}), .bias = f32(router_b, {E})});
  backend.run(ops::TopKRouting{.expert_ids = i32(ids, {N, k}), .weights = f32(weights, {N, k}),
                               .logits = f32(logits, {N, E})});
  backend.run(ops::GroupByExpert{.order = i32(order, {A}), .rows = i32(rows, {A}),
                                 .position = i32(position, {A}), .offsets = i32(offsets, {E + 1}),
                                 .expert_ids = i32(ids, {N, k}), .experts = E});
  backend.run(ops::Embedding{.out = f32(gathered, {A, C}), .ids = i32(rows, {A}),
                             .table = f32(x, {N, C})});
  backend.run(ops::ExpertLinear{.out = f32(hidden, {A, 2 * I}), .inp = f32(gathered, {A, C}),
                                .weight = f32(w1, {E, 2 * I, C}), .bias = f32(b1, {E, 2 * I}),
                                .offsets = i32(offsets, {E + 1})});
  backend.run(ops::ClampedSwiglu{.out = f32(act, {A, I}), .inp = f32(hidden, {A, 2 * I})});
  backend.run(ops::ExpertLinear{.out = f32(expert_out, {A, C}), .inp = f32(act, {A, I}),
                                .weight = f32(w2, {E, C, I}), .bias = f32(b2, {E, C}),
                                .offsets = i32(offsets, {E + 1})});
  backend.run(ops::ExpertCombine{.out = f32(out, {N, C}), .expert_out = f32(expert_out, {A, C}),
                                 .weights = f32(weights, {N, k}), .position = i32(position, {A})});

  std::vector<double> want(N * C, 0.0);
  int clamped = 0;
  for (int n = 0; n < N; ++n) {
    const float* xn = x.data() + n * C;
    std::vector<double> l(E);
    for (int e = 0; e < E; ++e) {
      l[e] = router_b[e];
      for (int c = 0; c < C; ++c) l[e] += static_cast<double>(xn[c]) * router_w[e * C + c];
    }
    const std::vector<int32_t> chosen = direct_topk(l.data(), E, k);
    double denominator = 0;
    for (int32_t e : chosen) denominator += std::exp(l[e]);
    for (int j = 0; j < k; ++j) {
      const int e = chosen[j];
      ASSERT_EQ(ids[n * k + j], e) << "row " << n << " choice " << j;
      const double gate_weight = std::exp(l[e]) / denominator;
      std::vector<double> h(I);
      for (int i = 0; i < I; ++i) {
        double gate = b1[(e * 2 * I) + 2 * i], up = b1[(e * 2 * I) + 2 * i + 1];
        for (int c = 0; c < C; ++c) {
          gate += static_cast<double>(xn[c]) * w1[(e * 2 * I + 2 * i) * C + c];
          up += static_cast<double>(xn[c]) * w1[(e * 2 * I + 2 * i + 1) * C + c];
        }
        clamped += gate > kLimit || std::abs(up) > kLimit;
        h[i] = swiglu(gate, up);
      }
      for (int c = 0; c < C; ++c) {
        double y = b2[e * C + c];
        for (int i = 0; i < I; ++i) y += h[i] * w2[(e * C + c) * I + i];
        want[n * C + c] += gate_weight * y;
      }
    }
  }
  EXPECT_GT(clamped, 0) << "the layer should exercise the clamps";
  EXPECT_LT(relative_error(out, want), 1e-5);
}

}  // namespace
}  // namespace switchyard::backend::cpu
