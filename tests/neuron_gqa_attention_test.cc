// The training attention tile programs in gpt-oss's forms: grouped-query heads (groups of 1, 2, 4
// and 8 query heads per kv head), learned sinks, sliding windows narrower and wider than a key
// block, explicit scales, sequence lengths that are not multiples of 128, and q, k, v packed in
// one projection [N, (H + 2 KV) hd]. Forward and backward run against the CPU kernels in double
// on the same rounded inputs, in fp32 and bf16; the backward pass accumulates into dqkv and
// dsinks. Then the cut into units of heads, including slices of one group when SBUF is short,
// and the trn2-sim backend running gpt-oss's attention ops with nothing left to the host.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/simulated_span.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/neuron/attention_kernel.h"
#include "backend/neuron/attention_plan.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "neuron/config.h"
#include "random_data.h"
#include "relative_error.h"

namespace switchyard::backend::neuron {
namespace {

using ::switchyard::neuron::trn2_config;

struct Case {
  int B, T, H, KV, hd, window;
  bool sinks;
  float scale = 0.0f;  // 0: 1 / sqrt(hd)
  AttentionShape shape() const {
    return {.batch = B, .seq = T, .heads = H, .kv_heads = KV, .head_dim = hd, .window = window,
            .scale = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(hd))};
  }
  int64_t rows() const { return int64_t{B} * T; }
  int64_t width() const { return int64_t{H + 2 * KV} * hd; }
  std::string describe() const {
    char text[160];
    std::snprintf(text, sizeof text, "B=%d T=%d H=%d KV=%d hd=%d window=%d%s scale=%.4g", B, T, H,
                  KV, hd, window, sinks ? " sinks" : "", shape().scale);
    return text;
  }
};

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// ---- the CPU kernels in double on the packed projection

cpu::AttentionGeometry geometry(const Case& c) {
  return {.batch = c.B, .seq = c.T, .heads = c.H, .kv_heads = c.KV, .head_dim = c.hd,
          .window = c.window, .ldq = c.width(), .ldk = c.width(), .ldv = c.width(),
          .ldo = int64_t{c.H} * c.hd};
}

const float* sinks_or_null(const Case& c, const std::vector<float>& sinks) {
  return c.sinks ? sinks.data() : nullptr;
}

void reference_forward(double* out, double* att, const double* qkv,
                       const std::vector<float>& sinks, const Case& c) {
  cpu::attention_forward<double>(out, att, qkv, qkv + int64_t{c.H} * c.hd,
                                 qkv + int64_t{c.H + c.KV} * c.hd, sinks_or_null(c, sinks),
                                 geometry(c), c.shape().scale);
}

void reference_backward(double* dqkv, float* dsinks, const double* dout, const double* qkv,
                        const std::vector<float>& sinks, const Case& c) {
  std::vector<double> out(static_cast<size_t>(c.rows()) * c.H * c.hd);
  std::vector<double> att(static_cast<size_t>(c.B) * c.H * c.T * c.T), scratch(att.size());
  reference_forward(out.data(), att.data(), qkv, sinks, c);
  const int64_t k = int64_t{c.H} * c.hd, v = int64_t{c.H + c.KV} * c.hd;
  cpu::attention_backward<double>(dqkv, dqkv + k, dqkv + v, c.sinks ? dsinks : nullptr,
                                  scratch.data(), dout, att.data(), qkv, qkv + k, qkv + v,
                                  sinks_or_null(c, sinks), geometry(c), c.shape().scale);
}

// lse[b, h, t] = log(exp(sink_h) + sum over keys (t - window, t] of exp(scale q_t . k_j)),
// straight from the definition.
std::vector<double> reference_lse(const std::vector<double>& qkv, const std::vector<float>& sinks,
                                  const Case& c) {
  const int64_t W = c.width();
  const double scale = c.shape().scale;
  std::vector<double> lse(static_cast<size_t>(c.B) * c.H * c.T);
  for (int b = 0; b < c.B; ++b) {
    for (int h = 0; h < c.H; ++h) {
      const int64_t kv = h / (c.H / c.KV);
      for (int t = 0; t < c.T; ++t) {
        std::vector<double> terms;
        if (c.sinks) terms.push_back(sinks[h]);
        for (int j = c.window > 0 ? std::max(0, t - c.window + 1) : 0; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < c.hd; ++d) {
            dot += qkv[(int64_t{b} * c.T + t) * W + int64_t{h} * c.hd + d] *
                   qkv[(int64_t{b} * c.T + j) * W + (c.H + kv) * c.hd + d];
          }
          terms.push_back(dot * scale);
        }
        const double max = *std::max_element(terms.begin(), terms.end());
        double sum = 0;
        for (double x : terms) sum += std::exp(x - max);
        lse[(int64_t{b} * c.H + h) * c.T + t] = max + std::log(sum);
      }
    }
  }
  return lse;
}

