// The linear layer's tile programs (linear_forward / linear_backward) against the CPU kernels in
// double: fp32 end to end must agree to fp32 summation order, bf16 activations with bf16 matmul
// operands to about 1e-2. Odd shapes exercise every edge tile; larger ones the streamed paths
// (an operand too big to stay in SBUF, several output blocks, long PSUM accumulation groups).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/neuron/linear_kernel.h"
#include "core/rng.h"
#include "expect_error.h"
#include "relative_error.h"
#include "neuron/config.h"

namespace switchyard::backend::neuron {
namespace {

using ::switchyard::neuron::CoreConfig;
using ::switchyard::neuron::RunStats;
using ::switchyard::neuron::trn1_config;
using ::switchyard::neuron::trn2_config;

// Uniform values with standard deviation `scale` (cheaper than normals for the big tensors).
std::vector<float> random_values(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  const float width = scale * 2.0f * std::sqrt(3.0f);
  for (float& x : v) x = width * (rng.uniform() - 0.5f);
  return v;
}

View upload(NeuronCore& core, std::vector<int64_t> shape, DType dtype,
            const std::vector<float>& values, const char* name) {
  View v = core.hbm_alloc(shape, dtype, name);
  core.write(v, values);
  return v;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// One linear layer's tensors on the host, and the CPU reference of its passes in double.
struct Layer {
  int N, C, OC;
  bool bias;
  std::vector<float> inp, weight, b, dout;

  Layer(int n, int c, int oc, bool with_bias, uint64_t seed)
      : N(n), C(c), OC(oc), bias(with_bias) {
    inp = random_values(int64_t{N} * C, seed);
    weight = random_values(int64_t{OC} * C, seed + 1, 0.05f);
    if (bias) b = random_values(OC, seed + 2, 0.5f);
    dout = random_values(int64_t{N} * OC, seed + 3);
  }
  std::vector<double> forward() const {
    std::vector<double> out(static_cast<size_t>(N) * OC), in = widen(inp), w = widen(weight),
                                                           bb = widen(b);
    cpu::matmul_forward<double>(out.data(), in.data(), w.data(), bias ? bb.data() : nullptr, N, C,
                                OC);
    return out;
  }
  // Gradients added to the given starting values.
  void backward(std::vector<double>* dinp, std::vector<double>* dweight,
                std::vector<double>* dbias) const {
    std::vector<double> in = widen(inp), w = widen(weight), d = widen(dout);
    cpu::matmul_backward<double>(dinp ? dinp->data() : nullptr, dweight->data(),
                                 dbias ? dbias->data() : nullptr, d.data(), in.data(), w.data(), N,
                                 C, OC);
  }
};

struct Dtypes {
  DType activations;  // inp, out, dout, dinp in HBM
  DType compute;
};
constexpr Dtypes kFp32{DType::kF32, DType::kF32};
constexpr Dtypes kBf16{DType::kBF16, DType::kBF16};

double forward_error(const CoreConfig& config, const Layer& layer, Dtypes dt) {
  NeuronCore core(config);
  View inp = upload(core, {layer.N, layer.C}, dt.activations, layer.inp, "inp");
  View weight = upload(core, {layer.OC, layer.C}, DType::kF32, layer.weight, "weight");
  View bias = layer.bias ? upload(core, {layer.OC}, DType::kF32, layer.b, "bias") : View();
  View out = core.hbm_alloc({layer.N, layer.OC}, dt.activations, "out");
  linear_forward(core, out, inp, weight, bias, dt.compute);
  return relative_error(core.read(out), layer.forward());
}

struct BackwardErrors {
  double dinp = 0, dweight = 0, dbias = 0;
};

// Gradients start from random values (the kernels accumulate). With_dinp / with_dbias false
// pass empty Views.
BackwardErrors backward_errors(const CoreConfig& config, const Layer& layer, Dtypes dt,
                               bool with_dinp = true, bool with_dbias = true) {
  NeuronCore core(config);
  View dout = upload(core, {layer.N, layer.OC}, dt.activations, layer.dout, "dout");
  View inp = upload(core, {layer.N, layer.C}, dt.activations, layer.inp, "inp");
  View weight = upload(core, {layer.OC, layer.C}, DType::kF32, layer.weight, "weight");
  std::vector<float> dinp0 = random_values(int64_t{layer.N} * layer.C, 91);
  std::vector<float> dw0 = random_values(int64_t{layer.OC} * layer.C, 92, 0.1f);
  std::vector<float> db0 = random_values(layer.OC, 93);
  View dinp = with_dinp ? upload(core, {layer.N, layer.C}, dt.activations, dinp0, "dinp") : View();
  View dweight = upload(core, {layer.OC, layer.C}, DType::kF32, dw0, "dweight");
  View dbias = with_dbias ? upload(core, {layer.OC}, DType::kF32, db0, "dbias") : View();
  // The reference starts from the starting values as stored (bf16 dinp is rounded).
  std::vector<double> want_dinp = with_dinp ? widen(core.read(dinp)) : std::vector<double>();
  std::vector<double> want_dw = widen(dw0), want_db = widen(db0);
  layer.backward(with_dinp ? &want_dinp : nullptr, &want_dw, with_dbias ? &want_db : nullptr);
  linear_backward(core, dinp, dweight, dbias, dout, inp, weight, dt.compute);
  BackwardErrors e;
  if (with_dinp) e.dinp = relative_error(core.read(dinp), want_dinp);
  // Accumulation on top of large starting values would hide errors in the gradient: compare
  // the increments.
  auto increment_error = [](const std::vector<float>& got, const std::vector<float>& start,
                            const std::vector<double>& want) {
    std::vector<float> g(got.size());
    std::vector<double> w(want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      g[i] = got[i] - start[i];
      w[i] = want[i] - start[i];
    }
    return relative_error(g, w);
  };
  e.dweight = increment_error(core.read(dweight), dw0, want_dw);
  if (with_dbias) e.dbias = increment_error(core.read(dbias), db0, want_db);
  return e;
}

TEST(NeuronLinearKernel, ForwardOddShapesFp32) {
  EXPECT_LT(forward_error(trn2_config(), Layer(39, 54, 162, true, 1), kFp32), 1e-6);
  EXPECT_LT(forward_error(trn2_config(), Layer(39, 54, 211, false, 2), kFp32), 1e-6);
  EXPECT_LT(forward_error(trn1_config(), Layer(1, 7, 3, true, 3), kFp32), 1e-6);
}

TEST(NeuronLinearKernel, ForwardOddShapesBf16) {
  EXPECT_LT(forward_error(trn2_config(), Layer(39, 54, 162, true, 4), kBf16), 1e-2);
  EXPECT_LT(forward_error(trn2_config(), Layer(39, 54, 211, false, 5), kBf16), 1e-2);
}

TEST(NeuronLinearKernel, ForwardBiasKeepsFp32PrecisionInBf16) {
  // With tiny weights the output is almost all bias: the hi + lo rows keep it far more precise
  // than one bf16 row (2^-9 relative) would, and bf16 output rounding dominates.
  Layer layer(20, 30, 40, true, 6);
  for (float& w : layer.weight) w *= 1e-4f;
  NeuronCore core(trn2_config());
  View inp = upload(core, {20, 30}, DType::kBF16, layer.inp, "inp");
  View weight = upload(core, {40, 30}, DType::kF32, layer.weight, "weight");
  View bias = upload(core, {40}, DType::kF32, layer.b, "bias");
  View out = core.hbm_alloc({20, 40}, DType::kF32, "out");  // fp32 output: no final rounding
  linear_forward(core, out, inp, weight, bias, DType::kBF16);
  EXPECT_LT(relative_error(core.read(out), layer.forward()), 2e-5);
}

TEST(NeuronLinearKernel, ForwardMultiTileAndStreamedWeight) {
  // 3 row tiles x 3 k-tiles x 3 column chunks, weight resident.
  EXPECT_LT(forward_error(trn2_config(), Layer(300, 300, 1100, true, 7), kFp32), 1e-6);
  // weight^T (2 k-tiles x 8000 fp32 per partition) too big to stay: streamed in blocks.
  EXPECT_LT(forward_error(trn2_config(), Layer(150, 200, 8000, false, 8), kFp32), 1e-6);
  EXPECT_LT(forward_error(trn1_config(), Layer(70, 130, 5000, true, 9), kBf16), 1e-2);
}

TEST(NeuronLinearKernel, BackwardOddShapes) {
  for (const Dtypes& dt : {kFp32, kBf16}) {
    const double tol = dt.compute == DType::kF32 ? 1e-6 : 1e-2;
    BackwardErrors e = backward_errors(trn2_config(), Layer(39, 54, 162, true, 10), dt);
    EXPECT_LT(e.dinp, tol);
    EXPECT_LT(e.dweight, tol);
    EXPECT_LT(e.dbias, tol);
    e = backward_errors(trn2_config(), Layer(39, 54, 211, false, 11), dt, true, false);
    EXPECT_LT(e.dinp, tol);
    EXPECT_LT(e.dweight, tol);
  }
}

TEST(NeuronLinearKernel, BackwardMultiTileAndStreamedOperands) {
  // Several token tiles (K of dweight), column chunks and output blocks; resident operands.
  BackwardErrors e = backward_errors(trn2_config(), Layer(300, 700, 600, true, 12), kFp32);
  EXPECT_LT(e.dinp, 1e-6);
  EXPECT_LT(e.dweight, 1e-6);
  EXPECT_LT(e.dbias, 1e-6);
  // dout^T and dout too big to stay in SBUF (an LM head in miniature): a 63-tile accumulation
  // group for dinp, dout streamed for dweight; with and without bias.
  e = backward_errors(trn2_config(), Layer(200, 64, 8000, true, 13), kFp32);
  EXPECT_LT(e.dinp, 1e-5);  // fp32 sums over K = 8000
  EXPECT_LT(e.dweight, 1e-6);
  EXPECT_LT(e.dbias, 1e-6);
  e = backward_errors(trn1_config(), Layer(130, 96, 7000, false, 14), kBf16, true, false);
  EXPECT_LT(e.dinp, 1e-2);
  EXPECT_LT(e.dweight, 1e-2);
}

TEST(NeuronLinearKernel, BackwardWithoutDinpLeavesOnlyWeightGradients) {
  BackwardErrors e = backward_errors(trn2_config(), Layer(39, 54, 162, true, 15), kFp32, false);
  EXPECT_LT(e.dweight, 1e-6);
  EXPECT_LT(e.dbias, 1e-6);
}

TEST(NeuronLinearKernel, BackwardAccumulatesTwice) {
  // Two calls add the gradient twice on top of the starting values.
  Layer layer(50, 40, 30, true, 16);
  NeuronCore core(trn2_config());
  View dout = upload(core, {50, 30}, DType::kF32, layer.dout, "dout");
  View inp = upload(core, {50, 40}, DType::kF32, layer.inp, "inp");
  View weight = upload(core, {30, 40}, DType::kF32, layer.weight, "weight");
  std::vector<float> ones_dinp(50 * 40, 1.0f), ones_dw(30 * 40, 2.0f), ones_db(30, 3.0f);
  View dinp = upload(core, {50, 40}, DType::kF32, ones_dinp, "dinp");
  View dweight = upload(core, {30, 40}, DType::kF32, ones_dw, "dweight");
  View dbias = upload(core, {30}, DType::kF32, ones_db, "dbias");
  for (int i = 0; i < 2; ++i)
    linear_backward(core, dinp, dweight, dbias, dout, inp, weight, DType::kF32);
  std::vector<double> want_dinp = widen(ones_dinp), want_dw = widen(ones_dw),
                      want_db = widen(ones_db);
  for (int i = 0; i < 2; ++i) layer.backward(&want_dinp, &want_dw, &want_db);
  EXPECT_LT(relative_error(core.read(dinp), want_dinp), 1e-6);
  EXPECT_LT(relative_error(core.read(dweight), want_dw), 1e-6);
  EXPECT_LT(relative_error(core.read(dbias), want_db), 1e-6);
}

TEST(NeuronLinearKernel, BadShapesAreClearErrors) {
  NeuronCore core(trn2_config());
  View inp = core.hbm_alloc({8, 16}, DType::kF32, "inp");
  View weight = core.hbm_alloc({24, 16}, DType::kF32, "weight");
  View out = core.hbm_alloc({8, 24}, DType::kF32, "out");
  View bias = core.hbm_alloc({24}, DType::kF32, "bias");
  View wrong_weight = core.hbm_alloc({24, 15}, DType::kF32, "wrong_weight");
  View wrong_out = core.hbm_alloc({8, 23}, DType::kF32, "wrong_out");
  View wrong_bias = core.hbm_alloc({25}, DType::kF32, "wrong_bias");
  View ints = core.hbm_alloc({8, 16}, DType::kI32, "ints");
  View three_d = core.hbm_alloc({8, 4, 4}, DType::kF32, "three_d");
  expect_error([&] { linear_forward(core, out, inp, wrong_weight, bias, DType::kF32); },
               {"linear_forward", "weight is 24x15", "C = 16"});
  expect_error([&] { linear_forward(core, wrong_out, inp, weight, bias, DType::kF32); },
               {"linear_forward", "out is 8x23", "[N, OC] = 8x24"});
  expect_error([&] { linear_forward(core, out, inp, weight, wrong_bias, DType::kF32); },
               {"bias is 1x25", "[1, OC] = 1x24"});
  expect_error([&] { linear_forward(core, out, ints, weight, bias, DType::kF32); },
               {"inp must be a float tensor"});
  expect_error([&] { linear_forward(core, out, three_d, weight, bias, DType::kF32); },
               {"inp must be a 2-D HBM tensor"});
  expect_error([&] { linear_forward(core, out, inp, weight, bias, DType::kF16); },
               {"compute dtype must be bfloat16 or float32"});
  expect_error([&] { linear_forward(core, out, View(), weight, bias, DType::kF32); },
               {"inp is missing"});

  View dout = core.hbm_alloc({8, 24}, DType::kF32, "dout");
  View dinp = core.hbm_alloc({8, 16}, DType::kF32, "dinp");
  View dweight = core.hbm_alloc({24, 16}, DType::kF32, "dweight");
  View short_inp = core.hbm_alloc({7, 16}, DType::kF32, "short_inp");
  expect_error(
      [&] { linear_backward(core, dinp, dweight, bias, dout, short_inp, weight, DType::kF32); },
      {"linear_backward", "inp has 7 rows", "N = 8"});
  expect_error(
      [&] { linear_backward(core, dinp, wrong_weight, bias, dout, inp, weight, DType::kF32); },
      {"dweight is 24x15", "[OC, C] = 24x16"});
  expect_error(
      [&] { linear_backward(core, wrong_out, dweight, bias, dout, inp, weight, DType::kF32); },
      {"dinp is 8x23", "[N, C] = 8x16"});
  expect_error(
      [&] { linear_backward(core, dinp, dweight, wrong_bias, dout, inp, weight, DType::kF32); },
      {"dbias is 1x25"});
  expect_error(
      [&] { linear_backward(core, dinp, View(), bias, dout, inp, weight, DType::kF32); },
      {"dweight is missing"});
}

// gpt2-124m's linear layers at N = B*T = 256 on trn2 in bf16: prints simulated time, TensorE
// utilisation, HBM traffic and host wall time (no timing assertions), and checks a sample of
// output rows against the double reference.
TEST(NeuronLinearKernel, Gpt2SizesOnTrn2) {
  struct Shape {
    const char* name;
    int C, OC;
    bool bias;
  };
  const Shape shapes[] = {{"qkv", 768, 2304, true},
                          {"attn proj", 768, 768, true},
                          {"fc", 768, 3072, true},
                          {"fc proj", 3072, 768, true},
                          {"lm head", 768, 50257, false}};
  const int N = 256;
  for (const Shape& s : shapes) {
    const Layer layer(N, s.C, s.OC, s.bias, 20);
    NeuronCore core(trn2_config());
    View inp = upload(core, {N, s.C}, DType::kBF16, layer.inp, "inp");
    View weight = upload(core, {s.OC, s.C}, DType::kF32, layer.weight, "weight");
    View bias = s.bias ? upload(core, {s.OC}, DType::kF32, layer.b, "bias") : View();
    View out = core.hbm_alloc({N, s.OC}, DType::kBF16, "out");
    View dout = upload(core, {N, s.OC}, DType::kBF16, layer.dout, "dout");
    View dinp = upload(core, {N, s.C}, DType::kBF16, std::vector<float>(static_cast<size_t>(N) * s.C, 0.0f),
                       "dinp");
    View dweight = upload(core, {s.OC, s.C}, DType::kF32,
                          std::vector<float>(static_cast<size_t>(s.OC) * s.C, 0.0f), "dweight");
    View dbias =
        s.bias ? upload(core, {s.OC}, DType::kF32, std::vector<float>(s.OC, 0.0f), "dbias")
               : View();

    // Host cost: wall time and this process's CPU time (the machine may be shared).
    struct HostTimer {
      std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
      std::clock_t cpu = std::clock();
      double wall_s() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
      }
      double cpu_s() const { return static_cast<double>(std::clock() - cpu) / CLOCKS_PER_SEC; }
    };
    auto report = [&](const char* pass, double t0_ns, const RunStats& before,
                      const HostTimer& timer) {
      const double wall_s = timer.wall_s(), cpu_s = timer.cpu_s();
      const RunStats after = core.stats();
      const double ns = core.now_ns() - t0_ns;
      const double tensor_busy = after.engines[0].busy_ns - before.engines[0].busy_ns;
      const double flops = after.matmul_flops - before.matmul_flops;
      const double bytes = static_cast<double>(after.hbm_read_bytes + after.hbm_write_bytes -
                                               before.hbm_read_bytes - before.hbm_write_bytes);
      std::printf(
          "[ linear  ] %-9s %-8s N=%d C=%d OC=%d: simulated %7.1f us, TensorE %4.1f%% busy, "
          "%4.1f%% of bf16 peak, HBM %5.1f MB at %5.1f GB/s, %lld instructions; host %.2f s "
          "wall, %.2f s CPU\n",
          s.name, pass, N, s.C, s.OC, ns / 1e3, 100 * tensor_busy / ns,
          100 * flops / ns / 1e3 / trn2_config().peak_tflops(DType::kBF16), bytes / 1e6,
          bytes / ns, static_cast<long long>(after.instructions - before.instructions), wall_s,
          cpu_s);
    };
    RunStats before = core.stats();
    double t0 = core.now_ns();
    HostTimer timer;
    linear_forward(core, out, inp, weight, bias, DType::kBF16);
    report("forward", t0, before, timer);
    before = core.stats();
    t0 = core.now_ns();
    timer = HostTimer();
    linear_backward(core, dinp, dweight, dbias, dout, inp, weight, DType::kBF16);
    report("backward", t0, before, timer);

    // Sampled check: a few rows of out and dinp, a few rows of dweight, all of dbias.
    const std::vector<float> got_out = core.read(out), got_dinp = core.read(dinp),
                             got_dw = core.read(dweight);
    double diff = 0, norm = 0;
    auto add = [&](double got, double want) {
      diff += (got - want) * (got - want);
      norm += want * want;
    };
    for (int n : {0, 77, 128, 255}) {
      for (int oc = 0; oc < s.OC; ++oc) {
        double ref = s.bias ? layer.b[oc] : 0.0;
        for (int c = 0; c < s.C; ++c)
          ref += static_cast<double>(layer.inp[static_cast<size_t>(n) * s.C + c]) * layer.weight[static_cast<size_t>(oc) * s.C + c];
        add(got_out[static_cast<size_t>(n) * s.OC + oc], ref);
      }
      std::vector<double> ref(s.C, 0.0);
      for (int oc = 0; oc < s.OC; ++oc) {
        const double d = layer.dout[static_cast<size_t>(n) * s.OC + oc];
        const float* w = &layer.weight[static_cast<size_t>(oc) * s.C];
        for (int c = 0; c < s.C; ++c) ref[c] += d * w[c];
      }
      for (int c = 0; c < s.C; ++c) add(got_dinp[static_cast<size_t>(n) * s.C + c], ref[c]);
    }
    for (int oc : {0, 129, s.OC - 1}) {
      for (int c = 0; c < s.C; ++c) {
        double ref = 0;
        for (int n = 0; n < N; ++n)
          ref += static_cast<double>(layer.dout[static_cast<size_t>(n) * s.OC + oc]) * layer.inp[static_cast<size_t>(n) * s.C + c];
        add(got_dw[static_cast<size_t>(oc) * s.C + c], ref);
      }
    }
    EXPECT_LT(std::sqrt(diff / norm), 1e-2) << s.name;
    if (s.bias) {
      std::vector<double> want_db(s.OC, 0.0);
      for (int n = 0; n < N; ++n)
        for (int oc = 0; oc < s.OC; ++oc) want_db[oc] += layer.dout[static_cast<size_t>(n) * s.OC + oc];
      EXPECT_LT(relative_error(core.read(dbias), want_db), 1e-2) << s.name;
    }
  }
}

}  // namespace
}  // namespace switchyard::backend::neuron
