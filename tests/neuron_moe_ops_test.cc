// gpt-oss's rotary embeddings and mixture-of-experts routing ops through the trn*-sim backends
// (NeuronSimBackend), against the CPU backend on the same values: each runs as a tile program (the
// simulation report names no host fallback) in fp32 and bf16 mode and in timing-only mode; forms
// past the tile programs' limits run on the host and are reported; bad inputs give errors that
// name the op and the operand. Also the simulated time of each forward op at gpt-oss-20b's
// decode shapes (32 rows), printed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;
using Calls = std::vector<std::pair<std::string, int64_t>>;

// The op make(on) builds on each backend, `on` picking that backend's tensor of a Pair.
template <typename MakeOp>
void run_both(Backend& sim, Backend& cpu, MakeOp make) {
  sim.run(make([](const Pair& p) { return p.gpu.tensor(); }));
  cpu.run(make([](const Pair& p) { return p.cpu.tensor(); }));
}

// A simulator device (the parameter) and the CPU reference.
class NeuronMoeOps : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    sim_ = backend::create_backend(GetParam());
    cpu_ = backend::create_backend("cpu");
  }
  bool bf16() const { return sim_->precision().activations == DType::kBF16; }
  // fp32 results to within reordered sums; bf16 activations to their 8 bits.
  double tol() const { return bf16() ? 2e-2 : 1e-5; }
  Pair act(std::initializer_list<int64_t> shape, const std::vector<float>& v) {
    return Pair(*sim_, *cpu_, sim_->precision().activations, shape, v);
  }
  Pair fp32(std::initializer_list<int64_t> shape, const std::vector<float>& v) {
    return Pair(*sim_, *cpu_, DType::kF32, shape, v);
  }
  Pair ids(const std::vector<int32_t>& v) { return Pair(*sim_, *cpu_, v); }
  template <typename MakeOp>
  void run_both(MakeOp make) {
    ::switchyard::run_both(*sim_, *cpu_, make);
  }
  std::vector<double> read_f64(Backend& backend, const DeviceTensor& t) {
    std::vector<double> values(static_cast<size_t>(t.tensor().numel()));
    backend.copy_to_host(values.data(), t.tensor().data, values.size() * sizeof(double));
    return values;
  }
  Calls host_calls() { return backend::simulation_report(*sim_)->unsimulated_ops; }

  std::unique_ptr<Backend> sim_, cpu_;
};

constexpr double kFp32Results = 1e-5;

TEST_P(NeuronMoeOps, RopeOnQueriesAndKeysOfAPackedProjection) {
  const int N = 19, H = 8, KV = 2, hd = 16, P = 30;
  const int64_t width = int64_t{H + 2 * KV} * hd;
  auto proj = act({N, width}, random_floats(N * width, 300, 2.0f));
  std::vector<float> cos_values, sin_values;
  for (int p = 0; p < P; ++p) {
    for (int i = 0; i < hd / 2; ++i) {
      cos_values.push_back(static_cast<float>(std::cos(p * std::pow(0.5, i))));
      sin_values.push_back(static_cast<float>(std::sin(p * std::pow(0.5, i))));
    }
  }
  auto cos = fp32({P, hd / 2}, cos_values), sin = fp32({P, hd / 2}, sin_values);
  auto positions = ids(random_tokens(N, P, 301));
  for (const bool transpose : {false, true}) {
    run_both([&](auto on) {
      return ops::Rope{.x = heads_view(on(proj), 0, H + KV, hd), .cos = on(cos),
                       .sin = on(sin), .positions = on(positions), .transpose = transpose};
    });
    EXPECT_LT(proj.error(), tol()) << (transpose ? "transposed" : "forward");
  }
  EXPECT_EQ(host_calls(), Calls{});
}