// ---- kernel runs

struct Errors {
  double out = 0, lse = 0, dqkv = 0, dsinks = 0;
};

// The tensors of one case on a trn2 core: the packed projection, dout, the sinks (when the case
// has them) and the gradients pre-filled with non-zero values (the backward pass accumulates).
struct Problem {
  const Case& c;
  NeuronCore core{trn2_config()};
  View qkv, dqkv, out, dout, lse, sinks, dsinks;
  std::vector<float> sink_values;

  Problem(const Case& cs, DType hbm, uint64_t seed) : c(cs) {
    const int64_t N = c.rows(), C = int64_t{c.H} * c.hd;
    qkv = core.hbm_alloc({N, c.width()}, hbm, "qkv");
    dqkv = core.hbm_alloc({N, c.width()}, hbm, "dqkv");
    out = core.hbm_alloc({N, C}, hbm, "out");
    dout = core.hbm_alloc({N, C}, hbm, "dout");
    lse = core.hbm_alloc({N * c.H}, DType::kF32, "lse");
    core.write(qkv, normal_floats(static_cast<size_t>(qkv.elements()), seed, 1.0f));
    core.write(dout, normal_floats(static_cast<size_t>(dout.elements()), seed + 1, 1.0f));
    core.write(dqkv, normal_floats(static_cast<size_t>(dqkv.elements()), seed + 2, 0.5f));
    sink_values = normal_floats(static_cast<size_t>(c.H), seed + 3, 1.0f);
    if (c.sinks) {
      sinks = core.hbm_alloc({1, int64_t{c.H}}, DType::kF32, "sinks");
      dsinks = core.hbm_alloc({1, int64_t{c.H}}, DType::kF32, "dsinks");
      core.write(sinks, sink_values);
      core.write(dsinks, normal_floats(static_cast<size_t>(c.H), seed + 4, 0.5f));
    }
  }

  // Runs `kernel` with only `left` bytes per SBUF partition free (all of SBUF when 0): less
  // room for its units of heads.
  template <typename Kernel>
  void with_sbuf_left(int64_t left, Kernel&& kernel) {
    const int64_t taken = left > 0 ? core.sbuf_largest_free() - left : 0;
    const View blocker =
        taken > 0 ? core.sbuf_alloc(kPartitions, {taken / 4}, DType::kF32, "blocker") : View();
    kernel();
    if (taken > 0) core.release(blocker);
  }
};

// Forward; with `sbuf_left` > 0 the kernel finds only that many bytes per SBUF partition free.
Errors run_forward(const Case& c, DType hbm, DType compute, uint64_t seed,
                   int64_t sbuf_left = 0) {
  Problem p(c, hbm, seed);
  p.with_sbuf_left(sbuf_left, [&] {
    attention_forward(p.core, p.out, p.lse, p.qkv, p.sinks, c.shape(), compute);
  });
  const std::vector<double> x = to_double(p.core.read(p.qkv));
  std::vector<double> ref(static_cast<size_t>(p.out.elements()));
  std::vector<double> att(static_cast<size_t>(c.B) * c.H * c.T * c.T);
  reference_forward(ref.data(), att.data(), x.data(), p.sink_values, c);
  Errors e;
  e.out = relative_error(p.core.read(p.out), ref);
  e.lse = relative_error(p.core.read(p.lse), reference_lse(x, p.sink_values, c));
  std::printf("forward %s %s: relative error out %.2e, lse %.2e\n", c.describe().c_str(),
              nki_dtype_name(compute), e.out, e.lse);
  return e;
}

