// The trn*-sim backend's layernorm, gelu, residual and embedding tile programs against the CPU
// kernel templates (cpu_kernels.h) run in double on the same (rounded) inputs: fp32 tensors with
// fp32 compute agree to fp32 rounding, bf16 activations with bf16 compute to bf16 rounding.
// Backward kernels are checked to accumulate into pre-filled gradients. The gpt2-124m-sized cases
// print their simulated time and the host time of the call, and are checked like the others.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/norm_rope_kernels.h"
#include "backend/neuron/embedding_kernel.h"
#include "backend/neuron/gelu_kernel.h"
#include "backend/neuron/layernorm_kernel.h"
#include "backend/neuron/residual_kernel.h"
#include "backend/neuron/rmsnorm_kernel.h"
#include "core/rng.h"
#include "expect_error.h"
#include "neuron_test_tensors.h"
#include "relative_error.h"
#include "neuron/config.h"

namespace switchyard::backend::neuron {
namespace {

namespace cpu = ::switchyard::backend::cpu;
using ::switchyard::neuron::Host;
using ::switchyard::neuron::random_tensor;
using ::switchyard::neuron::read;
using ::switchyard::neuron::trn1_config;
using ::switchyard::neuron::trn2_config;

// How the backend stores activations and computes: fp32 parity mode or the bf16 hardware mode.
struct Mode {
  DType act;      // HBM dtype of activations and activation gradients
  DType compute;  // SBUF tile dtype
  double tol;     // relative error bound against the double reference
  const char* name;
};
constexpr Mode kFp32{DType::kF32, DType::kF32, 1e-5, "fp32"};
constexpr Mode kBf16{DType::kBF16, DType::kBF16, 1e-2, "bf16"};

std::string label(const Mode& mode, const std::string& what) {
  return std::string(mode.name) + " " + what;
}

// ---- layernorm ----

void check_layernorm_forward(const Mode& mode, int64_t N, int64_t C) {
  SCOPED_TRACE(label(mode, "layernorm_forward N=" + std::to_string(N) + " C=" + std::to_string(C)));
  NeuronCore core(trn2_config());
  Rng rng(11);
  View inp = random_tensor(core, {N, C}, mode.act, "inp", rng, 2.0f, 0.7f);
  View weight = random_tensor(core, {C}, DType::kF32, "weight", rng, 0.5f, 1.0f);
  View bias = random_tensor(core, {C}, DType::kF32, "bias", rng, 0.3f);
  View out = core.hbm_alloc({N, C}, mode.act, "out");
  View mean = core.hbm_alloc({N}, DType::kF32, "mean");
  View rstd = core.hbm_alloc({N}, DType::kF32, "rstd");
  layernorm_forward(core, out, mean, rstd, inp, weight, bias, mode.compute);

  Host x = read(core, inp), w = read(core, weight), b = read(core, bias);
  Host ref(static_cast<size_t>(N * C)), ref_mean(static_cast<size_t>(N)), ref_rstd(ref_mean.size());
  cpu::layernorm_forward<double>(ref.data(), ref_mean.data(), ref_rstd.data(), x.data(), w.data(),
                                 b.data(), static_cast<int>(N), static_cast<int>(C));
  EXPECT_LT(relative_error(read(core, out), ref), mode.tol);
  // Statistics are fp32 whatever the mode (from the rounded inputs the kernel saw).
  EXPECT_LT(relative_error(read(core, mean), ref_mean), 1e-5);
  EXPECT_LT(relative_error(read(core, rstd), ref_rstd), 1e-5);
}

TEST(NeuronLayerNorm, ForwardMatchesCpuReference) {
  check_layernorm_forward(kFp32, 39, 54);   // one partial tile
  check_layernorm_forward(kFp32, 300, 200); // two full tiles and a partial one
  check_layernorm_forward(kBf16, 39, 54);
  check_layernorm_forward(kBf16, 257, 768);
}

void check_layernorm_backward(const Mode& mode, int64_t N, int64_t C) {
  SCOPED_TRACE(label(mode, "layernorm_backward N=" + std::to_string(N) + " C=" + std::to_string(C)));
  NeuronCore core(trn2_config());
  Rng rng(12);
  View inp = random_tensor(core, {N, C}, mode.act, "inp", rng, 1.5f, -0.4f);
  View dout = random_tensor(core, {N, C}, mode.act, "dout", rng);
  View weight = random_tensor(core, {C}, DType::kF32, "weight", rng, 0.5f, 1.0f);
  // Pre-filled gradients: the kernel must add to them.
  View dinp = random_tensor(core, {N, C}, mode.act, "dinp", rng);
  View dweight = random_tensor(core, {C}, DType::kF32, "dweight", rng);
  View dbias = random_tensor(core, {C}, DType::kF32, "dbias", rng);
  // The statistics the forward pass would have saved, in fp32.
  Host x = read(core, inp), w = read(core, weight);
  Host fwd(static_cast<size_t>(N * C)), m(static_cast<size_t>(N)), s(m.size());
  Host zero_bias(static_cast<size_t>(C), 0.0);
  cpu::layernorm_forward<double>(fwd.data(), m.data(), s.data(), x.data(), w.data(),
                                 zero_bias.data(), static_cast<int>(N), static_cast<int>(C));
  View mean = core.hbm_alloc({1, N}, DType::kF32, "mean");
  View rstd = core.hbm_alloc({1, N}, DType::kF32, "rstd");
  core.write(mean, std::vector<float>(m.begin(), m.end()));
  core.write(rstd, std::vector<float>(s.begin(), s.end()));

  Host ref_dinp = read(core, dinp), ref_dw = read(core, dweight), ref_db = read(core, dbias);
  Host d = read(core, dout), mh = read(core, mean), sh = read(core, rstd);
  layernorm_backward(core, dinp, dweight, dbias, dout, inp, weight, mean, rstd, mode.compute);
  cpu::layernorm_backward<double>(ref_dinp.data(), ref_dw.data(), ref_db.data(), d.data(), x.data(),
                                  w.data(), mh.data(), sh.data(), static_cast<int>(N),
                                  static_cast<int>(C));
  EXPECT_LT(relative_error(read(core, dinp), ref_dinp), mode.tol);
  // Parameter gradients are fp32 sums of products of compute-dtype tiles.
  const double param_tol = mode.compute == DType::kF32 ? 1e-5 : 5e-3;
  EXPECT_LT(relative_error(read(core, dweight), ref_dw), param_tol);
  EXPECT_LT(relative_error(read(core, dbias), ref_db), param_tol);
}

TEST(NeuronLayerNorm, BackwardAccumulatesLikeCpuReference) {
  check_layernorm_backward(kFp32, 39, 54);
  check_layernorm_backward(kFp32, 300, 200);
  check_layernorm_backward(kBf16, 39, 54);
  check_layernorm_backward(kBf16, 257, 768);
}

TEST(NeuronLayerNorm, BackwardWideRowsSumOutsidePsum) {
  // 2C > 8 PSUM banks of 512: the column sums are closed per tile and added in SBUF.
  check_layernorm_backward(kFp32, 130, 2100);
}

// ---- rmsnorm ----

void check_rmsnorm_forward(const Mode& mode, int64_t N, int64_t C) {
  SCOPED_TRACE(label(mode, "rmsnorm_forward N=" + std::to_string(N) + " C=" + std::to_string(C)));
  NeuronCore core(trn2_config());
  Rng rng(21);
  View inp = random_tensor(core, {N, C}, mode.act, "inp", rng, 2.0f, 0.7f);
  View weight = random_tensor(core, {C}, DType::kF32, "weight", rng, 0.5f, 1.0f);
  View out = core.hbm_alloc({N, C}, mode.act, "out");
  View rstd = core.hbm_alloc({N}, DType::kF32, "rstd");
  rmsnorm_forward(core, out, rstd, inp, weight, mode.compute, 1e-5f);

  Host x = read(core, inp), w = read(core, weight);
  Host ref(static_cast<size_t>(N * C)), ref_rstd(static_cast<size_t>(N));
  cpu::rmsnorm_forward<double>(ref.data(), ref_rstd.data(), x.data(), w.data(),
                               static_cast<int>(N), static_cast<int>(C), 1e-5);
  EXPECT_LT(relative_error(read(core, out), ref), mode.tol);
  EXPECT_LT(relative_error(read(core, rstd), ref_rstd), 1e-5);  // fp32 whatever the mode
}

TEST(NeuronRmsNorm, ForwardMatchesCpuReference) {
  check_rmsnorm_forward(kFp32, 39, 54);    // one partial tile
  check_rmsnorm_forward(kFp32, 300, 200);  // two full tiles and a partial one
  check_rmsnorm_forward(kBf16, 39, 54);
  check_rmsnorm_forward(kBf16, 257, 2880);  // gpt-oss-20b's width
}

void check_rmsnorm_backward(const Mode& mode, int64_t N, int64_t C) {
  SCOPED_TRACE(label(mode, "rmsnorm_backward N=" + std::to_string(N) + " C=" + std::to_string(C)));
  NeuronCore core(trn2_config());
  Rng rng(22);
  View inp = random_tensor(core, {N, C}, mode.act, "inp", rng, 1.5f, -0.4f);
  View dout = random_tensor(core, {N, C}, mode.act, "dout", rng);
  View weight = random_tensor(core, {C}, DType::kF32, "weight", rng, 0.5f, 1.0f);
  // Pre-filled gradients: the kernel must add to them.
  View dinp = random_tensor(core, {N, C}, mode.act, "dinp", rng);
  View dweight = random_tensor(core, {C}, DType::kF32, "dweight", rng);
  // The rstd the forward pass would have saved, in fp32.
  Host x = read(core, inp), w = read(core, weight);
  Host fwd(static_cast<size_t>(N * C)), s(static_cast<size_t>(N));
  cpu::rmsnorm_forward<double>(fwd.data(), s.data(), x.data(), w.data(), static_cast<int>(N),
                               static_cast<int>(C), 1e-5);
  View rstd = core.hbm_alloc({1, N}, DType::kF32, "rstd");
  core.write(rstd, std::vector<float>(s.begin(), s.end()));

  Host ref_dinp = read(core, dinp), ref_dw = read(core, dweight);
  Host d = read(core, dout), sh = read(core, rstd);
  rmsnorm_backward(core, dinp, dweight, dout, inp, weight, rstd, mode.compute);
  cpu::rmsnorm_backward<double>(ref_dinp.data(), ref_dw.data(), d.data(), x.data(), w.data(),
                                sh.data(), static_cast<int>(N), static_cast<int>(C));
  EXPECT_LT(relative_error(read(core, dinp), ref_dinp), mode.tol);
  const double param_tol = mode.compute == DType::kF32 ? 1e-5 : 5e-3;
  EXPECT_LT(relative_error(read(core, dweight), ref_dw), param_tol);
}

TEST(NeuronRmsNorm, BackwardAccumulatesLikeCpuReference) {
  check_rmsnorm_backward(kFp32, 39, 54);
  check_rmsnorm_backward(kFp32, 300, 600);  // dweight in two PSUM chunks
  check_rmsnorm_backward(kBf16, 39, 54);
  check_rmsnorm_backward(kBf16, 257, 768);
}

TEST(NeuronRmsNorm, RejectsBadShapes) {
  NeuronCore core(trn1_config());
  View inp = core.hbm_alloc({10, 8}, DType::kF32, "inp");
  View out = core.hbm_alloc({10, 9}, DType::kF32, "out");
  View good_out = core.hbm_alloc({10, 8}, DType::kF32, "good_out");
  View stat = core.hbm_alloc({10}, DType::kF32, "stat");
  View short_stat = core.hbm_alloc({9}, DType::kF32, "short_stat");
  View w = core.hbm_alloc({8}, DType::kF32, "w");
  expect_error([&] { rmsnorm_forward(core, out, stat, inp, w, DType::kF32, 1e-5f); },
               {"rmsnorm_forward", "out", "[10, 8]"});
  expect_error([&] { rmsnorm_forward(core, good_out, short_stat, inp, w, DType::kF32, 1e-5f); },
               {"rmsnorm_forward", "rstd", "10 elements"});
  expect_error([&] { rmsnorm_backward(core, good_out, w, out, inp, w, stat, DType::kF32); },
               {"rmsnorm_backward", "dout", "[10, 8]"});
}

TEST(NeuronLayerNorm, RejectsBadShapes) {
  NeuronCore core(trn1_config());
  View inp = core.hbm_alloc({10, 8}, DType::kF32, "inp");
  View out = core.hbm_alloc({10, 9}, DType::kF32, "out");
  View good_out = core.hbm_alloc({10, 8}, DType::kF32, "good_out");
  View stat = core.hbm_alloc({10}, DType::kF32, "stat");
  View short_stat = core.hbm_alloc({9}, DType::kF32, "short_stat");
  View w = core.hbm_alloc({8}, DType::kF32, "w");
  View wide_w = core.hbm_alloc({2, 8}, DType::kF32, "wide_w");
  expect_error([&] { layernorm_forward(core, out, stat, stat, inp, w, w, DType::kF32); },
               {"layernorm_forward", "out", "[10, 8]"});
  expect_error([&] { layernorm_forward(core, good_out, short_stat, stat, inp, w, w, DType::kF32); },
               {"layernorm_forward", "mean", "10 elements"});
  expect_error([&] { layernorm_forward(core, good_out, stat, stat, inp, wide_w, w, DType::kF32); },
               {"layernorm_forward", "weight"});
  expect_error([&] { layernorm_forward(core, good_out, stat, stat, inp, w, w, DType::kF16); },
               {"layernorm_forward", "compute dtype", "float16"});
  expect_error(
      [&] { layernorm_backward(core, good_out, w, w, out, inp, w, stat, stat, DType::kF32); },
      {"layernorm_backward", "dout", "[10, 8]"});
}

// ---- gelu ----

void check_gelu(const Mode& mode, int64_t n) {
  SCOPED_TRACE(label(mode, "gelu n=" + std::to_string(n)));
  NeuronCore core(trn2_config());
  Rng rng(13);
  View inp = random_tensor(core, {n}, mode.act, "inp", rng, 2.5f);
  View out = core.hbm_alloc({n}, mode.act, "out");
  View dout = random_tensor(core, {n}, mode.act, "dout", rng);
  View dinp = random_tensor(core, {n}, mode.act, "dinp", rng);  // accumulated into
  Host x = read(core, inp), d = read(core, dout), ref_dinp = read(core, dinp);
  gelu_forward(core, out, inp, mode.compute);
  gelu_backward(core, dinp, inp, dout, mode.compute);

  Host ref_out(x.size());
  cpu::gelu_forward<double>(ref_out.data(), x.data(), x.size());
  cpu::gelu_backward<double>(ref_dinp.data(), x.data(), d.data(), x.size());
  EXPECT_LT(relative_error(read(core, out), ref_out), mode.tol);
  EXPECT_LT(relative_error(read(core, dinp), ref_dinp), mode.tol);
}

TEST(NeuronGelu, ForwardAndBackwardMatchCpuReference) {
  check_gelu(kFp32, 1);
  check_gelu(kFp32, 1000);              // a [128, 7] block and a tail row
  check_gelu(kFp32, 128 * 3000 + 77);   // two blocks (2048 + 952 columns) and a tail
  check_gelu(kBf16, 1000);
  check_gelu(kBf16, 128 * 3000 + 77);
}

TEST(NeuronGelu, BackwardIsExactDerivativeAtLargeArguments) {
  // Where sigmoid saturates, 1 - s must not cancel: gelu'(x) -> 1 for large x, 0 for large -x.
  NeuronCore core(trn2_config());
  const std::vector<float> xs = {-12.0f, -6.0f, -3.0f, -1.0f, 0.0f, 0.5f, 3.0f, 6.0f, 12.0f};
  const int64_t n = static_cast<int64_t>(xs.size());
  View inp = core.hbm_alloc({n}, DType::kF32, "inp");
  View dout = core.hbm_alloc({n}, DType::kF32, "dout");
  View dinp = core.hbm_alloc({n}, DType::kF32, "dinp");
  core.write(inp, xs);
  core.write(dout, std::vector<float>(xs.size(), 1.0f));
  core.write(dinp, std::vector<float>(xs.size(), 0.0f));
  gelu_backward(core, dinp, inp, dout, DType::kF32);
  Host x(xs.begin(), xs.end()), ones(xs.size(), 1.0), ref(xs.size(), 0.0);
  cpu::gelu_backward<double>(ref.data(), x.data(), ones.data(), x.size());
  Host got = read(core, dinp);
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6) << "x = " << xs[i];
}

TEST(NeuronGelu, RejectsBadShapes) {
  NeuronCore core(trn1_config());
  View a = core.hbm_alloc({100}, DType::kF32, "a");
  View b = core.hbm_alloc({99}, DType::kF32, "b");
  View ids = core.hbm_alloc({100}, DType::kI32, "ids");
  expect_error([&] { gelu_forward(core, b, a, DType::kF32); }, {"gelu_forward", "out", "100"});
  expect_error([&] { gelu_backward(core, a, a, ids, DType::kF32); },
               {"gelu_backward", "dout", "float"});
  expect_error([&] { gelu_forward(core, a, a, DType::kI32); }, {"gelu_forward", "compute dtype"});
}

// ---- residual ----

void check_residual(const Mode& mode, int64_t n) {
  SCOPED_TRACE(label(mode, "residual n=" + std::to_string(n)));
  NeuronCore core(trn2_config());
  Rng rng(14);
  View a = random_tensor(core, {n}, mode.act, "a", rng);
  View b = random_tensor(core, {n}, mode.act, "b", rng);
  View out = core.hbm_alloc({n}, mode.act, "out");
  View dst = random_tensor(core, {n}, mode.act, "dst", rng);
  // An fp32 destination with a compute-dtype source, as a parameter gradient would be.
  View dst32 = random_tensor(core, {n}, DType::kF32, "dst32", rng);
  Host ha = read(core, a), hb = read(core, b), ref_dst = read(core, dst), ref_dst32 = read(core, dst32);
  residual_forward(core, out, a, b, mode.compute);
  accumulate(core, dst, a, mode.compute);
  accumulate(core, dst32, b, mode.compute);

  Host ref_out(ha.size());
  cpu::residual_forward<double>(ref_out.data(), ha.data(), hb.data(), ha.size());
  cpu::accumulate<double>(ref_dst.data(), ha.data(), ha.size());
  cpu::accumulate<double>(ref_dst32.data(), hb.data(), hb.size());
  EXPECT_LT(relative_error(read(core, out), ref_out), mode.tol);
  EXPECT_LT(relative_error(read(core, dst), ref_dst), mode.tol);
  EXPECT_LT(relative_error(read(core, dst32), ref_dst32), 1e-6);  // summed in fp32
}

TEST(NeuronResidual, AddAndAccumulateMatchCpuReference) {
  check_residual(kFp32, 5);
  check_residual(kFp32, 128 * 9000 + 100);  // blocks of 4096, 4096, 808 columns and a tail
  check_residual(kBf16, 1000);
  check_residual(kBf16, 128 * 9000 + 100);
}

TEST(NeuronResidual, RejectsBadShapes) {
  NeuronCore core(trn1_config());
  View a = core.hbm_alloc({64}, DType::kF32, "a");
  View b = core.hbm_alloc({65}, DType::kF32, "b");
  View m = core.hbm_alloc({8, 8}, DType::kF32, "m");
  expect_error([&] { residual_forward(core, a, a, b, DType::kF32); },
               {"residual_forward", "b", "64 contiguous elements"});
  expect_error([&] { accumulate(core, a, b, DType::kBF16); }, {"accumulate", "src"});
  // A strided view is not flat.
  expect_error([&] { accumulate(core, m.cols(0, 4), m.cols(4, 4), DType::kF32); },
               {"accumulate", "dst", "contiguous"});
  accumulate(core, m, a, DType::kF32);  // a 2-D tensor of 64 elements is fine
}

// ---- embedding ----

// How the position ids of a case are laid out.
enum class Positions {
  kWindows,  // row b * T + t is at position t (a training window)
  kSame,     // every row at position max_t - 1 (one decoding step)
  kRandom,   // any position in [0, max_t) (a flat batch of sequences at different points)
  kNone,     // no position table: a plain row gather
};

struct EmbeddingCase {
  int B, T, C, V, max_t;
  Positions positions = Positions::kWindows;
};

// int32 ids as an HBM tensor [n, 1], and the same ids on the host.
View id_tensor(NeuronCore& core, const std::vector<int32_t>& ids, const char* name) {
  View v = core.hbm_alloc({static_cast<int64_t>(ids.size()), 1}, DType::kI32, name);
  core.write(v, std::vector<float>(ids.begin(), ids.end()));
  return v;
}

void check_embedding(const Mode& mode, const EmbeddingCase& e, uint64_t seed) {
  SCOPED_TRACE(label(mode, "embedding B=" + std::to_string(e.B) + " T=" + std::to_string(e.T) +
                               " C=" + std::to_string(e.C) + " V=" + std::to_string(e.V) +
                               " positions " + std::to_string(static_cast<int>(e.positions))));
  NeuronCore core(trn2_config());
  Rng rng(seed);
  const int64_t n = static_cast<int64_t>(e.B) * e.T;
  std::vector<int32_t> tok(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  for (int32_t& id : tok) id = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(e.V));
  for (int64_t i = 0; i < n; ++i) {
    switch (e.positions) {
      case Positions::kWindows: pos[i] = static_cast<int32_t>(i % e.T); break;
      case Positions::kSame: pos[i] = e.max_t - 1; break;
      default: pos[i] = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(e.max_t));
    }
  }
  const bool positions = e.positions != Positions::kNone;
  View tokens = id_tensor(core, tok, "tokens");
  View position_ids = positions ? id_tensor(core, pos, "positions") : View();
  View wte = random_tensor(core, {e.V, e.C}, DType::kF32, "wte", rng);
  View wpe = positions ? random_tensor(core, {e.max_t, e.C}, DType::kF32, "wpe", rng) : View();
  View out = core.hbm_alloc({n, e.C}, mode.act, "out");
  View dout = random_tensor(core, {n, e.C}, mode.act, "dout", rng);
  View dwte = random_tensor(core, {e.V, e.C}, DType::kF32, "dwte", rng);
  View dwpe = positions ? random_tensor(core, {e.max_t, e.C}, DType::kF32, "dwpe", rng) : View();
  Host hwte = read(core, wte), d = read(core, dout), ref_dwte = read(core, dwte);
  Host hwpe = positions ? read(core, wpe) : Host();
  Host ref_dwpe = positions ? read(core, dwpe) : Host();