// gpt-oss-20b's router (32 experts, 4 choices) on logits with ties, then everything the layer
// does around its experts, forward and backward.
TEST_P(NeuronMoeOps, RoutingGroupingCombiningAndLoadStatistics) {
  const int N = 45, E = 32, k = 4, C = 40, A = N * k;
  std::vector<float> logit_values = random_floats(N * E, 310, 3.0f);
  for (size_t i = 0; i < logit_values.size(); i += 2) logit_values[i] = std::round(logit_values[i]);
  auto logits = act({N, E}, logit_values);
  auto expert_ids = ids(std::vector<int32_t>(A));
  auto weights = fp32({N, k}, std::vector<float>(A));
  auto choices = [&](const Tensor& t) { return t.reshape({N, k}); };
  run_both([&](auto on) {
    return ops::TopKRouting{.expert_ids = choices(on(expert_ids)), .weights = on(weights),
                            .logits = on(logits)};
  });
  EXPECT_EQ(expert_ids.gpu.read_i32(), expert_ids.cpu.read_i32());
  EXPECT_LT(weights.error(), kFp32Results);

  auto order = ids(std::vector<int32_t>(A)), rows = ids(std::vector<int32_t>(A));
  auto position = ids(std::vector<int32_t>(A)), offsets = ids(std::vector<int32_t>(E + 1));
  run_both([&](auto on) {
    return ops::GroupByExpert{.order = on(order), .rows = on(rows), .position = on(position),
                              .offsets = on(offsets), .expert_ids = choices(on(expert_ids)),
                              .experts = E};
  });
  for (const Pair* p : {&order, &rows, &position, &offsets})
    EXPECT_EQ(p->gpu.read_i32(), p->cpu.read_i32());

  auto expert_out = act({A, C}, random_floats(A * C, 311));
  auto combined = act({N, C}, std::vector<float>(N * C));
  run_both([&](auto on) {
    return ops::ExpertCombine{.out = on(combined), .expert_out = on(expert_out),
                              .weights = on(weights), .position = on(position)};
  });
  EXPECT_LT(combined.error(), tol());
  auto dcombined = act({N, C}, random_floats(N * C, 312));
  auto dexpert_out = act({A, C}, random_floats(A * C, 313));  // both accumulate
  auto dweights = fp32({N, k}, random_floats(A, 314));
  run_both([&](auto on) {
    return ops::ExpertCombineBackward{.dexpert_out = on(dexpert_out), .dweights = on(dweights),
                                      .dout = on(dcombined), .expert_out = on(expert_out),
                                      .weights = on(weights), .position = on(position)};
  });
  EXPECT_LT(dexpert_out.error(), tol());
  EXPECT_LT(dweights.error(), tol());

  auto dlogits = act({N, E}, random_floats(N * E, 315));  // accumulates
  run_both([&](auto on) {
    return ops::TopKRoutingBackward{.dlogits = on(dlogits), .dweights = on(dweights),
                                    .weights = on(weights),
                                    .expert_ids = choices(on(expert_ids))};
  });
  EXPECT_LT(dlogits.error(), tol());

  auto totals = Pair(*sim_, *cpu_, DType::kF64, {2, E});
  for (int layer = 0; layer < 2; ++layer) {  // summed over layers
    run_both([&](auto on) {
      return ops::RouterLoadStats{.totals = on(totals), .logits = on(logits),
                                  .expert_ids = choices(on(expert_ids))};
    });
  }
  const std::vector<double> got = read_f64(*sim_, totals.gpu), want = read_f64(*cpu_, totals.cpu);
  for (int e = 0; e < E; ++e) {
    EXPECT_EQ(got[e], want[e]) << "count of expert " << e;
    EXPECT_NEAR(got[E + e], want[E + e], kFp32Results * want[E + e]) << "probabilities of " << e;
  }
  run_both([&](auto on) {
    return ops::RouterLoadBackward{.dlogits = on(dlogits), .logits = on(logits),
                                   .totals = on(totals), .scale = 0.02f};
  });
  EXPECT_LT(dlogits.error(), tol());
  EXPECT_EQ(host_calls(), Calls{});
}