// Backward given the exact lse (from double precision), or the kernel forward's with
// `kernel_lse`; with `sbuf_left` > 0 the backward kernel finds only that many bytes per SBUF
// partition free.
Errors run_backward(const Case& c, DType hbm, DType compute, uint64_t seed,
                    bool kernel_lse = false, int64_t sbuf_left = 0) {
  Problem p(c, hbm, seed);
  const std::vector<double> x = to_double(p.core.read(p.qkv));
  const std::vector<double> dy = to_double(p.core.read(p.dout));
  std::vector<double> ref = to_double(p.core.read(p.dqkv));
  std::vector<float> ref_dsinks = c.sinks ? p.core.read(p.dsinks) : std::vector<float>();
  if (kernel_lse) {
    attention_forward(p.core, p.out, p.lse, p.qkv, p.sinks, c.shape(), compute);
  } else {
    const std::vector<double> l = reference_lse(x, p.sink_values, c);
    p.core.write(p.lse, std::vector<float>(l.begin(), l.end()));
  }
  p.with_sbuf_left(sbuf_left, [&] {
    attention_backward(p.core, p.dqkv, p.dsinks, p.dout, p.qkv, p.lse, p.sinks, c.shape(),
                       compute);
  });

  reference_backward(ref.data(), ref_dsinks.data(), dy.data(), x.data(), p.sink_values, c);
  Errors e;
  e.dqkv = relative_error(p.core.read(p.dqkv), ref);
  if (c.sinks) e.dsinks = relative_error(p.core.read(p.dsinks), ref_dsinks);
  std::printf("backward %s %s: relative error dqkv %.2e, dsinks %.2e\n", c.describe().c_str(),
              nki_dtype_name(compute), e.dqkv, e.dsinks);
  return e;
}

// fp32 tiles: what fp32 sums in another order allow.
void expect_fp32(const Case& c, uint64_t seed) {
  const Errors f = run_forward(c, DType::kF32, DType::kF32, seed);
  EXPECT_LT(f.out, 2e-6);
  EXPECT_LT(f.lse, 2e-6);
  const Errors b = run_backward(c, DType::kF32, DType::kF32, seed + 10);
  EXPECT_LT(b.dqkv, 2e-6);
  EXPECT_LT(b.dsinks, 2e-6);
}

// bf16 tensors and tiles: bf16's 8 bits of mantissa.
void expect_bf16(const Case& c, uint64_t seed) {
  const Errors f = run_forward(c, DType::kBF16, DType::kBF16, seed);
  EXPECT_LT(f.out, 1e-2);
  EXPECT_LT(f.lse, 1e-2);
  const Errors b = run_backward(c, DType::kBF16, DType::kBF16, seed + 10, true);
  EXPECT_LT(b.dqkv, 1e-2);
  EXPECT_LT(b.dsinks, 2e-2);
}

TEST(NeuronGqaAttention, MultiHeadWithSinksAndExplicitScaleFp32) {
  expect_fp32({.B = 2, .T = 200, .H = 3, .KV = 3, .hd = 16, .window = 0, .sinks = true,
               .scale = 0.3f},
              1);
}

TEST(NeuronGqaAttention, PairsOfHeadsNarrowWindowSinksFp32) {
  // gpt-oss-tiny's form: 4 query heads over 2 kv heads, a window of 64 (under a chunk of 128).
  expect_fp32({.B = 2, .T = 300, .H = 4, .KV = 2, .hd = 32, .window = 64, .sinks = true}, 2);
}

TEST(NeuronGqaAttention, GroupsOfEightTinyWindowFp32) {
  // The published models' group of 8 and the reference checkpoint's window of 8.
  expect_fp32({.B = 1, .T = 333, .H = 8, .KV = 1, .hd = 64, .window = 8, .sinks = true}, 3);
}