  embedding_forward(core, out, tokens, wte, position_ids, wpe, mode.compute);
  embedding_backward(core, dwte, dwpe, dout, tokens, position_ids, mode.compute);

  Host ref_out(static_cast<size_t>(n * e.C));
  cpu::embedding_forward<double>(ref_out.data(), tok.data(), hwte.data(),
                                 positions ? pos.data() : nullptr,
                                 positions ? hwpe.data() : nullptr, static_cast<int>(n), e.C);
  cpu::embedding_backward<double>(ref_dwte.data(), positions ? ref_dwpe.data() : nullptr, d.data(),
                                  tok.data(), positions ? pos.data() : nullptr,
                                  static_cast<int>(n), e.C);
  EXPECT_LT(relative_error(read(core, out), ref_out), mode.tol);
  // Gradients are summed in fp32 from the compute-dtype dout the kernel read.
  EXPECT_LT(relative_error(read(core, dwte), ref_dwte), 1e-6);
  if (positions) {
    EXPECT_LT(relative_error(read(core, dwpe), ref_dwpe), 1e-6);
  }
}

TEST(NeuronEmbedding, ForwardAndBackwardMatchCpuReference) {
  check_embedding(kFp32, {3, 13, 54, 211, 16}, 21);    // a partial row tile
  check_embedding(kFp32, {4, 64, 96, 1000, 64}, 22);   // two full tiles
  check_embedding(kFp32, {2, 200, 40, 50, 256}, 23);   // positions beyond a tile's 128
  check_embedding(kFp32, {300, 1, 8, 17, 4}, 24);      // T = 1: every row at position 0
  check_embedding(kFp32, {3, 150, 3000, 40, 150}, 25); // wide rows
  check_embedding(kBf16, {3, 13, 54, 211, 16}, 26);
  check_embedding(kBf16, {4, 64, 96, 1000, 64}, 27);
}

