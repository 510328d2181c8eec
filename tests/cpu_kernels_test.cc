// The CPU kernel templates: forward passes against direct formulas (and PyTorch numbers where a
// formula could share a mistake with the kernel), every backward pass against central finite
// differences in double precision, float against double, and the accumulate-into-gradients rule.
#include "backend/cpu/cpu_kernels.h"

#include <gtest/gtest.h>

#include "gpt2_cpu_kernels.h"
#include "gradient_check.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <tuple>
#include <vector>

#include "core/rng.h"

namespace cpu = switchyard::backend::cpu;
namespace gpt2 = switchyard::gpt2_kernels;

using switchyard::dot;
using switchyard::expect_grad;
using switchyard::numeric_grad;
using switchyard::random_vec;
using switchyard::rel_error;
using switchyard::to_float;
using switchyard::Vec;

namespace {

// Awkward sizes: nothing a multiple of the vector width.
constexpr int kB = 2, kT = 5, kC = 12, kNH = 3, kN = 7, kOC = 11, kV = 13;

}  // namespace

// ---------------------------------------------------------------------------------------------
// encoder

TEST(CpuKernels, EncoderForwardAndGradients) {
  const std::vector<int32_t> tokens = {3, 0, 12, 3, 3,
                                       7, 1, 12, 5, 0};  // repeats: scatter must add
  Vec wte = random_vec(kV * kC, 1), wpe = random_vec(kT * kC, 2), w = random_vec(kB * kT * kC, 3);
  Vec out(kB * kT * kC);
  gpt2::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), kB, kT, kC);
  for (int b = 0; b < kB; ++b)
    for (int t = 0; t < kT; ++t)
      for (int c = 0; c < kC; ++c)
        ASSERT_EQ(out[(b * kT + t) * kC + c], wte[tokens[b * kT + t] * kC + c] + wpe[t * kC + c]);

  auto loss = [&] {
    gpt2::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), kB, kT, kC);
    return dot(out, w);
  };
  const Vec prior_wte = random_vec(wte.size(), 4), prior_wpe = random_vec(wpe.size(), 5);
  Vec dwte = prior_wte, dwpe = prior_wpe;
  gpt2::encoder_backward(dwte.data(), dwpe.data(), w.data(), tokens.data(), kB, kT, kC);
  expect_grad(dwte, prior_wte, numeric_grad(wte, loss), "dwte");
  expect_grad(dwpe, prior_wpe, numeric_grad(wpe, loss), "dwpe");
}

// ---------------------------------------------------------------------------------------------
// layernorm

TEST(CpuKernels, LayernormForwardMatchesFormula) {
  Vec inp = random_vec(kN * kC, 10, 3.0), weight = random_vec(kC, 11), bias = random_vec(kC, 12);
  for (int c = 0; c < kC; ++c) inp[c] += 100.0;  // a row with a large mean
  Vec out(kN * kC), mean(kN), rstd(kN);
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                         bias.data(), kN, kC);
  for (int n = 0; n < kN; ++n) {
    double m = 0, var = 0;
    for (int c = 0; c < kC; ++c) m += inp[n * kC + c] / kC;
    for (int c = 0; c < kC; ++c) var += (inp[n * kC + c] - m) * (inp[n * kC + c] - m) / kC;
    EXPECT_NEAR(mean[n], m, 1e-12);
    EXPECT_NEAR(rstd[n], 1.0 / std::sqrt(var + 1e-5), 1e-10);
    for (int c = 0; c < kC; ++c) {
      EXPECT_NEAR(out[n * kC + c],
                  (inp[n * kC + c] - m) / std::sqrt(var + 1e-5) * weight[c] + bias[c], 1e-10);
    }
  }
}

TEST(CpuKernels, LayernormBackwardMatchesFiniteDifferences) {
  Vec inp = random_vec(kN * kC, 20, 2.0), weight = random_vec(kC, 21), bias = random_vec(kC, 22);
  const Vec w = random_vec(kN * kC, 23);
  Vec out(kN * kC), mean(kN), rstd(kN);
  auto loss = [&] {
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                           bias.data(), kN, kC);
    return dot(out, w);
  };
  loss();
  const Vec p_inp = random_vec(inp.size(), 24), p_w = random_vec(kC, 25), p_b = random_vec(kC, 26);
  Vec dinp = p_inp, dweight = p_w, dbias = p_b;
  cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), w.data(), inp.data(),
                          weight.data(), mean.data(), rstd.data(), kN, kC);
  expect_grad(dinp, p_inp, numeric_grad(inp, loss), "dinp");
  expect_grad(dweight, p_w, numeric_grad(weight, loss), "dweight");
  expect_grad(dbias, p_b, numeric_grad(bias, loss), "dbias");
}

// ---------------------------------------------------------------------------------------------
// matmul