INSTANTIATE_TEST_SUITE_P(Simulators, NeuronMoeOps,
                         ::testing::Values("trn2-sim-fp32", "trn2-sim", "trn1-sim"));

// ---- forms past the tile programs, and bad inputs ----

TEST(NeuronMoeOpsLimits, FormsPastTheTileProgramsRunOnTheHost) {
  auto sim = backend::create_backend("trn2-sim-fp32");
  auto cpu = backend::create_backend("cpu");
  // 600 experts: more than one PSUM bank of counts.
  const int N = 3, E = 600, k = 2;
  Pair logits(*sim, *cpu, DType::kF32, {N, E}, random_floats(N * E, 320));
  Pair expert_ids(*sim, *cpu, std::vector<int32_t>(N * k));
  Pair weights(*sim, *cpu, DType::kF32, {N, k}, std::vector<float>(N * k));
  run_both(*sim, *cpu, [&](auto on) {
    return ops::TopKRouting{.expert_ids = on(expert_ids).reshape({N, k}), .weights = on(weights),
                            .logits = on(logits)};
  });
  EXPECT_EQ(expert_ids.gpu.read_i32(), expert_ids.cpu.read_i32());
  // 131 heads of 64: a prime count of heads, 8384 elements, more than a partition takes.
  const int H = 131, hd = 64;
  Pair proj(*sim, *cpu, DType::kF32, {1, H * hd}, random_floats(H * hd, 321));
  Pair cos(*sim, *cpu, DType::kF32, {3, hd / 2}, random_floats(3 * hd / 2, 322));
  Pair positions(*sim, *cpu, std::vector<int32_t>{2});
  run_both(*sim, *cpu, [&](auto on) {
    return ops::Rope{.x = heads_view(on(proj), 0, H, hd), .cos = on(cos), .sin = on(cos),
                     .positions = on(positions)};
  });
  EXPECT_EQ(proj.gpu.read(), proj.cpu.read());
  EXPECT_EQ(backend::simulation_report(*sim)->unsimulated_ops,
            (Calls{{"rope", 1}, {"topk_routing", 1}}));
}

TEST(NeuronMoeOpsLimits, BadInputsGiveClearErrors) {
  auto sim = backend::create_backend("trn2-sim");
  auto cpu = backend::create_backend("cpu");
  const int N = 4, E = 3;
  DeviceTensor logits(*sim, DType::kBF16, {N, E}, random_floats(N * E, 330));
  DeviceTensor ids(*sim, DType::kI32, {N, 4});
  DeviceTensor weights(*sim, DType::kF32, {N, 4});
  expect_error(
      [&] {
        sim->run(ops::TopKRouting{.expert_ids = ids.tensor(), .weights = weights.tensor(),
                                  .logits = logits.tensor()});
      },
      {"trn2-sim topk_routing", "4 choices per row out of 3 experts"});
  DeviceTensor bad_ids(*sim, std::vector<int32_t>{0, 1, 2, 7, 1, 1, 0, 2});
  DeviceTensor grouped(*sim, DType::kI32, {8});
  DeviceTensor offsets(*sim, DType::kI32, {E + 1});
  expect_error(
      [&] {
        sim->run(ops::GroupByExpert{.order = grouped.tensor(), .rows = grouped.tensor(),
                                    .position = grouped.tensor(), .offsets = offsets.tensor(),
                                    .expert_ids = bad_ids.tensor().reshape({N, 2}),
                                    .experts = E});
      },
      {"trn2-sim group_by_expert", "expert id 7 at row 3", "[0, 3)"});
  DeviceTensor repeated(*sim, std::vector<int32_t>{0, 1, 1, 3});
  DeviceTensor expert_out(*sim, DType::kBF16, {4, 5}, random_floats(20, 331));
  DeviceTensor out(*sim, DType::kBF16, {2, 5});
  DeviceTensor w(*sim, DType::kF32, {2, 2}, random_floats(4, 332));
  expect_error(
      [&] {
        sim->run(ops::ExpertCombine{.out = out.tensor(), .expert_out = expert_out.tensor(),
                                    .weights = w.tensor(), .position = repeated.tensor()});
      },
      {"trn2-sim expert_combine", "permutation"});
  DeviceTensor f32_ids(*sim, DType::kF32, {N, 1});
  DeviceTensor w1(*sim, DType::kF32, {N, 1});
  expect_error(
      [&] {
        sim->run(ops::TopKRouting{.expert_ids = f32_ids.tensor(), .weights = w1.tensor(),
                                  .logits = logits.tensor()});
      },
      {"trn2-sim topk_routing", "expert_ids", "int32"});
}