TEST(NeuronEmbedding, PositionsAreGatheredById) {
  // Decoding: every sequence at the same position; repeated position ids add up in the backward
  // pass, 130 rows of them across two tiles.
  check_embedding(kFp32, {130, 1, 24, 300, 40, Positions::kSame}, 41);
  // A flat batch whose rows sit anywhere in the context.
  check_embedding(kFp32, {1, 300, 32, 500, 1024, Positions::kRandom}, 42);
  check_embedding(kBf16, {1, 300, 32, 500, 1024, Positions::kRandom}, 43);
  // No position table: rows of the table gathered as they are.
  check_embedding(kFp32, {2, 90, 20, 60, 1, Positions::kNone}, 44);
  check_embedding(kBf16, {2, 90, 20, 60, 1, Positions::kNone}, 45);
}

TEST(NeuronEmbedding, RepeatedTokensWithinOneScatterAddUp) {
  // The simulator's accumulating scatter adds rows in partition order, so duplicates in one
  // instruction all land (no lost updates).
  NeuronCore core(trn2_config());
  View table = core.hbm_alloc({4, 3}, DType::kF32, "table");
  core.write(table, std::vector<float>(12, 1.0f));
  View src = core.sbuf_alloc(5, {3}, DType::kF32, "src");
  core.write(src, std::vector<float>{1, 2, 3, 10, 20, 30, 100, 200, 300, 5, 5, 5, 7, 7, 7});
  View idx = core.sbuf_alloc(5, {1}, DType::kI32, "idx");
  core.write(idx, std::vector<float>{2, 2, 0, 2, 0});
  core.dma_scatter(table, src, idx, /*accumulate=*/true);
  EXPECT_EQ(core.read(table), (std::vector<float>{108, 208, 308, 1, 1, 1, 17, 28, 39, 1, 1, 1}));

  // Through the kernel: 200 rows over 3 tokens, so every tile repeats each token many times.
  NeuronCore core2(trn2_config());
  const int B = 2, T = 100, C = 5;
  std::vector<int32_t> ids(B * T), positions(B * T);
  for (int i = 0; i < B * T; ++i) {
    ids[i] = i % 3;
    positions[i] = i % T;
  }
  View tokens = id_tensor(core2, ids, "tokens");
  View position_ids = id_tensor(core2, positions, "positions");
  View dout = core2.hbm_alloc({B * T, C}, DType::kF32, "dout");
  core2.write(dout, std::vector<float>(B * T * C, 1.0f));
  View dwte = core2.hbm_alloc({3, C}, DType::kF32, "dwte");
  core2.write(dwte, std::vector<float>(3 * C, 0.5f));
  View dwpe = core2.hbm_alloc({T, C}, DType::kF32, "dwpe");
  core2.write(dwpe, std::vector<float>(T * C, 0.0f));
  embedding_backward(core2, dwte, dwpe, dout, tokens, position_ids, DType::kF32);
  Host got = read(core2, dwte);
  for (int v = 0; v < 3; ++v) {
    const double count = (B * T - v + 2) / 3;  // rows i < 200 with i % 3 == v
    for (int c = 0; c < C; ++c) EXPECT_EQ(got[v * C + c], 0.5 + count) << "token " << v;
  }
  for (double x : read(core2, dwpe)) EXPECT_EQ(x, 2.0);
}