TEST(CpuKernels, MatmulForwardMatchesDirectSum) {
  const Vec inp = random_vec(kN * kC, 30), weight = random_vec(kOC * kC, 31),
            bias = random_vec(kOC, 32);
  Vec out(kN * kOC);
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), kN, kC, kOC);
  for (int n = 0; n < kN; ++n) {
    for (int o = 0; o < kOC; ++o) {
      double s = bias[o];
      for (int c = 0; c < kC; ++c) s += inp[n * kC + c] * weight[o * kC + c];
      EXPECT_NEAR(out[n * kOC + o], s, 1e-12);
    }
  }
}

TEST(CpuKernels, MatmulBackwardMatchesFiniteDifferences) {
  Vec inp = random_vec(kN * kC, 40), weight = random_vec(kOC * kC, 41), bias = random_vec(kOC, 42);
  const Vec w = random_vec(kN * kOC, 43);
  Vec out(kN * kOC);
  auto loss = [&] {
    cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), kN, kC, kOC);
    return dot(out, w);
  };
  const Vec p_inp = random_vec(inp.size(), 44), p_w = random_vec(weight.size(), 45),
            p_b = random_vec(kOC, 46);
  Vec dinp = p_inp, dweight = p_w, dbias = p_b;
  cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), w.data(), inp.data(),
                       weight.data(), kN, kC, kOC);
  expect_grad(dinp, p_inp, numeric_grad(inp, loss), "dinp");
  expect_grad(dweight, p_w, numeric_grad(weight, loss), "dweight");
  expect_grad(dbias, p_b, numeric_grad(bias, loss), "dbias");

  // Null dinp and dbias: only dweight is written, and it matches the same gradient.
  Vec dweight2 = p_w;
  cpu::matmul_backward<double>(nullptr, dweight2.data(), nullptr, w.data(), inp.data(),
                               weight.data(), kN, kC, kOC);
  EXPECT_EQ(dweight2, dweight);
}

// oneDNN's sgemm and the few-row GEMV path against the double loops, on odd shapes.
TEST(CpuKernels, FloatMatmulMatchesDoubleOnOddShapes) {
  struct Shape {
    int N, C, OC;
  };
  for (const Shape s : {Shape{1, 13, 7}, Shape{2, 67, 33}, Shape{3, 5, 1}, Shape{4, 100, 9},
                        Shape{5, 17, 29}, Shape{37, 129, 65}, Shape{1, 768, 50}}) {
    for (const bool with_bias : {true, false}) {
      SCOPED_TRACE(testing::Message()
                   << "N=" << s.N << " C=" << s.C << " OC=" << s.OC << " bias=" << with_bias);
      const Vec inp = random_vec(s.N * s.C, 50), weight = random_vec(s.OC * s.C, 51),
                bias = random_vec(s.OC, 52), dout = random_vec(s.N * s.OC, 53);
      Vec out(s.N * s.OC), dinp(s.N * s.C, 0.5), dweight(s.OC * s.C, -0.25), dbias(s.OC, 1.0);
      std::vector<float> out_f(out.size()), dinp_f(dinp.begin(), dinp.end()),
          dweight_f(dweight.begin(), dweight.end()), dbias_f(dbias.begin(), dbias.end());
      const std::vector<float> inp_f = to_float(inp), weight_f = to_float(weight),
                               bias_f = to_float(bias), dout_f = to_float(dout);
      cpu::matmul_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr,
                          s.N, s.C, s.OC);
      cpu::matmul_forward(out_f.data(), inp_f.data(), weight_f.data(),
                          with_bias ? bias_f.data() : nullptr, s.N, s.C, s.OC);
      EXPECT_LT(rel_error(out_f, out), 1e-5);
      cpu::matmul_backward(dinp.data(), dweight.data(), with_bias ? dbias.data() : nullptr,
                           dout.data(), inp.data(), weight.data(), s.N, s.C, s.OC);
      cpu::matmul_backward(dinp_f.data(), dweight_f.data(), with_bias ? dbias_f.data() : nullptr,
                           dout_f.data(), inp_f.data(), weight_f.data(), s.N, s.C, s.OC);
      EXPECT_LT(rel_error(dinp_f, dinp), 1e-5);
      EXPECT_LT(rel_error(dweight_f, dweight), 1e-5);
      EXPECT_LT(rel_error(dbias_f, dbias), 1e-5);
    }
  }
}