TEST(NeuronGqaAttention, WindowsWiderThanAKeyBlockFp32) {
  // 600 > 512 keys: the window's start crosses blocks far from the diagonal, no sinks.
  expect_fp32({.B = 1, .T = 700, .H = 2, .KV = 1, .hd = 16, .window = 600, .sinks = false}, 4);
  // 200: the start crosses the block of the diagonal or the one before it.
  expect_fp32({.B = 1, .T = 600, .H = 8, .KV = 2, .hd = 16, .window = 200, .sinks = true}, 5);
}

TEST(NeuronGqaAttention, GroupsOfEightWindowSinksBf16) {
  expect_bf16({.B = 2, .T = 333, .H = 8, .KV = 1, .hd = 64, .window = 128, .sinks = true}, 6);
}

TEST(NeuronGqaAttention, TwoKeyBlocksFromTheSinkBf16) {
  // No window over 700 positions: the online softmax starts at the sink and rescales once.
  expect_bf16({.B = 1, .T = 700, .H = 4, .KV = 2, .hd = 32, .window = 0, .sinks = true}, 7);
}

TEST(NeuronGqaAttention, SinksWithoutTheirGradient) {
  // dsinks absent: the sinks still shape the probabilities; only dqkv is produced.
  const Case c{.B = 1, .T = 150, .H = 4, .KV = 2, .hd = 16, .window = 0, .sinks = true};
  Problem p(c, DType::kF32, 40);
  const std::vector<double> x = to_double(p.core.read(p.qkv));
  const std::vector<double> dy = to_double(p.core.read(p.dout));
  std::vector<double> ref = to_double(p.core.read(p.dqkv));
  std::vector<float> unused(static_cast<size_t>(c.H), 0.0f);
  attention_forward(p.core, p.out, p.lse, p.qkv, p.sinks, c.shape(), DType::kF32);
  attention_backward(p.core, p.dqkv, View(), p.dout, p.qkv, p.lse, p.sinks, c.shape(),
                     DType::kF32);
  reference_backward(ref.data(), unused.data(), dy.data(), x.data(), p.sink_values, c);
  EXPECT_LT(relative_error(p.core.read(p.dqkv), ref), 2e-6);
}

// ---- the cut into units of heads

TEST(NeuronGqaAttention, UnitsAreWholeGroupsOrSlicesOfOne) {
  using attention_detail::HeadUnit;
  using attention_detail::plan_units;
  const AttentionShape s{.batch = 2, .seq = 128, .heads = 16, .kv_heads = 2, .head_dim = 64,
                         .window = 0, .scale = 0.125f};
  const attention_detail::HeadBytes bytes{.per_q = 100, .per_kv = 300};
  // Two groups (2 x (8 x 100 + 300) = 2,200 bytes each, double buffered) fit: one unit per
  // batch row, loading both kv heads.
  std::vector<HeadUnit> units = plan_units(s, bytes, 4400);
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[1].b, 1);
  EXPECT_EQ(units[1].h0, 0);
  EXPECT_EQ(units[1].hn, 16);
  EXPECT_EQ(units[1].kvn, 2);
  EXPECT_TRUE(units[1].first_of_set && units[1].last_of_set);
  // One group fits: a unit per kv head.
  units = plan_units(s, bytes, 4399);
  ASSERT_EQ(units.size(), 4u);
  EXPECT_EQ(units[3].h0, 8);
  EXPECT_EQ(units[3].kv0, 1);
  EXPECT_EQ(units[3].kv_set, 3);
  // Three query heads beside a kv head (2 x (3 x 100 + 300) = 1,200): slices of 3, 3 and 2 that
  // share one load of their kv head.
  units = plan_units(s, bytes, 1299);
  ASSERT_EQ(units.size(), 12u);
  const std::vector<int64_t> h0{8, 11, 14}, hn{3, 3, 2};
  for (int i = 0; i < 3; ++i) {
    const HeadUnit& u = units[3 + i];
    EXPECT_EQ(u.b, 0);
    EXPECT_EQ(u.h0, h0[i]);
    EXPECT_EQ(u.hn, hn[i]);
    EXPECT_EQ(u.kv0, 1);
    EXPECT_EQ(u.kvn, 1);
    EXPECT_EQ(u.kv_set, 1);
    EXPECT_EQ(u.first_of_set, i == 0);
    EXPECT_EQ(u.last_of_set, i == 2);
  }
  EXPECT_EQ(units[11].kv_set, 3);
  // Not one query head with its kv head.
  EXPECT_TRUE(plan_units(s, bytes, 799).empty());
}