TEST(NeuronEmbedding, RejectsBadShapes) {
  NeuronCore core(trn1_config());
  View tokens = core.hbm_alloc({6, 1}, DType::kI32, "tokens");
  View positions = core.hbm_alloc({6, 1}, DType::kI32, "positions");
  View float_tokens = core.hbm_alloc({6, 1}, DType::kF32, "float_tokens");
  View short_positions = core.hbm_alloc({5, 1}, DType::kI32, "short_positions");
  View wte = core.hbm_alloc({10, 4}, DType::kF32, "wte");
  View wpe = core.hbm_alloc({2, 4}, DType::kF32, "wpe");
  View out = core.hbm_alloc({6, 4}, DType::kF32, "out");
  View narrow_wte = core.hbm_alloc({10, 5}, DType::kF32, "narrow_wte");
  core.write(positions, std::vector<float>{0, 1, 0, 1, 0, 1});
  expect_error([&] { embedding_forward(core, out, float_tokens, wte, positions, wpe, DType::kF32); },
               {"embedding_forward", "ids", "int32"});
  expect_error(
      [&] { embedding_forward(core, out, tokens, wte, short_positions, wpe, DType::kF32); },
      {"embedding_forward", "position_ids", "6"});
  expect_error([&] { embedding_forward(core, out, tokens, wte, positions, View(), DType::kF32); },
               {"embedding_forward", "position_ids", "together"});
  expect_error(
      [&] { embedding_backward(core, narrow_wte, wpe, out, tokens, positions, DType::kF32); },
      {"embedding_backward", "dtable", "4]"});
  // Ids outside their table are caught by the gather.
  core.write(tokens, std::vector<float>{0, 1, 2, 3, 4, 10});
  expect_error([&] { embedding_forward(core, out, tokens, wte, positions, wpe, DType::kF32); },
               {"index 10", "wte"});
  core.write(tokens, std::vector<float>{0, 1, 2, 3, 4, 5});
  core.write(positions, std::vector<float>{0, 1, 2, 0, 1, 0});
  expect_error([&] { embedding_forward(core, out, tokens, wte, positions, wpe, DType::kF32); },
               {"index 2", "wpe"});
}