// Batch-invariant products: against the double loops, and every row with the same bits whatever
// the number of rows around it (1 to 130: single rows, tiles of four and their remainders, several
// row blocks of 64), with C and OC not multiples of the kernel's lanes or tiles.
TEST(CpuKernels, BatchInvariantMatmulRowsDoNotDependOnTheOtherRows) {
  const int C = 67, OC = 37, max_rows = 130;
  const Vec inp = random_vec(max_rows * C, 54), weight = random_vec(OC * C, 55),
            bias = random_vec(OC, 56);
  const std::vector<float> inp_f = to_float(inp), weight_f = to_float(weight),
                           bias_f = to_float(bias);
  Vec want(static_cast<size_t>(max_rows) * OC);
  cpu::matmul_forward(want.data(), inp.data(), weight.data(), bias.data(), max_rows, C, OC);
  std::vector<float> all(want.size());
  cpu::matmul_forward(all.data(), inp_f.data(), weight_f.data(), bias_f.data(), max_rows, C, OC,
                      true);
  EXPECT_LT(rel_error(all, want), 1e-5);
  for (const int N : {1, 2, 3, 4, 5, 8, 63, 64, 65, 129}) {
    for (const int first : {0, max_rows - N}) {
      std::vector<float> out(static_cast<size_t>(N) * OC);
      cpu::matmul_forward(out.data(), inp_f.data() + static_cast<size_t>(first) * C,
                          weight_f.data(), bias_f.data(), N, C, OC, true);
      const std::vector<float> rows(all.begin() + static_cast<std::ptrdiff_t>(first) * OC,
                                    all.begin() + static_cast<std::ptrdiff_t>(first + N) * OC);
      EXPECT_EQ(out, rows) << "N=" << N << " from row " << first;
    }
  }
}

// The order batch_invariant_linear documents, written out independently: 16 chains over c = l,
// l + 16, ... (fused multiply-adds from zero), added in a tree of halves, plus the in-order tail.
float documented_order_sum(const float* x, const float* w, int C) {
  const int main_part = C - C % 16;
  float chain[16] = {};
  for (int l = 0; l < 16; ++l) {
    for (int c = l; c < main_part; c += 16) chain[l] = std::fma(x[c], w[c], chain[l]);
  }
  const float s8[8] = {chain[0] + chain[8], chain[1] + chain[9], chain[2] + chain[10],
                       chain[3] + chain[11], chain[4] + chain[12], chain[5] + chain[13],
                       chain[6] + chain[14], chain[7] + chain[15]};
  const float s4[4] = {s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]};
  const float sum = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  if (main_part == C) return sum;
  float tail = 0.0f;
  for (int c = main_part; c < C; ++c) tail = std::fma(x[c], w[c], tail);
  return sum + tail;
}

// Every path of the batch-invariant product (few rows, packed panels, their edge tiles) gives the
// documented order's bits, for widths below, at and between multiples of 16.
TEST(CpuKernels, BatchInvariantMatmulFollowsItsDocumentedOrder) {
  for (const int C : {5, 16, 67, 96, 200}) {
    for (const int OC : {1, 13, 37}) {
      for (const int N : {1, 2, 3, 4, 6, 7, 16, 17, 33, 64, 65, 70}) {
        const std::vector<float> inp = to_float(random_vec(N * C, 57 + C)),
                                 weight = to_float(random_vec(OC * C, 58 + OC));
        std::vector<float> out(static_cast<size_t>(N) * OC);
        cpu::batch_invariant_linear(out.data(), inp.data(), weight.data(), N, C, OC);
        int mismatches = 0;
        for (int n = 0; n < N; ++n) {
          for (int o = 0; o < OC; ++o) {
            const float want = documented_order_sum(inp.data() + static_cast<size_t>(n) * C,
                                                    weight.data() + static_cast<size_t>(o) * C, C);
            mismatches += out[static_cast<size_t>(n) * OC + o] != want;
          }
        }
        EXPECT_EQ(mismatches, 0) << "N=" << N << " C=" << C << " OC=" << OC;
      }
    }
  }
}