// ---- timing-only mode and gpt-oss-20b's decode shapes ----

// The forward ops of one gpt-oss-20b layer at a 32-row decode step, on a timing-only core: each
// runs natively; returns each op's simulated microseconds.
std::vector<std::pair<std::string, double>> time_decode_step(const std::string& device) {
  auto sim = backend::create_backend(device);
  const int N = 32, E = 32, k = 4, C = 2880, H = 64, KV = 8, hd = 64, A = N * k;
  const int64_t width = int64_t{H + 2 * KV} * hd;
  const DType act = sim->precision().activations;
  const int P = 4096;  // positions in the tables
  DeviceTensor proj(*sim, act, {N, width}, random_floats(N * width, 340));
  DeviceTensor cos(*sim, DType::kF32, {P, hd / 2}, random_floats(P * hd / 2, 341));
  DeviceTensor sin(*sim, DType::kF32, {P, hd / 2}, random_floats(P * hd / 2, 342));
  DeviceTensor positions(*sim, random_tokens(N, P, 343));
  DeviceTensor logits(*sim, act, {N, E}, random_floats(N * E, 344));
  DeviceTensor weights(*sim, DType::kF32, {N, k}, random_floats(A, 345));
  DeviceTensor expert_ids(*sim, random_tokens(A, E, 346));
  DeviceTensor order(*sim, DType::kI32, {A}), rows(*sim, DType::kI32, {A});
  DeviceTensor position(*sim, std::vector<int32_t>(A)), offsets(*sim, DType::kI32, {E + 1});
  DeviceTensor expert_out(*sim, act, {A, C}, random_floats(A * C, 347));
  DeviceTensor out(*sim, act, {N, C});
  DeviceTensor totals(*sim, DType::kF64, {2, E});
  totals.zero();
  const Tensor choices = expert_ids.tensor().reshape({N, k});
  std::vector<std::pair<std::string, std::function<void()>>> steps = {
      {"rope", [&] {
         sim->run(ops::Rope{.x = heads_view(proj.tensor(), 0, H + KV, hd), .cos = cos.tensor(),
                            .sin = sin.tensor(), .positions = positions.tensor()});
       }},
      {"topk_routing", [&] {
         sim->run(ops::TopKRouting{.expert_ids = choices, .weights = weights.tensor(),
                                   .logits = logits.tensor()});
       }},
      {"group_by_expert", [&] {
         sim->run(ops::GroupByExpert{.order = order.tensor(), .rows = rows.tensor(),
                                     .position = position.tensor(), .offsets = offsets.tensor(),
                                     .expert_ids = choices, .experts = E});
       }},
      {"expert_combine", [&] {
         sim->run(ops::ExpertCombine{.out = out.tensor(), .expert_out = expert_out.tensor(),
                                     .weights = weights.tensor(), .position = position.tensor()});
       }},
      {"router_load_stats", [&] {
         sim->run(ops::RouterLoadStats{.totals = totals.tensor(), .logits = logits.tensor(),
                                       .expert_ids = choices});
       }},
  };
  std::vector<std::pair<std::string, double>> times;
  for (const auto& [name, run] : steps) {
    const double before = backend::simulation_report(*sim)->total_ns;
    run();
    times.emplace_back(name, (backend::simulation_report(*sim)->total_ns - before) / 1000.0);
  }
  EXPECT_EQ(backend::simulation_report(*sim)->unsimulated_ops, Calls{}) << device;
  return times;
}

