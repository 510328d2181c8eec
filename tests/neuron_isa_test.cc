// Functional semantics of each simulated instruction against straightforward references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "neuron/neuron_core.h"
#include "neuron/tile_pool.h"

namespace switchyard::neuron {
namespace {

std::vector<float> random_values(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal() * scale;
  return v;
}

std::vector<float> rounded(std::vector<float> v, DType dtype) {
  for (float& x : v) x = round_to(dtype, x);
  return v;
}

TEST(NeuronIsa, FreshMemoryReadsAsNaN) {
  NeuronCore core(trn1_config());
  View t = core.sbuf_alloc(128, {64}, DType::kBF16, "t");
  for (float x : core.read(t)) ASSERT_TRUE(std::isnan(x));
  View h = core.hbm_alloc({4, 4}, DType::kF32, "h");
  for (float x : core.read(h)) ASSERT_TRUE(std::isnan(x));
  // An instruction reading unwritten memory propagates NaN.
  View out = core.sbuf_alloc(128, {64}, DType::kF32, "out");
  core.tensor_scalar(out, t, AluOp::kMultiply, 0.0f);
  for (float x : core.read(out)) ASSERT_TRUE(std::isnan(x));
}

TEST(NeuronIsa, DmaCopyCastsAndTransposes) {
  NeuronCore core(trn1_config());
  View a = core.hbm_alloc({16, 8}, DType::kF32, "a");
  std::vector<float> values = random_values(128, 1);
  core.write(a, values);
  // HBM [16, 8] fp32 -> SBUF [8, 16] bf16 transposed.
  View t = core.sbuf_alloc(8, {16}, DType::kBF16, "t");
  core.dma_copy(t, a.transposed());
  std::vector<float> got = core.read(t);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c)
      ASSERT_EQ(got[c * 16 + r], round_to(DType::kBF16, values[r * 8 + c]));
  // Back to HBM as fp32 (exact: bf16 fits in fp32).
  View back = core.hbm_alloc({8, 16}, DType::kF32, "back");
  core.dma_copy(back, t);
  EXPECT_EQ(core.read(back), got);
}

TEST(NeuronIsa, DmaCopyFourDimensionalPattern) {
  NeuronCore core(trn1_config());
  // HBM tensor [2, 3, 4, 5, 6]; take every other element of the last dim and dims 1..3 ranges.
  View x = core.hbm_alloc({2, 3, 4, 5, 6}, DType::kF32, "x");
  std::vector<float> values(2 * 3 * 4 * 5 * 6);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  core.write(x, values);
  View src = x.slice(3, 1, 3, 2).slice(1, 1, 2).slice(0, 1, 2);  // [2, 2 x 2 x 5 x 3]
  ASSERT_EQ(src.free_size(), 2 * 2 * 5 * 3);
  View t = core.sbuf_alloc(2, {2, 2, 5, 3}, DType::kF32, "t");
  core.dma_copy(t, src);
  std::vector<float> got = core.read(t);
  size_t k = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 1; b < 3; ++b)
      for (int c = 1; c < 3; ++c)
        for (int d = 0; d < 5; ++d)
          for (int e = 1; e < 6; e += 2)
            ASSERT_EQ(got[k++], values[(((a * 3 + b) * 4 + c) * 5 + d) * 6 + e]);
}