TEST(CpuKernels, SgemmHonoursTransposesAndBeta) {
  const int M = 5, N = 7, K = 3;
  const Vec a = random_vec(M * K, 60), b = random_vec(K * N, 61), c0 = random_vec(M * N, 62);
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      for (const float beta : {0.0f, 1.0f, -0.5f}) {
        // Lay A out as [M,K] or [K,M] and B as [K,N] or [N,K], as the flags say.
        std::vector<float> af(M * K), bf(K * N);
        for (int m = 0; m < M; ++m)
          for (int k = 0; k < K; ++k)
            af[ta ? k * M + m : m * K + k] = static_cast<float>(a[m * K + k]);
        for (int k = 0; k < K; ++k)
          for (int n = 0; n < N; ++n)
            bf[tb ? n * K + k : k * N + n] = static_cast<float>(b[k * N + n]);
        std::vector<float> c = to_float(c0);
        cpu::sgemm(ta, tb, M, N, K, 2.0f, af.data(), ta ? M : K, bf.data(), tb ? K : N, beta,
                   c.data(), N);
        for (int m = 0; m < M; ++m) {
          for (int n = 0; n < N; ++n) {
            double s = 0;
            for (int k = 0; k < K; ++k) s += a[m * K + k] * b[k * N + n];
            EXPECT_NEAR(c[m * N + n], 2.0 * s + beta * c0[m * N + n], 1e-5);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// attention

namespace {

// Causal attention written the obvious way, one (b, h) at a time with full score matrices.
Vec naive_attention(const Vec& qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  Vec out(B * T * C, 0.0);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      auto at = [&](int t, int part, int i) {
        return qkv[(b * T + t) * 3 * C + part * C + h * hs + i];
      };
      for (int t = 0; t < T; ++t) {
        Vec p(t + 1);
        double total = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          double s = 0;
          for (int i = 0; i < hs; ++i) s += at(t, 0, i) * at(t2, 1, i);
          p[t2] = std::exp(s / std::sqrt(static_cast<double>(hs)));
          total += p[t2];
        }
        for (int i = 0; i < hs; ++i) {
          double o = 0;
          for (int t2 = 0; t2 <= t; ++t2) o += p[t2] / total * at(t2, 2, i);
          out[(b * T + t) * C + h * hs + i] = o;
        }
      }
    }
  }
  return out;
}

}  // namespace

TEST(CpuKernels, AttentionForwardMatchesNaive) {
  const Vec qkv = random_vec(kB * kT * 3 * kC, 70, 2.0);
  Vec out(kB * kT * kC), att(kB * kNH * kT * kT, 99.0);
  gpt2::attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
  EXPECT_LT(rel_error(out, naive_attention(qkv, kB, kT, kC, kNH)), 1e-12);
  for (int bh = 0; bh < kB * kNH; ++bh) {
    for (int t = 0; t < kT; ++t) {
      double row = 0;
      for (int t2 = 0; t2 < kT; ++t2) {
        const double a = att[(bh * kT + t) * kT + t2];
        if (t2 > t) {
          EXPECT_EQ(a, 0.0);
        }
        row += a;
      }
      EXPECT_NEAR(row, 1.0, 1e-12);
    }
  }
}

TEST(CpuKernels, AttentionBackwardMatchesFiniteDifferences) {
  Vec qkv = random_vec(kB * kT * 3 * kC, 80);
  const Vec w = random_vec(kB * kT * kC, 81);
  Vec out(kB * kT * kC), att(kB * kNH * kT * kT), scratch(att.size(), 7.0);
  auto loss = [&] {
    gpt2::attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
    return dot(out, w);
  };
  loss();
  const Vec prior = random_vec(qkv.size(), 82);
  Vec dqkv = prior;
  gpt2::attention_backward(dqkv.data(), scratch.data(), w.data(), qkv.data(), att.data(), kB, kT, kC,
                          kNH);
  expect_grad(dqkv, prior, numeric_grad(qkv, loss), "dqkv");
}

// Sequences longer than one row block (cpu::kAttentionBlock): every block's products reach back
// over the earlier blocks' keys. Checked against the naive loops, by directional derivatives of the
// double path, and float (oneDNN) against double.
TEST(CpuKernels, AttentionAcrossRowBlocks) {
  const int B = 1, T = 2 * cpu::kAttentionBlock + 3, C = 12, NH = 3;
  Vec qkv = random_vec(B * T * 3 * C, 83, 2.0);
  const Vec w = random_vec(B * T * C, 84);
  Vec out(B * T * C), att(B * NH * T * T), scratch(att.size(), 7.0);
  gpt2::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  const Vec expected = naive_attention(qkv, B, T, C, NH);
  EXPECT_LT(rel_error(out, expected), 1e-12);

  Vec dqkv(qkv.size(), 0.0);
  gpt2::attention_backward(dqkv.data(), scratch.data(), w.data(), qkv.data(), att.data(), B, T, C,
                          NH);
  auto loss = [&](const Vec& x) {
    Vec o(out.size()), a(att.size());
    gpt2::attention_forward(o.data(), a.data(), x.data(), B, T, C, NH);
    return dot(o, w);
  };
  for (uint64_t seed = 85; seed < 88; ++seed) {
    const Vec dir = random_vec(qkv.size(), seed);
    const double h = 1e-5;
    Vec plus = qkv, minus = qkv;
    for (size_t i = 0; i < qkv.size(); ++i) {
      plus[i] += h * dir[i];
      minus[i] -= h * dir[i];
    }
    const double numeric = (loss(plus) - loss(minus)) / (2 * h);
    EXPECT_NEAR(dot(dqkv, dir), numeric, 1e-7 * std::max(1.0, std::abs(numeric))) << "seed " << seed;
  }

  const std::vector<float> qkv_f = to_float(qkv), w_f = to_float(w);
  std::vector<float> out_f(out.size()), att_f(att.size()), scratch_f(att.size()),
      dqkv_f(qkv.size(), 0.0f);
  gpt2::attention_forward(out_f.data(), att_f.data(), qkv_f.data(), B, T, C, NH);
  gpt2::attention_backward(dqkv_f.data(), scratch_f.data(), w_f.data(), qkv_f.data(), att_f.data(),
                          B, T, C, NH);
  EXPECT_LT(rel_error(out_f, expected), 1e-5);
  EXPECT_LT(rel_error(dqkv_f, dqkv), 1e-5);
}

TEST(CpuKernels, AttentionDecodeReproducesForward) {
  const int max_T = kT + 3;  // a cache longer than the sequence
  const Vec qkv = random_vec(kB * kT * 3 * kC, 90, 2.0);
  Vec out(kB * kT * kC), att(kB * kNH * kT * kT);
  gpt2::attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
  Vec k_cache(kB * kNH * max_T * (kC / kNH), 0.0), v_cache(k_cache.size(), 0.0);
  std::vector<float> kf(k_cache.size()), vf(k_cache.size());
  for (int pos = 0; pos < kT; ++pos) {
    Vec step(kB * 3 * kC), dec(kB * kC);
    for (int b = 0; b < kB; ++b)
      for (int i = 0; i < 3 * kC; ++i) step[b * 3 * kC + i] = qkv[(b * kT + pos) * 3 * kC + i];
    gpt2::attention_decode(dec.data(), step.data(), k_cache.data(), v_cache.data(), kB, pos, max_T,
                          kC, kNH);
    std::vector<float> dec_f(dec.size());
    const std::vector<float> step_f = to_float(step);
    gpt2::attention_decode(dec_f.data(), step_f.data(), kf.data(), vf.data(), kB, pos, max_T, kC,
                          kNH);
    Vec expected(kB * kC);
    for (int b = 0; b < kB; ++b)
      for (int c = 0; c < kC; ++c) expected[b * kC + c] = out[(b * kT + pos) * kC + c];
    EXPECT_LT(rel_error(dec, expected), 1e-12) << "pos " << pos;
    EXPECT_LT(rel_error(dec_f, expected), 1e-5) << "pos " << pos;
  }
}

// ---------------------------------------------------------------------------------------------
// GELU, residual

TEST(CpuKernels, GeluMatchesPyTorch) {
  // torch.nn.functional.gelu(x, approximate='tanh') in float64 (PyTorch 1.13).
  const Vec x = {-3.0, -1.0, -0.25, 0.0, 0.5, 1.5, 4.0};
  const Vec expected = {-0.0036373920817729943, -0.15880800939172324, -0.100324649298315, 0.0,
                        0.34571400982514394,    1.3995715769802328,   3.9999297540518075};
  Vec out(x.size());
  cpu::gelu_forward(out.data(), x.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-15) << x[i];
  std::vector<float> out_f(x.size());
  const std::vector<float> x_f = to_float(x);
  cpu::gelu_forward(out_f.data(), x_f.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(out_f[i], expected[i], 1e-6) << x[i];
}

TEST(CpuKernels, GeluBackwardMatchesFiniteDifferences) {
  Vec inp = random_vec(kN * kC, 100, 4.0);
  const Vec w = random_vec(inp.size(), 101);
  Vec out(inp.size());
  auto loss = [&] {
    cpu::gelu_forward(out.data(), inp.data(), inp.size());
    return dot(out, w);
  };
  const Vec prior = random_vec(inp.size(), 102);
  Vec dinp = prior;
  cpu::gelu_backward(dinp.data(), inp.data(), w.data(), inp.size());
  expect_grad(dinp, prior, numeric_grad(inp, loss), "dinp");
}

TEST(CpuKernels, ResidualAndAccumulate) {
  Vec a = random_vec(kN * kC, 110), b = random_vec(kN * kC, 111);
  const Vec w = random_vec(kN * kC, 112);
  Vec out(a.size());
  auto loss = [&] {
    cpu::residual_forward(out.data(), a.data(), b.data(), a.size());
    return dot(out, w);
  };
  loss();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(out[i], a[i] + b[i]);
  const Vec prior_a = random_vec(a.size(), 113), prior_b = random_vec(b.size(), 114);
  Vec da = prior_a, db = prior_b;
  cpu::accumulate(da.data(), w.data(), w.size());  // the backward pass of a residual, per branch
  cpu::accumulate(db.data(), w.data(), w.size());
  expect_grad(da, prior_a, numeric_grad(a, loss), "da");
  expect_grad(db, prior_b, numeric_grad(b, loss), "db");
}

// ---------------------------------------------------------------------------------------------
// cross-entropy

TEST(CpuKernels, CrossEntropyForwardMatchesDirectFormula) {
  Vec logits = random_vec(kN * kV, 120, 5.0);
  logits[3] = 500.0;  // naive exp would overflow in float; log-sum-exp must not
  const std::vector<int32_t> targets = {0, 12, 5, 5, 1, 7, 11};
  Vec losses(kN);
  cpu::cross_entropy_forward(losses.data(), logits.data(), targets.data(), kN, kV);
  std::vector<float> losses_f(kN);
  const std::vector<float> logits_f = to_float(logits);
  cpu::cross_entropy_forward(losses_f.data(), logits_f.data(), targets.data(), kN, kV);
  for (int n = 0; n < kN; ++n) {
    const double* l = logits.data() + n * kV;
    double sum = 0;
    for (int i = 0; i < kV; ++i) sum += std::exp(l[i]);  // fine in double even for 500
    const double expected = -std::log(std::exp(l[targets[n]]) / sum);
    EXPECT_NEAR(losses[n], expected, 1e-12);
    EXPECT_NEAR(losses_f[n], expected, 1e-5 * std::max(1.0, std::abs(expected)));
  }
}

TEST(CpuKernels, CrossEntropyBackwardMatchesFiniteDifferencesAndMayAlias) {
  Vec logits = random_vec(kN * kV, 130, 3.0);
  const std::vector<int32_t> targets = {4, 0, 12, 3, 3, 9, 1};
  const double dloss = 1.0 / kN;
  Vec losses(kN);
  auto loss = [&] {
    cpu::cross_entropy_forward(losses.data(), logits.data(), targets.data(), kN, kV);
    double s = 0;
    for (double x : losses) s += x;
    return s * dloss;
  };
  Vec dlogits(logits.size(), 42.0);  // overwritten, not accumulated
  cpu::cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), dloss, kN, kV);
  EXPECT_LT(rel_error(dlogits, numeric_grad(logits, loss)), 1e-6);

  Vec in_place = logits;
  cpu::cross_entropy_backward(in_place.data(), in_place.data(), targets.data(), dloss, kN, kV);
  EXPECT_LT(rel_error(in_place, dlogits), 1e-14);
  std::vector<float> in_place_f = to_float(logits);
  cpu::cross_entropy_backward(in_place_f.data(), in_place_f.data(), targets.data(),
                              static_cast<float>(dloss), kN, kV);
  EXPECT_LT(rel_error(in_place_f, dlogits), 1e-5);
}