TEST(NeuronMoeOpsTiming, Gpt20bDecodeShapesRunNativelyInTimingOnlyMode) {
  // In timing-only mode the kernels write nothing: the grouped positions stay zeros, which are no
  // permutation (only a functional run checks that), and the combine gathers row 0 k times.
  const auto timing = time_decode_step("trn2-sim:timing");
  const auto functional = time_decode_step("trn2-sim");
  ASSERT_EQ(timing.size(), functional.size());
  for (size_t i = 0; i < timing.size(); ++i) {
    std::printf("  trn2 %-18s %7.2f us simulated (N = 32, gpt-oss-20b)\n", timing[i].first.c_str(),
                timing[i].second);
    EXPECT_GT(timing[i].second, 0.0) << timing[i].first;
    // The instruction stream does not depend on the values: the same time either way.
    EXPECT_DOUBLE_EQ(timing[i].second, functional[i].second) << timing[i].first;
  }
}

// Timing-only mode routes each token to k distinct experts uniformly (zero logits would send all
// to the same ones), and groups the assignments on the host so that later launches see valid
// offsets.
TEST(NeuronMoeOpsTiming, TimingOnlyRoutingIsUniformAndTheGroupingFollowsIt) {
  auto sim = backend::create_backend("trn2-sim:timing");
  const int N = 4096, E = 32, k = 4, A = N * k;
  DeviceTensor logits(*sim, sim->precision().activations, {N, E});
  logits.zero();
  DeviceTensor weights(*sim, DType::kF32, {N, k}), expert_ids(*sim, DType::kI32, {A});
  DeviceTensor order(*sim, DType::kI32, {A}), rows(*sim, DType::kI32, {A});
  DeviceTensor position(*sim, DType::kI32, {A}), offsets(*sim, DType::kI32, {E + 1});
  const Tensor choices = expert_ids.tensor().reshape({N, k});
  sim->run(ops::TopKRouting{.expert_ids = choices, .weights = weights.tensor(),
                            .logits = logits.tensor()});
  sim->run(ops::GroupByExpert{.order = order.tensor(), .rows = rows.tensor(),
                              .position = position.tensor(), .offsets = offsets.tensor(),
                              .expert_ids = choices, .experts = E});
  const std::vector<int32_t> ids = expert_ids.read_i32();
  const std::vector<float> w = weights.read();
  std::vector<int> counts(E, 0);
  for (int n = 0; n < N; ++n) {
    std::set<int32_t> distinct(ids.begin() + n * k, ids.begin() + (n + 1) * k);
    ASSERT_EQ(distinct.size(), static_cast<size_t>(k)) << "row " << n;
    for (int j = 0; j < k; ++j) {
      ASSERT_GE(ids[n * k + j], 0);
      ASSERT_LT(ids[n * k + j], E);
      ++counts[ids[n * k + j]];
      EXPECT_EQ(w[n * k + j], 0.25f);
    }
  }
  // 512 assignments per expert expected, a standard deviation of about 21.
  for (int e = 0; e < E; ++e) EXPECT_NEAR(counts[e], A / E, 100) << "expert " << e;
  const std::vector<int32_t> off = offsets.read_i32();
  for (int e = 0; e < E; ++e) EXPECT_EQ(off[e + 1] - off[e], counts[e]) << "expert " << e;
  EXPECT_EQ(off[E], A);
}

}  // namespace
}  // namespace switchyard