TEST(NeuronGqaAttention, SlicesOfAGroupWhenSbufIsShort) {
  // With most of SBUF taken, a group of 4 query heads no longer fits beside its kv head (the
  // room left holds slices of 2): the slices share one load of the kv head's tiles, and in the
  // backward pass accumulate its dK and dV across units.
  const Case c{.B = 2, .T = 200, .H = 8, .KV = 2, .hd = 32, .window = 48, .sinks = true};
  const Errors f = run_forward(c, DType::kF32, DType::kF32, 50, 32 * 1024);
  EXPECT_LT(f.out, 2e-6);
  EXPECT_LT(f.lse, 2e-6);
  const Errors b = run_backward(c, DType::kF32, DType::kF32, 50, false, 30 * 1024);
  EXPECT_LT(b.dqkv, 2e-6);
  EXPECT_LT(b.dsinks, 2e-6);
}

TEST(NeuronGqaAttention, BadShapesAreErrors) {
  NeuronCore core(trn2_config());
  const Case c{.B = 2, .T = 13, .H = 4, .KV = 2, .hd = 8, .window = 0, .sinks = true};
  View qkv = core.hbm_alloc({26, c.width()}, DType::kF32, "qkv");
  View out = core.hbm_alloc({26, 32}, DType::kF32, "out");
  View lse = core.hbm_alloc({104}, DType::kF32, "lse");
  View sinks = core.hbm_alloc({1, 3}, DType::kF32, "sinks");
  AttentionShape s = c.shape();
  s.kv_heads = 3;
  expect_error([&] { attention_forward(core, out, lse, qkv, View(), s, DType::kF32); },
               {"attention_forward", "heads = 4", "kv_heads = 3"});
  expect_error([&] { attention_forward(core, out, lse, qkv, sinks, c.shape(), DType::kF32); },
               {"attention_forward", "sinks", "4 values"});
  s = c.shape();
  s.window = -1;
  expect_error([&] { attention_forward(core, out, lse, qkv, View(), s, DType::kF32); },
               {"window = -1"});
  s = c.shape();
  s.head_dim = 130;
  expect_error([&] { attention_forward(core, out, lse, qkv, View(), s, DType::kF32); },
               {"head_dim = 130", "128"});
  View narrow = core.hbm_alloc({26, 3 * 32}, DType::kF32, "narrow");
  expect_error(
      [&] {
        attention_backward(core, narrow, View(), out, qkv, lse, View(), c.shape(), DType::kF32);
      },
      {"attention_backward", "dqkv is [26, 96], expected [26, 64]"});
}

// ---- through the trn2-sim backend: gpt-oss's ops with nothing on the host