TEST(NeuronIsa, GatherAndScatterAddByRowIndex) {
  NeuronCore core(trn1_config());
  View table = core.hbm_alloc({10, 4}, DType::kBF16, "wte");
  std::vector<float> values = rounded(random_values(40, 2), DType::kBF16);
  core.write(table, values);
  View idx = core.sbuf_alloc(3, {1}, DType::kI32, "idx");
  core.write(idx, std::vector<float>{7, 0, 7});
  View rows = core.sbuf_alloc(3, {4}, DType::kF32, "rows");
  core.dma_gather(rows, table, idx);
  std::vector<float> got = core.read(rows);
  for (int p = 0; p < 3; ++p)
    for (int c = 0; c < 4; ++c) ASSERT_EQ(got[p * 4 + c], values[(p == 1 ? 0 : 7) * 4 + c]);

  View grad = core.hbm_alloc({10, 4}, DType::kF32, "grad");
  core.write(grad, std::vector<float>(40, 1.0f));
  core.dma_scatter(grad, rows, idx, /*accumulate=*/true);
  std::vector<float> g = core.read(grad);
  for (int c = 0; c < 4; ++c) {
    EXPECT_FLOAT_EQ(g[7 * 4 + c], 1.0f + 2 * values[7 * 4 + c]);  // duplicate index adds twice
    EXPECT_FLOAT_EQ(g[0 * 4 + c], 1.0f + values[c]);
    EXPECT_EQ(g[3 * 4 + c], 1.0f);
  }
  core.write(idx, std::vector<float>{7, 10, 0});
  EXPECT_THROW(core.dma_gather(rows, table, idx), Error);
}

// Reference matmul in double over already-rounded operands.
std::vector<double> reference_matmul(const std::vector<float>& s, const std::vector<float>& v,
                                     int K, int M, int N) {
  std::vector<double> out(static_cast<size_t>(M) * N, 0.0);
  for (int k = 0; k < K; ++k)
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n)
        out[m * N + n] += static_cast<double>(s[k * M + m]) * v[k * N + n];
  return out;
}

void check_matmul(DType dtype, double tolerance) {
  NeuronCore core(trn2_config());
  const int K = 128, M = 96, N = 200;
  View st = core.sbuf_alloc(K, {M}, dtype, "st");
  View mv = core.sbuf_alloc(K, {N}, dtype, "mv");
  std::vector<float> s = rounded(random_values(K * M, 3), dtype);
  std::vector<float> v = rounded(random_values(K * N, 4), dtype);
  core.write(st, s);
  core.write(mv, v);
  View acc = core.psum_alloc(M, {N}, DType::kF32, "acc");
  core.matmul(acc, st, mv, /*start=*/true, /*stop=*/false);
  core.matmul(acc, st, mv, /*start=*/false, /*stop=*/true);  // accumulates: 2x
  std::vector<double> ref = reference_matmul(s, v, K, M, N);
  std::vector<float> got = core.read(acc);
  double max_ref = 0;
  for (double r : ref) max_ref = std::max(max_ref, std::fabs(2 * r));
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_NEAR(got[i], 2 * ref[i], tolerance * max_ref) << nki_dtype_name(dtype) << " element " << i;
}

TEST(NeuronIsa, MatmulAccumulatesInFp32ForEachInputDtype) {
  check_matmul(DType::kBF16, 1e-6);
  check_matmul(DType::kF16, 1e-6);
  check_matmul(DType::kF8E4M3, 1e-6);
  check_matmul(DType::kF8E5M2, 1e-6);
  check_matmul(DType::kF32, 1e-6);
}

TEST(NeuronIsa, MatmulOnPartialAndStridedViews) {
  NeuronCore core(trn1_config());
  const int K = 40, M = 33, N = 17;
  View st_tile = core.sbuf_alloc(128, {128}, DType::kBF16, "st");
  View mv_tile = core.sbuf_alloc(128, {64}, DType::kBF16, "mv");
  std::vector<float> s = rounded(random_values(128 * 128, 5), DType::kBF16);
  std::vector<float> v = rounded(random_values(128 * 64, 6), DType::kBF16);
  core.write(st_tile, s);
  core.write(mv_tile, v);
  View st = st_tile.rows(0, K).cols(10, M);
  View mv = mv_tile.rows(0, K).slice(0, 1, N, 2);  // every other column
  View acc_tile = core.psum_alloc(128, {2, 32}, DType::kF32, "acc");
  View acc = acc_tile.rows(0, M).slice(1, 0, N).slice(0, 1, 1);
  core.matmul(acc, st, mv, true, true);
  std::vector<float> got = core.read(acc);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double ref = 0;
      for (int k = 0; k < K; ++k)
        ref += static_cast<double>(s[k * 128 + 10 + m]) * v[k * 64 + 1 + 2 * n];
      ASSERT_NEAR(got[m * N + n], ref, 1e-4);
    }
}

