// The CPU RMSNorm and RoPE kernels (norm_rope_kernels.h): forward passes against the formulas
// written out here, backward passes against central finite differences in double precision, float
// against double, the accumulate-into-gradients rule, and RoPE on a strided view of a packed q|k|v
// projection; then the ops through CpuBackend, their operand errors included.
#include "backend/cpu/norm_rope_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/tensor.h"
#include "expect_error.h"
#include "gradient_check.h"
#include "random_data.h"

namespace switchyard::backend::cpu {
namespace {

using switchyard::dot;  // not cpu::dot over raw pointers

// Awkward sizes: nothing a multiple of the vector width.
constexpr int kN = 7, kC = 40;
constexpr double kEps = 1e-5;

// ---- RMSNorm ----

TEST(RmsNorm, ForwardMatchesFormula) {
  Vec inp = random_vec(kN * kC, 1, 3.0);
  for (int c = 0; c < kC; ++c) inp[2 * kC + c] *= 1e-3;  // a row much smaller than epsilon's scale
  const Vec weight = random_vec(kC, 2);
  Vec out(kN * kC), rstd(kN);
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), weight.data(), kN, kC, kEps);
  for (int n = 0; n < kN; ++n) {
    double mean_square = 0;
    for (int c = 0; c < kC; ++c) mean_square += inp[n * kC + c] * inp[n * kC + c] / kC;
    const double want_rstd = 1.0 / std::sqrt(mean_square + kEps);
    EXPECT_NEAR(rstd[n], want_rstd, 1e-12 * want_rstd);
    for (int c = 0; c < kC; ++c) {
      EXPECT_NEAR(out[n * kC + c], inp[n * kC + c] * want_rstd * weight[c], 1e-12);
    }
  }
}

TEST(RmsNorm, BackwardMatchesFiniteDifferencesAndAccumulates) {
  Vec inp = random_vec(kN * kC, 10, 2.0), weight = random_vec(kC, 11);
  const Vec w = random_vec(kN * kC, 12);
  Vec out(kN * kC), rstd(kN);
  auto loss = [&] {
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), weight.data(), kN, kC, kEps);
    return dot(out, w);
  };
  loss();
  const Vec prior_inp = random_vec(inp.size(), 13), prior_w = random_vec(kC, 14);
  Vec dinp = prior_inp, dweight = prior_w;
  rmsnorm_backward(dinp.data(), dweight.data(), w.data(), inp.data(), weight.data(), rstd.data(),
                   kN, kC);
  expect_grad(dinp, prior_inp, numeric_grad(inp, loss), "dinp");
  expect_grad(dweight, prior_w, numeric_grad(weight, loss), "dweight");
}

TEST(RmsNorm, FloatAgreesWithDouble) {
  const int N = 37, C = 129;  // parallel-sized rows and a remainder past the vector width
  const Vec inp = random_vec(N * C, 20, 4.0), weight = random_vec(C, 21),
            dout = random_vec(N * C, 22);
  Vec out(N * C), rstd(N), dinp(N * C, 0.5), dweight(C, -0.25);
  rmsnorm_forward(out.data(), rstd.data(), inp.data(), weight.data(), N, C, kEps);
  rmsnorm_backward(dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(),
                   rstd.data(), N, C);
  const std::vector<float> inp_f = to_float(inp), weight_f = to_float(weight),
                           dout_f = to_float(dout);
  std::vector<float> out_f(out.size()), rstd_f(N), dinp_f(dinp.size(), 0.5f),
      dweight_f(C, -0.25f);
  rmsnorm_forward(out_f.data(), rstd_f.data(), inp_f.data(), weight_f.data(), N, C, 1e-5f);
  rmsnorm_backward(dinp_f.data(), dweight_f.data(), dout_f.data(), inp_f.data(), weight_f.data(),
                   rstd_f.data(), N, C);
  EXPECT_LT(rel_error(out_f, out), 1e-6);
  EXPECT_LT(rel_error(rstd_f, rstd), 1e-6);
  EXPECT_LT(rel_error(dinp_f, dinp), 1e-5);
  EXPECT_LT(rel_error(dweight_f, dweight), 1e-5);
}

// ---- RoPE ----

// A packed projection row: q (6 heads) | k (2 heads) | v (2 heads), head_dim 10; RoPE rotates the
// q|k view of 8 heads whose rows are 10 heads apart.
constexpr int kHeads = 6, kKvHeads = 2, kHeadDim = 10, kPairs = kHeadDim / 2;
constexpr int kRotated = kHeads + kKvHeads, kRow = (kHeads + 2 * kKvHeads) * kHeadDim;
constexpr int kPositions = 11;