// gpt-oss attention forward and backward on `device` and on the CPU backend, the same values on
// both; returns the simulated ns of the two ops and checks results and the host fallback count.
double run_on_backend(const std::string& device, const Case& c, double tol) {
  auto sim = create_backend(device);
  auto cpu = create_backend("cpu");
  const DType act = sim->precision().activations;
  const ops::AttentionSpec spec{.heads = c.H, .kv_heads = c.KV, .head_dim = c.hd,
                                .window = c.window, .scale = c.scale};
  const int64_t N = c.rows(), C = int64_t{c.H} * c.hd, W = c.width();
  const size_t record = sim->attention_record_floats(spec, c.B, c.T);
  const size_t cpu_floats = cpu->attention_record_floats(spec, c.B, c.T);
  Pair qkv(*sim, *cpu, act, {N, W}, normal_floats(static_cast<size_t>(N * W), 60, 1.0f));
  Pair sinks(*sim, *cpu, DType::kF32, {c.H}, normal_floats(static_cast<size_t>(c.H), 61, 1.0f));
  Pair dsinks(*sim, *cpu, DType::kF32, {c.H}, normal_floats(static_cast<size_t>(c.H), 62, 0.5f));
  Pair out(*sim, *cpu, act, {N, C}, std::vector<float>(static_cast<size_t>(N * C), 0.0f));
  Pair dout(*sim, *cpu, act, {N, C}, normal_floats(static_cast<size_t>(N * C), 63, 1.0f));
  Pair dqkv(*sim, *cpu, act, {N, W}, normal_floats(static_cast<size_t>(N * W), 64, 0.5f));
  DeviceTensor sim_record(*sim, DType::kF32, {static_cast<int64_t>(record)});
  DeviceTensor cpu_record(*cpu, DType::kF32, {static_cast<int64_t>(cpu_floats)});
  DeviceTensor cpu_scratch(*cpu, DType::kF32, {static_cast<int64_t>(cpu_floats)});
  auto run = [&](Backend& b, bool on_sim) {
    auto pick = [&](const Pair& p) { return on_sim ? p.gpu.tensor() : p.cpu.tensor(); };
    const Tensor projection = pick(qkv), gradient = pick(dqkv);
    const Tensor rec = on_sim ? sim_record.tensor() : cpu_record.tensor();
    b.run(ops::Attention{.out = pick(out), .record = rec,
                         .q = heads_view(projection, 0, c.H, c.hd),
                         .k = heads_view(projection, C, c.KV, c.hd),
                         .v = heads_view(projection, C + int64_t{c.KV} * c.hd, c.KV, c.hd),
                         .sinks = pick(sinks), .batch = c.B, .seq = c.T, .spec = spec});
    b.run(ops::AttentionBackward{
        .dq = heads_view(gradient, 0, c.H, c.hd), .dk = heads_view(gradient, C, c.KV, c.hd),
        .dv = heads_view(gradient, C + int64_t{c.KV} * c.hd, c.KV, c.hd),
        .dsinks = pick(dsinks), .scratch = on_sim ? Tensor() : cpu_scratch.tensor(),
        .dout = pick(dout), .out = pick(out), .record = rec,
        .q = heads_view(projection, 0, c.H, c.hd), .k = heads_view(projection, C, c.KV, c.hd),
        .v = heads_view(projection, C + int64_t{c.KV} * c.hd, c.KV, c.hd), .sinks = pick(sinks),
        .batch = c.B, .seq = c.T, .spec = spec});
  };
  const SimulationReport before = *simulation_report(*sim);
  run(*sim, true);
  run(*cpu, false);
  const SimulationReport after = *simulation_report(*sim);
  EXPECT_TRUE(after.unsimulated_ops.empty()) << describe_unsimulated(after.unsimulated_ops);
  EXPECT_LT(relative_error(out.gpu.read(), out.cpu.read()), tol) << device;
  EXPECT_LT(relative_error(dqkv.gpu.read(), dqkv.cpu.read()), tol) << device;
  EXPECT_LT(relative_error(dsinks.gpu.read(), dsinks.cpu.read()), 2 * tol) << device;
  return after.total_ns - before.total_ns;
}

TEST(NeuronGqaAttention, GptOssOpsRunOnTheSimulatedCore) {
  // The parity checkpoint's layers: sliding (window 8) and full, 4 query heads over 2.
  for (int window : {8, 0}) {
    const Case c{.B = 2, .T = 50, .H = 4, .KV = 2, .hd = 16, .window = window, .sinks = true};
    EXPECT_GT(run_on_backend("trn2-sim-fp32", c, 1e-5), 0.0);
  }
}

TEST(NeuronGqaAttention, GptOssTinyTrainingAttentionTime) {
  // gpt-oss-tiny's attention over a training batch (4 windows of 256 tokens, 4 query heads over
  // 2 kv heads of 32, sinks), bf16 on trn2: simulated time of forward + backward per layer kind
  // (printed, not asserted).
  for (int window : {64, 0}) {
    const Case c{.B = 4, .T = 256, .H = 4, .KV = 2, .hd = 32, .window = window, .sinks = true};
    const double ns = run_on_backend("trn2-sim", c, 2e-2);
    std::printf("gpt-oss-tiny attention forward + backward, %s layer, B=4 T=256, trn2 bf16: "
                "simulated %.2f us\n",
                window > 0 ? "sliding (64)" : "full", ns / 1e3);
  }
}

}  // namespace
}  // namespace switchyard::backend::neuron