// ---------------------------------------------------------------------------------------------
// optimizer

TEST(CpuKernels, SumOfSquaresInDouble) {
  // 2^24 + 1 ones and a large value: a float accumulator would lose the small terms.
  std::vector<float> x((1 << 20) + 3, 1.0f);
  x[0] = 4096.0f;
  EXPECT_EQ(cpu::sum_of_squares(x.data(), x.size()), 4096.0 * 4096.0 + ((1 << 20) + 2));
  EXPECT_EQ(cpu::sum_of_squares(x.data(), 0), 0.0);
}

TEST(CpuKernels, AdamWMatchesPyTorchOverTwoSteps) {
  // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) in float64, with
  // p.grad = g * 0.5 (our grad_scale) for g1 then g2 (PyTorch 1.13).
  const Vec g1 = {0.5, -0.25, 0.0}, g2 = {-0.125, 1.0, 2.0};
  const Vec p1 = {0.8900000039999998, -0.39500000799999935, 0.2475};
  const Vec m1 = {0.024999999999999994, -0.012499999999999997, 0.0};
  const Vec v1 = {0.0031250000000000028, 0.0007812500000000007, 0.0};
  const Vec p2 = {0.833623413625197, -0.44639018385654716, 0.17152900079595293};
  const Vec m2 = {0.016249999999999997, 0.03874999999999999, 0.09999999999999998};
  const Vec v2 = {0.003164062500000003, 0.013242187500000013, 0.050000000000000044};
  Vec p = {1.0, -0.5, 0.25}, m(3, 0.0), v(3, 0.0);
  std::vector<float> pf = to_float(p), mf(3, 0.0f), vf(3, 0.0f);
  int step = 0;
  for (const auto& [g, pe, me, ve] : {std::tie(g1, p1, m1, v1), std::tie(g2, p2, m2, v2)}) {
    ++step;
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), 3, 0.1, 0.9, 0.95, 1e-8, 0.1, step,
                      0.5);
    const std::vector<float> gf = to_float(g);
    cpu::adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), 3, 0.1, 0.9, 0.95, 1e-8, 0.1,
                      step, 0.5);
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(p[i], pe[i], 1e-14) << "step " << step << " i " << i;
      EXPECT_NEAR(m[i], me[i], 1e-15);
      EXPECT_NEAR(v[i], ve[i], 1e-15);
      EXPECT_NEAR(pf[i], pe[i], 1e-6);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// float against double, and accumulation