// cos and sin of a scaled rotation (YaRN's attention factor), [positions, pairs].
struct Tables {
  Vec cos, sin;
};
Tables rope_tables(double scale) {
  Tables t{Vec(kPositions * kPairs), Vec(kPositions * kPairs)};
  for (int p = 0; p < kPositions; ++p) {
    for (int i = 0; i < kPairs; ++i) {
      const double angle = p * std::pow(100.0, -static_cast<double>(i) / kPairs);
      t.cos[p * kPairs + i] = scale * std::cos(angle);
      t.sin[p * kPairs + i] = scale * std::sin(angle);
    }
  }
  return t;
}

const std::vector<int32_t> kRopePositions = {3, 0, 10, 7, 7, 1, 5};  // kN rows, one repeated

template <typename T>
void rope_packed(std::vector<T>& packed, const std::vector<T>& cos, const std::vector<T>& sin,
                 bool transpose) {
  rope(packed.data(), kRow, cos.data(), sin.data(), kRopePositions.data(), kN, kRotated, kHeadDim,
       transpose);
}

TEST(Rope, RotatesHalfSplitPairsOfQAndKAndLeavesVAlone) {
  const Tables t = rope_tables(1.25);
  const Vec before = random_vec(kN * kRow, 30);
  Vec x = before;
  rope_packed(x, t.cos, t.sin, false);
  for (int n = 0; n < kN; ++n) {
    const int p = kRopePositions[n];
    for (int h = 0; h < kRotated; ++h) {
      const int base = n * kRow + h * kHeadDim;
      for (int i = 0; i < kPairs; ++i) {
        const double a = before[base + i], b = before[base + i + kPairs];
        const double c = t.cos[p * kPairs + i], s = t.sin[p * kPairs + i];
        EXPECT_NEAR(x[base + i], a * c - b * s, 1e-14);
        EXPECT_NEAR(x[base + i + kPairs], b * c + a * s, 1e-14);
      }
    }
    for (int j = kRotated * kHeadDim; j < kRow; ++j) {
      ASSERT_EQ(x[n * kRow + j], before[n * kRow + j]) << "v of row " << n << " was written";
    }
  }
}

// loss(x) = w . rope(x): its gradient with respect to x is the transposed map applied to w (and w
// itself on the columns RoPE does not touch).
TEST(Rope, TransposeIsTheBackwardPass) {
  const Tables t = rope_tables(1.25);
  Vec x = random_vec(kN * kRow, 31);
  const Vec w = random_vec(kN * kRow, 32);
  auto loss = [&] {
    Vec y = x;
    rope_packed(y, t.cos, t.sin, false);
    return dot(y, w);
  };
  Vec analytic = w;
  rope_packed(analytic, t.cos, t.sin, true);
  EXPECT_LT(rel_error(analytic, numeric_grad(x, loss)), 1e-9);
}

// Without a scale the rotation is orthogonal: the transpose undoes it.
TEST(Rope, TransposeInvertsAnUnscaledRotation) {
  const Tables t = rope_tables(1.0);
  const Vec before = random_vec(kN * kRow, 33);
  Vec x = before;
  rope_packed(x, t.cos, t.sin, false);
  EXPECT_GT(rel_error(x, before), 1e-2);
  rope_packed(x, t.cos, t.sin, true);
  EXPECT_LT(rel_error(x, before), 1e-14);
}

TEST(Rope, FloatAgreesWithDouble) {
  const Tables t = rope_tables(1.25);
  const Vec before = random_vec(kN * kRow, 34, 3.0);
  for (const bool transpose : {false, true}) {
    Vec x = before;
    rope_packed(x, t.cos, t.sin, transpose);
    std::vector<float> x_f = to_float(before);
    rope_packed(x_f, to_float(t.cos), to_float(t.sin), transpose);
    EXPECT_LT(rel_error(x_f, x), 1e-6) << "transpose " << transpose;
  }
}

// ---- through CpuBackend ----

Tensor f32(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kF32, shape);
}
Tensor i32(const std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Tensor::dense(v.data(), DType::kI32, shape);
}