TEST(NeuronIsa, TransposeThroughPsum) {
  NeuronCore core(trn1_config());
  View in = core.sbuf_alloc(50, {70}, DType::kBF16, "in");
  std::vector<float> v = rounded(random_values(50 * 70, 7), DType::kBF16);
  core.write(in, v);
  View out = core.psum_alloc(70, {50}, DType::kF32, "out");
  core.transpose(out, in);
  std::vector<float> got = core.read(out);
  for (int p = 0; p < 50; ++p)
    for (int f = 0; f < 70; ++f) ASSERT_EQ(got[f * 50 + p], v[p * 70 + f]);
}

double reference_activation(Activation f, double x) {
  switch (f) {
    case Activation::kIdentity:
      return x;
    case Activation::kExp:
      return std::exp(x);
    case Activation::kLog:
      return std::log(x);
    case Activation::kTanh:
      return std::tanh(x);
    case Activation::kGeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::kSilu:
      return x / (1 + std::exp(-x));
    case Activation::kSigmoid:
      return 1 / (1 + std::exp(-x));
    case Activation::kRelu:
      return x > 0 ? x : 0;
    case Activation::kSqrt:
      return std::sqrt(x);
    case Activation::kRsqrt:
      return 1 / std::sqrt(x);
    case Activation::kReciprocal:
      return 1 / x;
    case Activation::kSquare:
      return x * x;
  }
  return 0;
}

TEST(NeuronIsa, ActivationFunctionsWithScaleBiasAndReduce) {
  NeuronCore core(trn1_config());
  const int P = 16, F = 40;
  View in = core.sbuf_alloc(P, {F}, DType::kF32, "in");
  std::vector<float> x = random_values(P * F, 8);
  core.write(in, x);
  View bias = core.sbuf_alloc(P, {1}, DType::kF32, "bias");
  std::vector<float> b = random_values(P, 9, 0.1f);
  core.write(bias, b);
  View out = core.sbuf_alloc(P, {F}, DType::kF32, "out");
  View sums = core.sbuf_alloc(P, {1}, DType::kF32, "sums");
  for (Activation f :
       {Activation::kIdentity, Activation::kExp, Activation::kLog, Activation::kTanh,
        Activation::kGeluTanh, Activation::kSilu, Activation::kSigmoid, Activation::kRelu,
        Activation::kSqrt, Activation::kRsqrt, Activation::kReciprocal, Activation::kSquare}) {
    bool positive_only = f == Activation::kLog || f == Activation::kSqrt || f == Activation::kRsqrt;
    float scale = positive_only ? 0.0f : 0.5f;  // log/sqrt/rsqrt of 0*x + (|b| + 1)
    View bias_in = bias;
    if (positive_only) {
      std::vector<float> pb(P);
      for (int p = 0; p < P; ++p) pb[p] = std::fabs(b[p]) + 1.0f;
      core.write(bias, pb);
    } else {
      core.write(bias, b);
    }
    std::vector<float> bv = core.read(bias);
    core.activation_reduce(out, f, in, sums, scale, bias_in);
    std::vector<float> got = core.read(out);
    std::vector<float> s = core.read(sums);
    for (int p = 0; p < P; ++p) {
      double sum = 0;
      for (int i = 0; i < F; ++i) {
        double ref = reference_activation(f, static_cast<double>(x[p * F + i]) * scale + bv[p]);
        ASSERT_NEAR(got[p * F + i], ref, 2e-6 * std::max(1.0, std::fabs(ref)))
            << activation_name(f);
        sum += ref;
      }
      ASSERT_NEAR(s[p], sum, 1e-4 * std::max(1.0, std::fabs(sum))) << activation_name(f);
    }
  }
  // Output rounding: identity into bf16 equals round-to-nearest-even of the fp32 value.
  View out16 = core.sbuf_alloc(P, {F}, DType::kBF16, "out16");
  core.activation(out16, Activation::kIdentity, in, 3.0f);
  std::vector<float> got = core.read(out16);
  for (int i = 0; i < P * F; ++i) ASSERT_EQ(got[i], round_to(DType::kBF16, x[i] * 3.0f));
}

