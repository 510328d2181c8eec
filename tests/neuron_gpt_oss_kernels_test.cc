// The trn*-sim backend's gpt-oss tile programs (clamped SwiGLU) against the CPU kernel templates
// (moe_kernels.h) run in double on the same rounded inputs: fp32 tensors with fp32 compute agree to
// fp32 rounding, bf16 activations with bf16 compute to bf16 rounding. Inputs straddle the clamps so
// every branch of the gradient is taken. Backward kernels are checked to accumulate.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/moe_kernels.h"
#include "backend/neuron/clamped_swiglu_kernel.h"
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

constexpr float kAlpha = 1.702f, kLimit = 7.0f;

View random_tensor(NeuronCore& core, const std::vector<int64_t>& shape, DType dtype,
                   const std::string& name, Rng& rng, float scale) {
  View v = core.hbm_alloc(shape, dtype, name);
  std::vector<float> values(static_cast<size_t>(v.elements()));
  for (float& x : values) x = scale * rng.normal();
  core.write(v, values);
  return v;
}

void check_swiglu_forward(const Mode& mode, int64_t A, int64_t I) {
  SCOPED_TRACE(std::string(mode.name) + " A=" + std::to_string(A) + " I=" + std::to_string(I));
  NeuronCore core(trn2_config());
  Rng rng(31);
  // A scale of 6 puts about a quarter of the values past +-7: both clamps are exercised.
  View inp = random_tensor(core, {A, 2 * I}, mode.act, "inp", rng, 6.0f);
  View out = core.hbm_alloc({A, I}, mode.act, "out");
  clamped_swiglu_forward(core, out, inp, kAlpha, kLimit, mode.compute);
  const Host x = read(core, inp);
  Host ref(static_cast<size_t>(A * I));
  cpu::clamped_swiglu_forward<double>(ref.data(), x.data(), static_cast<int>(A),
                                      static_cast<int>(I), kAlpha, kLimit);
  EXPECT_LT(relative_error(read(core, out), ref), mode.tol);
}

TEST(NeuronClampedSwiglu, ForwardMatchesCpuReference) {
  check_swiglu_forward(kFp32, 5, 7);       // a sliver of one tile
  check_swiglu_forward(kFp32, 130, 1100);  // two row tiles, two column chunks
  check_swiglu_forward(kBf16, 37, 2880);   // gpt-oss-20b's width
}

void check_swiglu_backward(const Mode& mode, int64_t A, int64_t I) {
  SCOPED_TRACE(std::string(mode.name) + " A=" + std::to_string(A) + " I=" + std::to_string(I));
  NeuronCore core(trn2_config());
  Rng rng(32);
  View inp = random_tensor(core, {A, 2 * I}, mode.act, "inp", rng, 6.0f);
  View dout = random_tensor(core, {A, I}, mode.act, "dout", rng, 1.0f);
  View dinp = random_tensor(core, {A, 2 * I}, mode.act, "dinp", rng, 1.0f);  // pre-filled
  const Host x = read(core, inp), d = read(core, dout);
  Host ref = read(core, dinp);
  clamped_swiglu_backward(core, dinp, inp, dout, kAlpha, kLimit, mode.compute);
  cpu::clamped_swiglu_backward<double>(ref.data(), x.data(), d.data(), static_cast<int>(A),
                                       static_cast<int>(I), kAlpha, kLimit);
  EXPECT_LT(relative_error(read(core, dinp), ref), mode.tol);
}

TEST(NeuronClampedSwiglu, BackwardAccumulatesLikeCpuReference) {
  check_swiglu_backward(kFp32, 5, 7);
  check_swiglu_backward(kFp32, 130, 1100);
  check_swiglu_backward(kBf16, 37, 700);
}

TEST(NeuronClampedSwiglu, ClampsPassTheGradientAtTheirBounds) {
  // gate and up exactly at the bounds, and just past them.
  NeuronCore core(trn2_config());
  View inp = core.hbm_alloc({1, 8}, DType::kF32, "inp");
  core.write(inp, std::vector<float>{kLimit, kLimit, 7.5f, -kLimit, 1.0f, 7.5f, 1.0f, -7.5f});
  View dout = core.hbm_alloc({1, 4}, DType::kF32, "dout");
  core.write(dout, std::vector<float>{1.0f, 1.0f, 1.0f, 1.0f});
  View dinp = core.hbm_alloc({1, 8}, DType::kF32, "dinp");
  core.write(dinp, std::vector<float>(8, 0.0f));
  clamped_swiglu_backward(core, dinp, inp, dout, kAlpha, kLimit, DType::kF32);
  const std::vector<float> g = core.read(dinp);
  EXPECT_NE(g[0], 0.0f);  // gate at the limit passes
  EXPECT_NE(g[1], 0.0f);  // up at +limit passes
  EXPECT_EQ(g[2], 0.0f);  // gate past the limit: clamped
  EXPECT_NE(g[3], 0.0f);  // up at -limit passes
  EXPECT_EQ(g[5], 0.0f);  // up past +limit: clamped
  EXPECT_EQ(g[7], 0.0f);  // up past -limit: clamped
}

TEST(NeuronClampedSwiglu, RejectsBadShapes) {
  NeuronCore core(trn2_config());
  View odd = core.hbm_alloc({4, 7}, DType::kF32, "odd");
  View inp = core.hbm_alloc({4, 8}, DType::kF32, "inp");
  View out = core.hbm_alloc({4, 3}, DType::kF32, "out");
  expect_error([&] { clamped_swiglu_forward(core, out, odd, kAlpha, kLimit, DType::kF32); },
               {"clamped_swiglu_forward", "[A, 2I]"});
  expect_error([&] { clamped_swiglu_forward(core, out, inp, kAlpha, kLimit, DType::kF32); },
               {"clamped_swiglu_forward", "out", "[4, 4]"});
}

}  // namespace
}  // namespace switchyard::backend::neuron