// ---- gpt2-124m sizes: simulated time and host time (printed, not asserted), and results ----

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

// Runs one kernel call as its own launch (a fence first, so it does not overlap the previous
// kernel) and prints its simulated time, and the host's wall and CPU time for the call (the
// machine is shared, so wall time can be several times the CPU time).
template <typename Fn>
void report(NeuronCore& core, const char* what, Fn&& fn) {
  core.fence();
  const double start_ns = core.now_ns();
  const double cpu0 = thread_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[gpt2-124m trn2 bf16] %-40s simulated %7.2f us   host wall %6.1f ms, cpu %6.1f ms\n",
              what, (core.now_ns() - start_ns) / 1000.0, wall_ms, thread_cpu_ms() - cpu0);
}

// Relative error of a tensor against its reference, printed beside the timings.
double checked(const NeuronCore& core, const View& v, const Host& ref, const char* what) {
  const double error = relative_error(read(core, v), ref);
  std::printf("[gpt2-124m trn2 bf16] %-40s relative error %.2e\n", what, error);
  return error;
}

// The gpt2-124m-sized calls, timed (printed, not asserted) and checked against the CPU kernels
// in double on the stored inputs. Bounds: bf16 activations keep the file's bf16 bar (1e-2; 10x
// the measurement would be looser), fp32 results about 10x the errors measured on 2026-12-04.
TEST(NeuronNormKernels, Gpt2SizedTimings) {
  const int B = 4, T = 64, C = 768, V = 50257, N = B * T;
  const DType act = DType::kBF16, compute = DType::kBF16;
  {
    NeuronCore core(trn2_config());
    Rng rng(31);
    View inp = random_tensor(core, {N, C}, act, "inp", rng);
    View w = random_tensor(core, {C}, DType::kF32, "w", rng, 0.1f, 1.0f);
    View b = random_tensor(core, {C}, DType::kF32, "b", rng, 0.1f);
    View out = core.hbm_alloc({N, C}, act, "out");
    View mean = core.hbm_alloc({N}, DType::kF32, "mean");
    View rstd = core.hbm_alloc({N}, DType::kF32, "rstd");
    report(core, "layernorm_forward N=256 C=768",
           [&] { layernorm_forward(core, out, mean, rstd, inp, w, b, compute); });
    const Host x = read(core, inp), hw = read(core, w), hb = read(core, b);
    Host ref(x.size()), ref_mean(N), ref_rstd(N);
    cpu::layernorm_forward<double>(ref.data(), ref_mean.data(), ref_rstd.data(), x.data(),
                                   hw.data(), hb.data(), N, C);
    EXPECT_LT(checked(core, out, ref, "layernorm_forward out"), 1e-2);  // measured 3.4e-3
    EXPECT_LT(checked(core, mean, ref_mean, "layernorm_forward mean"), 5e-7);  // 4.5e-8
    EXPECT_LT(checked(core, rstd, ref_rstd, "layernorm_forward rstd"), 3e-6);  // 2.2e-7

    View dout = random_tensor(core, {N, C}, act, "dout", rng);
    View dinp = random_tensor(core, {N, C}, act, "dinp", rng);
    View dw = random_tensor(core, {C}, DType::kF32, "dw", rng);
    View db = random_tensor(core, {C}, DType::kF32, "db", rng);
    Host ref_dinp = read(core, dinp), ref_dw = read(core, dw), ref_db = read(core, db);
    const Host d = read(core, dout), m = read(core, mean), r = read(core, rstd);
    report(core, "layernorm_backward N=256 C=768", [&] {
      layernorm_backward(core, dinp, dw, db, dout, inp, w, mean, rstd, compute);
    });
    cpu::layernorm_backward<double>(ref_dinp.data(), ref_dw.data(), ref_db.data(), d.data(),
                                    x.data(), hw.data(), m.data(), r.data(), N, C);
    EXPECT_LT(checked(core, dinp, ref_dinp, "layernorm_backward dinp"), 1e-2);  // 3.0e-3
    // dweight sums products of bf16 tiles (the file's 5e-3 bar); dbias sums dout alone, in fp32.
    EXPECT_LT(checked(core, dw, ref_dw, "layernorm_backward dweight"), 5e-3);  // 2.6e-3
    EXPECT_LT(checked(core, db, ref_db, "layernorm_backward dbias"), 5e-7);    // 3.9e-8

    View a2 = random_tensor(core, {N, C}, act, "a2", rng);
    const Host ha2 = read(core, a2);
    report(core, "residual_forward N=256*768",
           [&] { residual_forward(core, out, inp, a2, compute); });
    Host ref_sum(x.size());
    cpu::residual_forward<double>(ref_sum.data(), x.data(), ha2.data(), x.size());
    EXPECT_LT(checked(core, out, ref_sum, "residual_forward out"), 1e-2);  // 1.8e-3
    ref_dinp = read(core, dinp);
    report(core, "accumulate N=256*768", [&] { accumulate(core, dinp, a2, compute); });
    cpu::accumulate<double>(ref_dinp.data(), ha2.data(), ha2.size());
    EXPECT_LT(checked(core, dinp, ref_dinp, "accumulate dst"), 1e-2);  // 1.8e-3
  }
  {
    NeuronCore core(trn2_config());
    Rng rng(32);
    const int64_t n = int64_t{N} * 4 * C;
    View inp = random_tensor(core, {n}, act, "inp", rng);
    View out = core.hbm_alloc({n}, act, "out");
    View dout = random_tensor(core, {n}, act, "dout", rng);
    View dinp = random_tensor(core, {n}, act, "dinp", rng);
    const Host x = read(core, inp), d = read(core, dout);
    Host ref_dinp = read(core, dinp), ref_out(x.size());
    report(core, "gelu_forward N=256*3072", [&] { gelu_forward(core, out, inp, compute); });
    report(core, "gelu_backward N=256*3072",
           [&] { gelu_backward(core, dinp, inp, dout, compute); });
    cpu::gelu_forward<double>(ref_out.data(), x.data(), x.size());
    cpu::gelu_backward<double>(ref_dinp.data(), x.data(), d.data(), x.size());
    EXPECT_LT(checked(core, out, ref_out, "gelu_forward out"), 1e-2);       // 1.7e-3
    EXPECT_LT(checked(core, dinp, ref_dinp, "gelu_backward dinp"), 1e-2);  // 2.7e-3
  }
  {
    NeuronCore core(trn2_config());
    Rng rng(33);
    View tokens = core.hbm_alloc({N, 1}, DType::kI32, "tokens");
    std::vector<float> ids(N);
    for (float& id : ids) id = static_cast<float>(rng.next_u64() % V);
    core.write(tokens, ids);
    const std::vector<int32_t> tok(ids.begin(), ids.end());
    View wte = core.hbm_alloc({V, C}, DType::kF32, "wte");
    core.write(wte, std::vector<float>(static_cast<size_t>(V) * C, 0.01f));
    View wpe = random_tensor(core, {1024, C}, DType::kF32, "wpe", rng);
    View out = core.hbm_alloc({N, C}, act, "out");
    View dout = random_tensor(core, {N, C}, act, "dout", rng);
    View dwte = core.hbm_alloc({V, C}, DType::kF32, "dwte");
    core.write(dwte, std::vector<float>(static_cast<size_t>(V) * C, 0.0f));
    View dwpe = core.hbm_alloc({1024, C}, DType::kF32, "dwpe");
    core.write(dwpe, std::vector<float>(1024 * C, 0.0f));
    View positions = core.hbm_alloc({N, 1}, DType::kI32, "positions");
    std::vector<float> position_ids(N);
    for (int i = 0; i < N; ++i) position_ids[i] = static_cast<float>(i % T);  // GPT-2's windows
    core.write(positions, position_ids);
    report(core, "embedding_forward B=4 T=64 C=768",
           [&] { embedding_forward(core, out, tokens, wte, positions, wpe, compute); });
    report(core, "embedding_backward B=4 T=64 C=768 V=50257",
           [&] { embedding_backward(core, dwte, dwpe, dout, tokens, positions, compute); });
    // A plain reference: out[b, t] = wte[token] + wpe[t]; each dout row summed into its token's
    // row of dwte and its position's row of dwpe; every other row stays zero.
    const Host hwpe = read(core, wpe), d = read(core, dout);
    Host ref_out(static_cast<size_t>(N) * C), ref_dwte(static_cast<size_t>(V) * C, 0.0),
        ref_dwpe(static_cast<size_t>(1024) * C, 0.0);
    for (int i = 0; i < N; ++i) {
      const size_t token = static_cast<size_t>(tok[i]), t = static_cast<size_t>(i % T);
      for (int c = 0; c < C; ++c) {
        const size_t at = static_cast<size_t>(i) * C + c;
        ref_out[at] = static_cast<double>(0.01f) + hwpe[t * C + c];
        ref_dwte[token * C + c] += d[at];
        ref_dwpe[t * C + c] += d[at];
      }
    }
    EXPECT_LT(checked(core, out, ref_out, "embedding_forward out"), 1e-2);  // 2.5e-3
    // fp32 sums of a few bf16 rows each: measured 0 (dwte) and 2.4e-10 (dwpe).
    EXPECT_LT(checked(core, dwte, ref_dwte, "embedding_backward dwte"), 1e-7);
    EXPECT_LT(checked(core, dwpe, ref_dwpe, "embedding_backward dwpe"), 1e-7);
  }
}

}  // namespace
}  // namespace switchyard::backend::neuron