TEST(NeuronIsa, VectorOps) {
  NeuronCore core(trn1_config());
  const int P = 8, F = 12;
  View a = core.sbuf_alloc(P, {F}, DType::kF32, "a");
  View b = core.sbuf_alloc(P, {F}, DType::kF32, "b");
  std::vector<float> x = random_values(P * F, 10);
  std::vector<float> y = random_values(P * F, 11);
  core.write(a, x);
  core.write(b, y);
  View out = core.sbuf_alloc(P, {F}, DType::kF32, "out");
  for (AluOp op : {AluOp::kAdd, AluOp::kSubtract, AluOp::kMultiply, AluOp::kDivide, AluOp::kMax,
                   AluOp::kMin, AluOp::kIsGreater, AluOp::kIsLessEqual}) {
    for (Engine engine : {Engine::kVector, Engine::kGpSimd}) {
      core.tensor_tensor(out, a, op, b, engine);
      std::vector<float> got = core.read(out);
      for (int i = 0; i < P * F; ++i) {
        float ref = 0;
        switch (op) {
          case AluOp::kAdd:
            ref = x[i] + y[i];
            break;
          case AluOp::kSubtract:
            ref = x[i] - y[i];
            break;
          case AluOp::kMultiply:
            ref = x[i] * y[i];
            break;
          case AluOp::kDivide:
            ref = x[i] / y[i];
            break;
          case AluOp::kMax:
            ref = std::max(x[i], y[i]);
            break;
          case AluOp::kMin:
            ref = std::min(x[i], y[i]);
            break;
          case AluOp::kIsGreater:
            ref = x[i] > y[i] ? 1.0f : 0.0f;
            break;
          case AluOp::kIsLessEqual:
            ref = x[i] <= y[i] ? 1.0f : 0.0f;
            break;
          default:
            break;
        }
        ASSERT_EQ(got[i], ref) << alu_op_name(op);
      }
    }
  }
  // tensor_scalar: (x - column) * 2, with a per-partition column operand.
  View col = core.sbuf_alloc(P, {1}, DType::kF32, "col");
  std::vector<float> c = random_values(P, 12);
  core.write(col, c);
  View out16 = core.sbuf_alloc(P, {F}, DType::kBF16, "out16");
  core.tensor_scalar(out16, a, AluOp::kSubtract, col, AluOp::kMultiply, 2.0f);
  std::vector<float> got = core.read(out16);
  for (int p = 0; p < P; ++p)
    for (int f = 0; f < F; ++f)
      ASSERT_EQ(got[p * F + f], round_to(DType::kBF16, (x[p * F + f] - c[p]) * 2.0f));
  // tensor_reduce over the innermost axis of [P, 3, 4] and over everything.
  View r3 = core.sbuf_alloc(P, {3}, DType::kF32, "r3");
  core.tensor_reduce(r3, AluOp::kMax, a.split(0, 4), 1);
  got = core.read(r3);
  for (int p = 0; p < P; ++p)
    for (int g = 0; g < 3; ++g) {
      float m = x[p * F + g * 4];
      for (int i = 1; i < 4; ++i) m = std::max(m, x[p * F + g * 4 + i]);
      ASSERT_EQ(got[p * 3 + g], m);
    }
  core.tensor_reduce(col, AluOp::kAdd, a);
  got = core.read(col);
  for (int p = 0; p < P; ++p) {
    float s = 0;
    for (int f = 0; f < F; ++f) s += x[p * F + f];
    ASSERT_NEAR(got[p], s, 1e-5);
  }
  // tensor_copy with cast, reciprocal, memset.
  View h = core.sbuf_alloc(P, {F}, DType::kF16, "h");
  core.tensor_copy(h, a);
  got = core.read(h);
  for (int i = 0; i < P * F; ++i) ASSERT_EQ(got[i], round_to(DType::kF16, x[i]));
  core.reciprocal(out, a);
  got = core.read(out);
  for (int i = 0; i < P * F; ++i) ASSERT_EQ(got[i], 1.0f / x[i]);
  core.memset(out, 2.5f, Engine::kGpSimd);
  for (float v : core.read(out)) ASSERT_EQ(v, 2.5f);
}