TEST(RmsNormOp, RunsTheKernelAndChecksOperands) {
  CpuBackend backend;
  std::vector<float> inp = random_floats(kN * kC, 40, 2.0f), weight = random_floats(kC, 41),
                     out(kN * kC), rstd(kN);
  backend.run(ops::RmsNorm{.out = f32(out, {kN, kC}), .rstd = f32(rstd, {kN}),
                           .inp = f32(inp, {kN, kC}), .weight = f32(weight, {kC})});
  std::vector<float> want(out.size()), want_rstd(kN);
  rmsnorm_forward(want.data(), want_rstd.data(), inp.data(), weight.data(), kN, kC, 1e-5f);
  EXPECT_EQ(out, want);
  EXPECT_EQ(rstd, want_rstd);

  std::vector<float> dout = random_floats(kN * kC, 42), dinp(kN * kC, 1.0f), dweight(kC, 2.0f);
  backend.run(ops::RmsNormBackward{.dinp = f32(dinp, {kN, kC}), .dweight = f32(dweight, {kC}),
                                   .dout = f32(dout, {kN, kC}), .inp = f32(inp, {kN, kC}),
                                   .weight = f32(weight, {kC}), .rstd = f32(rstd, {kN})});
  std::vector<float> want_dinp(kN * kC, 1.0f), want_dweight(kC, 2.0f);
  rmsnorm_backward(want_dinp.data(), want_dweight.data(), dout.data(), inp.data(), weight.data(),
                   rstd.data(), kN, kC);
  EXPECT_EQ(dinp, want_dinp);
  EXPECT_EQ(dweight, want_dweight);

  expect_error([&] {
    backend.run(ops::RmsNorm{.out = f32(out, {kN, kC}), .rstd = f32(rstd, {kN}),
                             .inp = f32(inp, {kN, kC}), .weight = f32(weight, {kC - 1})});
  }, {"cpu rmsnorm", "weight", "40 elements"});
  std::vector<uint16_t> half(kN * kC);
  expect_error([&] {
    backend.run(ops::RmsNorm{.out = Tensor::dense(half.data(), DType::kBF16, {kN, kC}),
                             .rstd = f32(rstd, {kN}), .inp = f32(inp, {kN, kC}),
                             .weight = f32(weight, {kC})});
  }, {"cpu rmsnorm", "out must be fp32"});
}

TEST(RopeOp, RotatesAStridedViewAndChecksOperands) {
  CpuBackend backend;
  const Tables t = rope_tables(1.25);
  std::vector<float> cos = to_float(t.cos), sin = to_float(t.sin);
  const std::vector<float> before = random_floats(kN * kRow, 50);
  std::vector<float> packed = before;
  Tensor qk = Tensor::dense(packed.data(), DType::kF32, {kN, kRotated, kHeadDim});
  qk.strides[0] = kRow;
  const Tensor positions = i32(kRopePositions, {kN});
  backend.run(ops::Rope{.x = qk, .cos = f32(cos, {kPositions, kPairs}),
                        .sin = f32(sin, {kPositions, kPairs}), .positions = positions});
  std::vector<float> want = before;
  rope_packed(want, cos, sin, false);
  EXPECT_EQ(packed, want);
  backend.run(ops::Rope{.x = qk, .cos = f32(cos, {kPositions, kPairs}),
                        .sin = f32(sin, {kPositions, kPairs}), .positions = positions,
                        .transpose = true});
  rope_packed(want, cos, sin, true);
  EXPECT_EQ(packed, want);

  const std::vector<int32_t> far = {3, 0, 10, 7, 11, 1, 5};  // position 11 of a table of 11
  expect_error([&] {
    backend.run(ops::Rope{.x = qk, .cos = f32(cos, {kPositions, kPairs}),
                          .sin = f32(sin, {kPositions, kPairs}), .positions = i32(far, {kN})});
  }, {"cpu rope", "position 11 at row 4", "[0, 11)"});
  Tensor odd = Tensor::dense(packed.data(), DType::kF32, {kN, 2, 9});
  odd.strides[0] = kRow;
  expect_error([&] {
    backend.run(ops::Rope{.x = odd, .cos = f32(cos, {kPositions, kPairs}),
                          .sin = f32(sin, {kPositions, kPairs}), .positions = positions});
  }, {"cpu rope", "even head_dim"});
  expect_error([&] {
    backend.run(ops::Rope{.x = qk, .cos = f32(cos, {kPositions, kPairs}),
                          .sin = f32(sin, {kPositions - 1, kPairs}), .positions = positions});
  }, {"cpu rope", "sin must be [11, 5]"});
  Tensor overlapping = qk;
  overlapping.strides[0] = kRotated * kHeadDim - 1;  // rows that overlap
  expect_error([&] {
    backend.run(ops::Rope{.x = overlapping, .cos = f32(cos, {kPositions, kPairs}),
                          .sin = f32(sin, {kPositions, kPairs}), .positions = positions});
  }, {"cpu rope", "x must be a [7, 8, 10] view"});
}

}  // namespace
}  // namespace switchyard::backend::cpu