TEST(CpuKernels, FloatInstantiationsAgreeWithDouble) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Vec qkv = random_vec(kB * kT * 3 * kC, 140), dout = random_vec(kB * kT * kC, 141);
  const Vec x = random_vec(kB * kT * kC, 142, 3.0), lw = random_vec(kC, 143),
            lb = random_vec(kC, 144);
  const Vec wte = random_vec(kV * kC, 145), wpe = random_vec(kT * kC, 146);
  const int N = kB * kT;

  // attention forward and backward
  Vec out(N * kC), att(kB * kNH * kT * kT), scratch(att.size()), dqkv(qkv.size(), 0.0);
  gpt2::attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
  gpt2::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), kB, kT,
                          kC, kNH);
  std::vector<float> out_f(out.size()), att_f(att.size()), scratch_f(att.size()),
      dqkv_f(qkv.size(), 0.0f);
  const std::vector<float> qkv_f = to_float(qkv), dout_f = to_float(dout);
  gpt2::attention_forward(out_f.data(), att_f.data(), qkv_f.data(), kB, kT, kC, kNH);
  gpt2::attention_backward(dqkv_f.data(), scratch_f.data(), dout_f.data(), qkv_f.data(),
                          att_f.data(), kB, kT, kC, kNH);
  EXPECT_LT(rel_error(out_f, out), 1e-5);
  EXPECT_LT(rel_error(att_f, att), 1e-5);
  EXPECT_LT(rel_error(dqkv_f, dqkv), 1e-5);

  // layernorm forward and backward
  Vec ln(N * kC), mean(N), rstd(N), dx(N * kC, 0.0), dw(kC, 0.0), db(kC, 0.0);
  cpu::layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), lw.data(), lb.data(), N,
                         kC);
  cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), lw.data(),
                          mean.data(), rstd.data(), N, kC);
  std::vector<float> ln_f(ln.size()), mean_f(N), rstd_f(N), dx_f(dx.size(), 0.0f), dw_f(kC, 0.0f),
      db_f(kC, 0.0f);
  const std::vector<float> x_f = to_float(x), lw_f = to_float(lw), lb_f = to_float(lb);
  cpu::layernorm_forward(ln_f.data(), mean_f.data(), rstd_f.data(), x_f.data(), lw_f.data(),
                         lb_f.data(), N, kC);
  cpu::layernorm_backward(dx_f.data(), dw_f.data(), db_f.data(), dout_f.data(), x_f.data(),
                          lw_f.data(), mean_f.data(), rstd_f.data(), N, kC);
  EXPECT_LT(rel_error(ln_f, ln), 1e-5);
  EXPECT_LT(rel_error(dx_f, dx), 1e-5);
  EXPECT_LT(rel_error(dw_f, dw), 1e-5);
  EXPECT_LT(rel_error(db_f, db), 1e-5);

  // GELU forward and backward over a wide range (the float path has its own exp)
  Vec wide(2001), g(wide.size()), dg(wide.size(), 0.0), ones(wide.size(), 1.0);
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = -20.0 + 0.02 * static_cast<double>(i);
  cpu::gelu_forward(g.data(), wide.data(), wide.size());
  cpu::gelu_backward(dg.data(), wide.data(), ones.data(), wide.size());
  std::vector<float> g_f(wide.size()), dg_f(wide.size(), 0.0f);
  const std::vector<float> wide_f = to_float(wide), ones_f = to_float(ones);
  cpu::gelu_forward(g_f.data(), wide_f.data(), wide.size());
  cpu::gelu_backward(dg_f.data(), wide_f.data(), ones_f.data(), wide.size());
  EXPECT_LT(rel_error(g_f, g), 1e-6);
  EXPECT_LT(rel_error(dg_f, dg), 1e-6);

  // encoder
  Vec enc(N * kC), dwte(kV * kC, 0.0), dwpe(kT * kC, 0.0);
  gpt2::encoder_forward(enc.data(), tokens.data(), wte.data(), wpe.data(), kB, kT, kC);
  gpt2::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), kB, kT, kC);
  std::vector<float> enc_f(enc.size()), dwte_f(dwte.size(), 0.0f), dwpe_f(dwpe.size(), 0.0f);
  const std::vector<float> wte_f = to_float(wte), wpe_f = to_float(wpe);
  gpt2::encoder_forward(enc_f.data(), tokens.data(), wte_f.data(), wpe_f.data(), kB, kT, kC);
  gpt2::encoder_backward(dwte_f.data(), dwpe_f.data(), dout_f.data(), tokens.data(), kB, kT, kC);
  EXPECT_LT(rel_error(enc_f, enc), 1e-6);
  EXPECT_LT(rel_error(dwte_f, dwte), 1e-6);
  EXPECT_LT(rel_error(dwpe_f, dwpe), 1e-6);
}