TEST(NeuronIsa, IotaSelectAndAffineSelect) {
  NeuronCore core(trn1_config());
  const int P = 6, F = 5;
  View io = core.sbuf_alloc(P, {F}, DType::kI32, "iota");
  core.iota(io, 3.0f, 10.0f, {1.0f});
  std::vector<float> got = core.read(io);
  for (int p = 0; p < P; ++p)
    for (int f = 0; f < F; ++f) ASSERT_EQ(got[p * F + f], 3 + 10 * p + f);

  View pred = core.sbuf_alloc(P, {F}, DType::kF32, "pred");
  View a = core.sbuf_alloc(P, {F}, DType::kF32, "a");
  View b = core.sbuf_alloc(P, {F}, DType::kF32, "b");
  std::vector<float> pv(P * F), av = random_values(P * F, 13), bv = random_values(P * F, 14);
  for (int i = 0; i < P * F; ++i) pv[i] = i % 3 == 0 ? 1.0f : 0.0f;
  core.write(pred, pv);
  core.write(a, av);
  core.write(b, bv);
  View out = core.sbuf_alloc(P, {F}, DType::kF32, "out");
  core.select(out, pred, a, b);
  got = core.read(out);
  for (int i = 0; i < P * F; ++i) ASSERT_EQ(got[i], pv[i] != 0 ? av[i] : bv[i]);

  // Causal mask: keep where p - f >= 0, else -inf.
  core.affine_select(out, a, 0.0f, 1.0f, {-1.0f}, AluOp::kIsGreaterEqual, -INFINITY);
  got = core.read(out);
  for (int p = 0; p < P; ++p)
    for (int f = 0; f < F; ++f) {
      if (p >= f) {
        ASSERT_EQ(got[p * F + f], av[p * F + f]);
      } else {
        ASSERT_TRUE(std::isinf(got[p * F + f]) && got[p * F + f] < 0);
      }
    }
}

TEST(NeuronIsa, KernelScopeAndTilePoolRestoreState) {
  NeuronCore core(trn1_config());
  const int64_t free_before = core.sbuf_largest_free();
  {
    KernelScope scope(core, "inner");
    TilePool pool(core);
    View a = pool.sbuf(128, {1024}, DType::kF32, "a");
    pool.psum(128, {512}, DType::kF32, "p");
    EXPECT_EQ(core.kernel(), "inner");
    EXPECT_EQ(core.sbuf_largest_free(), free_before - 4096);
    try {
      core.tensor_copy(a.rows(16, 16), a.rows(0, 16));
      FAIL() << "expected an Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("kernel 'inner'"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(core.kernel(), "main");
  EXPECT_EQ(core.sbuf_largest_free(), free_before);
  EXPECT_EQ(core.psum_largest_free(), 16384);
}

}  // namespace
}  // namespace switchyard::neuron
