// The GEMM tile program (the one the linear layers run) as C = A @ B: exact results against a
// double reference of the rounded inputs, for shapes with partial edge tiles and a deep K that
// streams both operands, and a plausible simulated efficiency.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "neuron/gemm_kernel.h"

namespace switchyard::neuron {
namespace {

struct Result {
  double max_error;  // max |C - ref| / max |ref|
  RunStats stats;
  GemmPlan plan;
};

Result run_gemm(const CoreConfig& config, int64_t M, int64_t K, int64_t N, DType in, DType out,
                int64_t check_rows = -1) {
  NeuronCore core(config);
  View a = core.hbm_alloc({M, K}, in, "A");
  View b = core.hbm_alloc({K, N}, in, "B");
  View c = core.hbm_alloc({M, N}, out, "C");
  Rng rng(5);
  std::vector<float> ha(static_cast<size_t>(M * K)), hb(static_cast<size_t>(K * N));
  for (float& x : ha) x = rng.normal();
  for (float& x : hb) x = rng.normal();
  core.write(a, ha);
  core.write(b, hb);
  GemmOptions options;
  options.compute_dtype = in;
  Result r;
  r.plan = gemm(core, c, a, b, options);
  ha = core.read(a);  // rounded as stored
  hb = core.read(b);
  std::vector<float> hc = core.read(c);
  double max_err = 0, max_ref = 0;
  // Rows spread over all M tiles (every row unless check_rows limits it).
  const int64_t rows = check_rows < 0 ? M : check_rows;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t n = 0, m = rows == M ? i : (i * 37) % M; n < N; ++n) {
      double ref = 0;
      for (int64_t k = 0; k < K; ++k) ref += static_cast<double>(ha[m * K + k]) * hb[k * N + n];
      max_err = std::max(max_err, std::fabs(hc[m * N + n] - ref));
      max_ref = std::max(max_ref, std::fabs(ref));
    }
  r.max_error = max_err / max_ref;
  r.stats = core.stats();
  return r;
}

TEST(NeuronGemm, ExactWithEdgeTilesFp32Output) {
  Result r = run_gemm(trn1_config(), 200, 300, 700, DType::kBF16, DType::kF32);
  EXPECT_LT(r.max_error, 1e-6);  // only fp32 summation order differs
  EXPECT_EQ(r.plan.m_tiles, 2);
  EXPECT_EQ(r.plan.k_tiles, 3);
  EXPECT_EQ(r.plan.n_tiles, 2);
}

TEST(NeuronGemm, Bf16OutputAndOtherDtypes) {
  EXPECT_LT(run_gemm(trn2_config(), 130, 129, 513, DType::kBF16, DType::kBF16).max_error, 4e-3);
  EXPECT_LT(run_gemm(trn2_config(), 64, 256, 128, DType::kF8E4M3, DType::kF32).max_error, 1e-6);
  EXPECT_LT(run_gemm(trn1_config(), 96, 64, 100, DType::kF32, DType::kF32).max_error, 1e-6);
}

TEST(NeuronGemm, SimulatedEfficiencyIsHighButNotAbovePeak) {
  Result r = run_gemm(trn1_config(), 1024, 1024, 1024, DType::kBF16, DType::kBF16, 16);
  EXPECT_LT(r.max_error, 4e-3);
  double percent = 100 * r.stats.tflops / trn1_config().peak_tflops_bf16;
  EXPECT_LE(percent, 100.0);
  EXPECT_GT(percent, 50.0);
  EXPECT_EQ(r.stats.matmul_flops, 2.0 * 1024 * 1024 * 1024);
  EXPECT_GT(r.stats.engines[0].utilization, 0.5);
}

TEST(NeuronGemm, DeepKStreamsBothOperands) {
  // K = 40000: neither A^T nor B fits in SBUF; both stream k-tile by k-tile.
  Result r = run_gemm(trn1_config(), 130, 40000, 140, DType::kBF16, DType::kF32, 7);
  EXPECT_LT(r.max_error, 1e-5);  // fp32 sums of 40000 exact products
  EXPECT_EQ(r.plan.k_tiles, 313);
  EXPECT_FALSE(r.plan.other_resident);
  EXPECT_EQ(r.stats.matmul_flops, 2.0 * 130 * 40000 * 140);
}

TEST(NeuronGemm, RejectsMismatchedShapes) {
  NeuronCore core(trn1_config());
  View a = core.hbm_alloc({128, 256}, DType::kBF16, "A");
  View b = core.hbm_alloc({256, 128}, DType::kBF16, "B");
  View c = core.hbm_alloc({128, 128}, DType::kBF16, "C");
  View wrong = core.hbm_alloc({64, 128}, DType::kBF16, "wrong");
  try {
    gemm(core, c, a, wrong);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("B has 64 rows (expected 256)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(gemm(core, wrong, a, b), Error);
  GemmJob job;
  job.stationary = {a, true};
  job.moving = {b, false};
  job.out = c;
  job.bias = wrong;
  EXPECT_THROW(gemm(core, job), Error);
}

}  // namespace
}  // namespace switchyard::neuron