TEST(CpuKernels, FloatExpIsAccurate) {
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double expected = std::exp(static_cast<double>(x));
    ASSERT_NEAR(cpu::exp_vec(x) / expected, 1.0, 4e-7) << x;
  }
  EXPECT_LT(cpu::exp_vec(-std::numeric_limits<float>::infinity()), 1e-37f);
  EXPECT_LT(cpu::exp_vec(-1e30f), 1e-37f);
  EXPECT_GT(cpu::exp_vec(1e30f), 1e38f);
}

// exp_vec clamps its input, so the kernels that use it must carry a NaN through themselves: a
// diverged run has to show NaN, not a plausible loss.
TEST(CpuKernels, NanInputsGiveNanOutputs) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits(2 * 9, 0.5f), losses(2), dlogits(logits.size());
  logits[4] = nan;
  const std::vector<int32_t> targets = {1, 2};
  cpu::cross_entropy_forward(losses.data(), logits.data(), targets.data(), 2, 9);
  EXPECT_TRUE(std::isnan(losses[0]));
  EXPECT_FALSE(std::isnan(losses[1]));
  cpu::cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), 1.0f, 2, 9);
  EXPECT_TRUE(std::isnan(dlogits[0]));
  EXPECT_FALSE(std::isnan(dlogits[9]));

  std::vector<float> qkv(1 * 2 * 3 * 4, 0.25f), out(2 * 4), att(2 * 2 * 2);
  qkv[0] = nan;  // q of position 0, head 0
  gpt2::attention_forward(out.data(), att.data(), qkv.data(), 1, 2, 4, 2);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_FALSE(std::isnan(out[2]));  // head 1 is untouched

  std::vector<float> x = {nan, 1.0f}, g(2), dg(2, 0.0f), ones(2, 1.0f);
  cpu::gelu_forward(g.data(), x.data(), 2);
  cpu::gelu_backward(dg.data(), x.data(), ones.data(), 2);
  EXPECT_TRUE(std::isnan(g[0]));
  EXPECT_TRUE(std::isnan(dg[0]));
  EXPECT_FALSE(std::isnan(g[1]));
}

TEST(CpuKernels, BackwardKernelsAccumulate) {
  // Calling each backward pass twice from zero gives twice the gradient of one call.
  const std::vector<int32_t> tokens = {1, 1, 3, 4, 5, 6, 7, 8, 9, 1};
  const Vec x = random_vec(kN * kC, 150), w = random_vec(kOC * kC, 151),
            dout = random_vec(kN * kOC, 152);
  const Vec qkv = random_vec(kB * kT * 3 * kC, 153), dattn = random_vec(kB * kT * kC, 154);
  double tolerance = 1e-12;  // double; float rounds the second sum
  auto twice = [&](const std::function<void()>& run_once, const std::function<Vec()>& read) {
    run_once();
    const Vec once = read();
    run_once();
    const Vec two = read();
    for (size_t i = 0; i < once.size(); ++i)
      EXPECT_NEAR(two[i], 2.0 * once[i], tolerance * (1 + std::abs(once[i])));
  };
  {  // matmul: all three gradients
    Vec dinp(x.size(), 0.0), dweight(w.size(), 0.0), dbias(kOC, 0.0);
    twice(
        [&] {
          cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), x.data(),
                               w.data(), kN, kC, kOC);
        },
        [&] {
          Vec all = dinp;
          all.insert(all.end(), dweight.begin(), dweight.end());
          all.insert(all.end(), dbias.begin(), dbias.end());
          return all;
        });
  }
  {  // float matmul (oneDNN, beta = 1)
    tolerance = 1e-6;
    std::vector<float> dinp(x.size(), 0.0f), dweight(w.size(), 0.0f), dbias(kOC, 0.0f);
    const std::vector<float> xf = to_float(x), wf = to_float(w), df = to_float(dout);
    twice(
        [&] {
          cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), df.data(), xf.data(),
                               wf.data(), kN, kC, kOC);
        },
        [&] {
          Vec all(dinp.begin(), dinp.end());
          all.insert(all.end(), dweight.begin(), dweight.end());
          all.insert(all.end(), dbias.begin(), dbias.end());
          return all;
        });
  }
  {  // layernorm
    tolerance = 1e-12;
    const Vec lw = random_vec(kC, 155), lb = random_vec(kC, 156);
    Vec out(x.size()), mean(kN), rstd(kN), dx(x.size(), 0.0), dw(kC, 0.0), db(kC, 0.0);
    const Vec d = random_vec(x.size(), 157);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), lw.data(), lb.data(), kN,
                           kC);
    twice(
        [&] {
          cpu::layernorm_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), lw.data(),
                                  mean.data(), rstd.data(), kN, kC);
        },
        [&] {
          Vec all = dx;
          all.insert(all.end(), dw.begin(), dw.end());
          all.insert(all.end(), db.begin(), db.end());
          return all;
        });
  }
  {  // attention
    Vec out(kB * kT * kC), att(kB * kNH * kT * kT), scratch(att.size()), dqkv(qkv.size(), 0.0);
    gpt2::attention_forward(out.data(), att.data(), qkv.data(), kB, kT, kC, kNH);
    twice(
        [&] {
          gpt2::attention_backward(dqkv.data(), scratch.data(), dattn.data(), qkv.data(), att.data(),
                                  kB, kT, kC, kNH);
        },
        [&] { return dqkv; });
  }
  {  // gelu and encoder
    Vec dg(x.size(), 0.0), dwte(kV * kC, 0.0), dwpe(kT * kC, 0.0);
    const Vec d = random_vec(kB * kT * kC, 158);
    twice([&] { cpu::gelu_backward(dg.data(), x.data(), x.data(), x.size()); }, [&] { return dg; });
    twice(
        [&] {
          gpt2::encoder_backward(dwte.data(), dwpe.data(), d.data(), tokens.data(), kB, kT, kC);
        },
        [&] {
          Vec all = dwte;
          all.insert(all.end(), dwpe.begin(), dwpe.end());
          return all;
        });
  }
}
