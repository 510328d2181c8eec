// cpu-bf16 against the fp32 CPU reference: its native bf16 products (oneDNN for many rows, weight
// streaming for few), the ops it runs over widened copies, and what it says about itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/bf16_dot_linear.h"
#include "backend/cpu/blocked_weights.h"
#include "backend/cpu/cpu_bf16_backend.h"
#include "core/fp32_halves.h"
#include "core/rng.h"
#include "device_tensors.h"
#include "expect_error.h"
#include "gpt_oss_device_parity.h"

namespace switchyard {
namespace {

namespace ops = backend::ops;

std::vector<float> random_values(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (float& v : values) v = normal(gen);
  return values;
}

// Each value rounded to bf16 and widened again: what an fp32 result becomes when stored as bf16.
std::vector<float> rounded_to_bf16(std::vector<float> values) {
  for (float& v : values) v = bf16_to_float(float_to_bf16(v));
  return values;
}

class CpuBf16 : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> bf16_ = backend::create_backend("cpu-bf16");
  std::unique_ptr<Backend> cpu_ = backend::create_backend("cpu");
};

TEST_F(CpuBf16, ComputesInBf16WithBf16WeightCopies) {
  EXPECT_EQ(bf16_->name(), "cpu-bf16");
  EXPECT_EQ(bf16_->precision().activations, DType::kBF16);
  EXPECT_EQ(bf16_->precision().matmul_weights, DType::kBF16);
  EXPECT_TRUE(bf16_->device_memory_is_host_memory());
  const std::vector<DType> linear{DType::kBF16, DType::kBF16, DType::kBF16, DType::kF32};
  EXPECT_TRUE(bf16_->supports(backend::OpKind::kLinear, linear));
  EXPECT_FALSE(cpu_->supports(backend::OpKind::kLinear, std::vector<DType>{
                                                            DType::kBF16, DType::kBF16,
                                                            DType::kBF16, DType::kF32}));
  const std::vector<DType> paged{DType::kBF16, DType::kBF16, DType::kBF16, DType::kBF16,
                                 DType::kI32,  DType::kI32,  DType::kI32,  DType::kF32};
  EXPECT_TRUE(bf16_->supports(backend::OpKind::kPagedAttention, paged));  // the cache read in place
  const std::vector<DType> gelu{DType::kBF16, DType::kBF16};
  EXPECT_TRUE(bf16_->supports(backend::OpKind::kGelu, gelu));  // over L1-sized widened chunks
  const std::vector<DType> rmsnorm{DType::kBF16, DType::kF32, DType::kBF16, DType::kF32};
  EXPECT_FALSE(bf16_->supports(backend::OpKind::kRmsNorm, rmsnorm));  // over widened copies
}

TEST_F(CpuBf16, DevicesNameTheDefaultAndTheBf16Units) {
  bool listed = false;
  for (const backend::BackendInfo& info : backend::list_backends()) {
    if (info.name == "cpu") {  // says what `--device cpu` runs here, and why
      EXPECT_NE(info.detail.find(backend::cpu_default_dtype().reason), std::string::npos) << info.detail;
    }
    if (info.name != "cpu-bf16") continue;
    listed = true;
    EXPECT_TRUE(info.available);
    EXPECT_NE(info.detail.find(backend::cpu::describe_bf16_units(backend::cpu::host_bf16_units())),
              std::string::npos)
        << info.detail;
  }
  EXPECT_TRUE(listed);
}

// out = inp @ weight^T + bias for few rows (the weight-streaming path) and many (oneDNN), against
// the fp32 product of the same bf16 values: only the output's rounding to bf16 and the order of
// the fp32 sums differ.
// `--dtype`: bf16 by default on the CPU only where it computes bf16 natively; fp32 and bf16 pick
// that form of any device; a name that already says the other precision is refused with the fix.
TEST(DeviceDtype, ResolvesEachDeviceAndRefusesContradictions) {
  const bool native = backend::cpu::host_bf16_units() != backend::cpu::Bf16Units::kNone;
  EXPECT_EQ(backend::cpu_default_dtype().dtype, native ? DType::kBF16 : DType::kF32);
  EXPECT_EQ(backend::device_for_dtype("cpu", "auto"), native ? "cpu-bf16" : "cpu");
  const std::vector<std::array<std::string, 3>> cases = {
      {"cpu", "fp32", "cpu"},                    {"cpu", "bf16", "cpu-bf16"},
      {"cpu-bf16", "auto", "cpu-bf16"},          {"cpu-bf16", "bf16", "cpu-bf16"},
      {"cuda", "auto", "cuda"},                  {"cuda", "fp32", "cuda-fp32"},
      {"cuda-fp32", "auto", "cuda-fp32"},        {"cuda-fp32", "fp32", "cuda-fp32"},
      {"trn2-sim", "auto", "trn2-sim"},          {"trn2-sim", "fp32", "trn2-sim-fp32"},
      {"trn1-sim:timing", "fp32", "trn1-sim-fp32:timing"},
      {"trn2-sim-fp32", "auto", "trn2-sim-fp32"}, {"tpu", "bf16", "tpu"},  // create_backend names it
  };
  for (const auto& [device, dtype, want] : cases) {
    EXPECT_EQ(backend::device_for_dtype(device, dtype), want) << device << " --dtype " << dtype;
  }
  expect_error([] { backend::device_for_dtype("cpu-bf16", "fp32"); },
               {"device 'cpu-bf16' is bf16", "--device cpu --dtype fp32"});
  expect_error([] { backend::device_for_dtype("cuda-fp32", "bf16"); }, {"--device cuda --dtype bf16"});
  expect_error([] { backend::device_for_dtype("trn2-sim-fp32:timing", "bf16"); },
               {"--device trn2-sim:timing --dtype bf16"});
  expect_error([] { backend::device_for_dtype("cpu", "fp16"); }, {"unknown dtype 'fp16'"});
  EXPECT_EQ(backend::plain_device_name("cpu-bf16"), "cpu");
  EXPECT_EQ(backend::plain_device_name("cpu"), "cpu");
  EXPECT_EQ(backend::plain_device_name("cuda"), "cuda");
  EXPECT_EQ(backend::plain_device_name("trn2-sim"), "trn2-sim");
  EXPECT_EQ(backend::plain_device_name("cuda-fp32"), "cuda");
  EXPECT_EQ(backend::plain_device_name("trn2-sim-fp32:timing"), "trn2-sim:timing");
}

TEST_F(CpuBf16, LinearMatchesTheFp32ProductOfItsInputs) {
  const int C = 72, OC = 42;  // rows of 2 x 32 + 8 values; outputs not a multiple of 4
  for (int N : {1, 4, 5, 37}) {
    Pair inp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(size_t(N) * C, 1));
    Pair weight(*bf16_, *cpu_, DType::kBF16, {OC, C}, random_values(size_t(OC) * C, 2, 0.1f));
    Pair bias(*bf16_, *cpu_, DType::kF32, {OC}, random_values(OC, 3));
    Pair out(*bf16_, *cpu_, DType::kBF16, {N, OC}, std::vector<float>(size_t(N) * OC));
    for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
      auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
      backend->run(ops::Linear{.out = t(out), .inp = t(inp), .weight = t(weight), .bias = t(bias)});
    }
    // bf16 rounding of the outputs (2^-9 relative at most) dominates.
    EXPECT_LT(relative_error(out.gpu.read(), out.cpu.read()), 4e-3) << N << " rows";
  }
}

// The three products of the backward pass accumulate onto what the gradients hold: dinp in bf16,
// dweight and dbias in fp32.
TEST_F(CpuBf16, LinearBackwardAccumulatesEveryGradient) {
  // The second shape's weight gradient has more rows (OC) than one block of the transposed
  // product (8,192, cpu_gemm.cc): it is computed in two.
  for (const auto [N, C, OC] : {std::array{37, 72, 40}, std::array{6, 24, 9000}}) {
    Pair dout(*bf16_, *cpu_, DType::kBF16, {N, OC}, random_values(size_t(N) * OC, 4));
    Pair inp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(size_t(N) * C, 5));
    Pair weight(*bf16_, *cpu_, DType::kBF16, {OC, C}, random_values(size_t(OC) * C, 6, 0.1f));
    Pair dinp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(size_t(N) * C, 7));
    Pair dweight(*bf16_, *cpu_, DType::kF32, {OC, C}, random_values(size_t(OC) * C, 8));
    Pair dbias(*bf16_, *cpu_, DType::kF32, {OC}, random_values(OC, 9));
    for (bool with_dinp : {true, false}) {
      for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
        auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
        backend->run(ops::LinearBackward{.dinp = with_dinp ? t(dinp) : Tensor{},
                                         .dweight = t(dweight), .dbias = t(dbias), .dout = t(dout),
                                         .inp = t(inp), .weight = t(weight)});
      }
    }
    EXPECT_LT(dinp.error(), 4e-3) << OC;
    EXPECT_LT(dweight.error(), 1e-5) << OC;  // fp32 sums of the same bf16 products, in another order
    EXPECT_LT(dbias.error(), 1e-6) << OC;
  }
}

// A trained model's embeddings are held as fp32 halves (model/parameter_storage.h): both CPU
// backends read them as the exact fp32 tables, cpu-bf16 into bf16 rows (the fp32 sums rounded),
// the fp32 backend into fp32 ones; a table held as halves needs its position table so too.
TEST_F(CpuBf16, EmbeddingReadsTablesHeldAsHalves) {
  const int V = 50, P = 16, C = 72, N = 9;
  const std::vector<float> table = random_values(size_t(V) * C, 20), positions = random_values(size_t(P) * C, 21);
  std::vector<uint16_t> table_high(table.size()), table_low(table.size()), positions_high(positions.size()),
      positions_low(positions.size());
  split_fp32(table.data(), table_high.data(), table_low.data(), table.size());
  split_fp32(positions.data(), positions_high.data(), positions_low.data(), positions.size());
  const std::vector<int32_t> ids{0, 49, 3, 3, 17, 25, 8, 49, 1}, position_ids{0, 1, 2, 3, 4, 5, 15, 14, 0};
  std::vector<float> expected(size_t(N) * C), fp32_rows(size_t(N) * C);
  std::vector<uint16_t> bf16_rows(size_t(N) * C);
  const Tensor ids_t = Tensor::dense(ids.data(), DType::kI32, {N});
  const Tensor position_ids_t = Tensor::dense(position_ids.data(), DType::kI32, {N});
  cpu_->run(ops::Embedding{.out = Tensor::dense(expected.data(), DType::kF32, {N, C}), .ids = ids_t,
                           .table = Tensor::dense(table.data(), DType::kF32, {V, C}),
                           .position_ids = position_ids_t,
                           .position_table = Tensor::dense(positions.data(), DType::kF32, {P, C})});
  ops::Embedding halves{.ids = ids_t,
                        .table = Tensor::dense(table_high.data(), DType::kBF16, {V, C}),
                        .position_ids = position_ids_t,
                        .position_table = Tensor::dense(positions_high.data(), DType::kBF16, {P, C}),
                        .table_low = Tensor::dense(table_low.data(), DType::kU16, {V, C}),
                        .position_low = Tensor::dense(positions_low.data(), DType::kU16, {P, C})};
  halves.out = Tensor::dense(bf16_rows.data(), DType::kBF16, {N, C});
  EXPECT_TRUE(bf16_->supports(halves));
  bf16_->run(halves);
  std::vector<float> widened(bf16_rows.size());
  bf16_to_float(bf16_rows.data(), widened.data(), widened.size());
  EXPECT_EQ(widened, rounded_to_bf16(expected));
  halves.out = Tensor::dense(fp32_rows.data(), DType::kF32, {N, C});
  cpu_->run(halves);
  EXPECT_EQ(fp32_rows, expected);

  ops::Embedding fp32_positions = halves;
  fp32_positions.position_table = Tensor::dense(positions.data(), DType::kF32, {P, C});
  fp32_positions.position_low = Tensor{};
  expect_error([&] { cpu_->run(fp32_positions); }, {"position_table must be too"});
  ops::Embedding fp32_table = fp32_positions;
  fp32_table.table = Tensor::dense(table.data(), DType::kF32, {V, C});
  fp32_table.table_low = Tensor{};
  fp32_table.position_low = halves.position_low;
  expect_error([&] { cpu_->run(fp32_table); }, {"position_low needs a table held as halves"});
}

// A frozen checkpoint's bf16 tables, without low halves, are read where they lie: a row is the
// table's bf16 row as it is; with a bf16 position table, the two widened, added in fp32 and
// rounded once, as the fp32 reference over the widened tables gives.
TEST_F(CpuBf16, EmbeddingReadsFrozenBf16TablesInPlace) {
  const int V = 50, P = 16, C = 72, N = 5;
  std::vector<uint16_t> table(size_t(V) * C), positions(size_t(P) * C);
  const std::vector<float> table_values = random_values(table.size(), 22);
  const std::vector<float> position_values = random_values(positions.size(), 23);
  for (size_t i = 0; i < table.size(); ++i) table[i] = float_to_bf16(table_values[i]);
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = float_to_bf16(position_values[i]);
  const std::vector<int32_t> ids{0, 49, 3, 3, 17}, position_ids{0, 1, 2, 15, 0};
  std::vector<uint16_t> rows(size_t(N) * C);
  ops::Embedding op{.out = Tensor::dense(rows.data(), DType::kBF16, {N, C}),
                    .ids = Tensor::dense(ids.data(), DType::kI32, {N}),
                    .table = Tensor::dense(table.data(), DType::kBF16, {V, C})};
  EXPECT_TRUE(bf16_->supports(op));
  bf16_->run(op);
  for (int n = 0; n < N; ++n) {
    EXPECT_TRUE(std::equal(rows.begin() + size_t(n) * C, rows.begin() + size_t(n + 1) * C,
                           table.begin() + size_t(ids[n]) * C))
        << "row " << n;
  }

  op.position_ids = Tensor::dense(position_ids.data(), DType::kI32, {N});
  op.position_table = Tensor::dense(positions.data(), DType::kBF16, {P, C});
  EXPECT_TRUE(bf16_->supports(op));
  bf16_->run(op);
  std::vector<float> wide_table(table.size()), wide_positions(positions.size()), expected(size_t(N) * C);
  bf16_to_float(table.data(), wide_table.data(), table.size());
  bf16_to_float(positions.data(), wide_positions.data(), positions.size());
  cpu_->run(ops::Embedding{.out = Tensor::dense(expected.data(), DType::kF32, {N, C}),
                           .ids = op.ids,
                           .table = Tensor::dense(wide_table.data(), DType::kF32, {V, C}),
                           .position_ids = op.position_ids,
                           .position_table = Tensor::dense(wide_positions.data(), DType::kF32, {P, C})});
  std::vector<float> widened(rows.size());
  bf16_to_float(rows.data(), widened.data(), rows.size());
  EXPECT_EQ(widened, rounded_to_bf16(expected));
}

// AdamW over halves takes no bf16 copy beside them (the high halves are the bf16 weights).
TEST_F(CpuBf16, AdamWOverHalvesRefusesACopy) {
  const int n = 16;
  std::vector<uint16_t> high(n, 0x3F80), low(n, 0), copy(n);
  std::vector<float> grads(n, 0.5f), m(n), v(n);
  const ops::AdamW update{.params = Tensor::dense(high.data(), DType::kBF16, {n}),
                          .grads = Tensor::dense(grads.data(), DType::kF32, {n}),
                          .m = Tensor::dense(m.data(), DType::kF32, {n}),
                          .v = Tensor::dense(v.data(), DType::kF32, {n}),
                          .params_copy = Tensor::dense(copy.data(), DType::kBF16, {n}),
                          .params_low = Tensor::dense(low.data(), DType::kU16, {n}),
                          .step = {.learning_rate = 1e-3f}};
  expect_error([&] { bf16_->run(update); }, {"adamw", "need no params_copy"});
}

// An op without a bf16 kernel computes in fp32 over its widened operands: the fp32 reference's
// results over the same values, outputs rounded to bf16 and fp32 statistics exact.
TEST_F(CpuBf16, OtherOpsComputeInFp32OverWidenedOperands) {
  const int N = 300, C = 96;  // enough values to convert in parallel
  Pair inp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(size_t(N) * C, 10));
  Pair weight(*bf16_, *cpu_, DType::kF32, {C}, random_values(C, 11));
  Pair out(*bf16_, *cpu_, DType::kBF16, {N, C}, std::vector<float>(size_t(N) * C));
  Pair rstd(*bf16_, *cpu_, DType::kF32, {N}, std::vector<float>(N));
  for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
    auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
    backend->run(ops::RmsNorm{.out = t(out), .rstd = t(rstd), .inp = t(inp), .weight = t(weight)});
  }
  EXPECT_EQ(out.gpu.read(), rounded_to_bf16(out.cpu.read()));
  EXPECT_EQ(rstd.gpu.read(), rstd.cpu.read());
}

// LayerNorm, GELU and the residual adds, forward and backward, over bf16 activations: the fp32
// kernels' results over the same values, the bf16 outputs within their rounding and the fp32
// statistics and parameter gradients as the reference sums them. Rows narrower and wider than a
// thread's chunk (2,048 values), with enough values to run in parallel.
TEST_F(CpuBf16, LayerNormGeluAndAddsMatchTheFp32Kernels) {
  for (const auto [N, C] : {std::pair{300, 96}, std::pair{13, 2880}}) {
    const size_t values = size_t(N) * C;
    Pair inp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(values, 10));
    Pair dout(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(values, 11));
    Pair dinp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(values, 12));
    Pair weight(*bf16_, *cpu_, DType::kF32, {C}, random_values(C, 13));
    Pair bias(*bf16_, *cpu_, DType::kF32, {C}, random_values(C, 14));
    Pair dweight(*bf16_, *cpu_, DType::kF32, {C}, random_values(C, 15));
    Pair dbias(*bf16_, *cpu_, DType::kF32, {C}, random_values(C, 16));
    Pair out(*bf16_, *cpu_, DType::kBF16, {N, C}, std::vector<float>(values));
    Pair act(*bf16_, *cpu_, DType::kBF16, {N, C}, std::vector<float>(values));
    Pair dact(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(values, 17));
    Pair mean(*bf16_, *cpu_, DType::kF32, {N}, std::vector<float>(N));
    Pair rstd(*bf16_, *cpu_, DType::kF32, {N}, std::vector<float>(N));
    for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
      auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
      backend->run(ops::LayerNorm{.out = t(out), .mean = t(mean), .rstd = t(rstd), .inp = t(inp),
                                  .weight = t(weight), .bias = t(bias)});
      backend->run(ops::LayerNormBackward{.dinp = t(dinp), .dweight = t(dweight), .dbias = t(dbias),
                                          .dout = t(dout), .inp = t(inp), .weight = t(weight),
                                          .mean = t(mean), .rstd = t(rstd)});
      backend->run(ops::Gelu{.out = t(act), .inp = t(out)});
      backend->run(ops::GeluBackward{.dinp = t(dact), .inp = t(out), .dout = t(dout)});
      backend->run(ops::Add{.out = t(out), .a = t(out), .b = t(inp)});  // in place, as residuals
      backend->run(ops::Accumulate{.dst = t(dinp), .src = t(dact)});
    }
    EXPECT_EQ(mean.gpu.read(), mean.cpu.read()) << C;
    EXPECT_EQ(rstd.gpu.read(), rstd.cpu.read()) << C;
    // Outputs read by the next op were rounded to bf16 on one side only: errors stay within a few
    // bf16 roundings (2^-9 relative each).
    for (const Pair* p : {&out, &act, &dact, &dinp}) EXPECT_LT(p->error(), 8e-3) << C;
    EXPECT_LT(dweight.error(), 1e-5) << C;
    EXPECT_LT(dbias.error(), 1e-6) << C;
  }
}

// The loss over bf16 logits a row at a time, in fp32: the reference's losses exactly, and its
// gradient rounded to bf16, here written over the logits themselves (as the model does).
TEST_F(CpuBf16, CrossEntropyComputesInFp32OverBf16Logits) {
  const int N = 6, V = 40000;  // rows long enough to run in parallel
  std::vector<int32_t> ids(N);
  for (int n = 0; n < N; ++n) ids[n] = (n * 7919) % V;
  Pair logits(*bf16_, *cpu_, DType::kBF16, {N, V}, random_values(size_t(N) * V, 15, 3.0f));
  Pair targets(*bf16_, *cpu_, ids);
  Pair losses(*bf16_, *cpu_, DType::kF32, {N}, std::vector<float>(N));
  for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
    auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
    backend->run(ops::CrossEntropy{.losses = t(losses), .logits = t(logits), .targets = t(targets)});
    backend->run(ops::CrossEntropyBackward{.dlogits = t(logits), .logits = t(logits),
                                           .targets = t(targets), .dloss = 0.25f});
  }
  EXPECT_EQ(losses.gpu.read(), losses.cpu.read());
  EXPECT_EQ(logits.gpu.read(), rounded_to_bf16(logits.cpu.read()));
  EXPECT_GT(losses.cpu.read()[0], 0.0f);
}

// A stamped weight (ops::Linear::weight_stamp) at a continuous batch's row counts goes through its
// oneDNN blocked copy: the same product within bf16's rounding; the copy stays while the stamp
// does (the stamp's promise: the values have not changed) and is remade for a new stamp; beyond
// BlockedWeights::kMaxRows rows and without a stamp the plain product runs, bit for bit as before;
// with no budget for copies, the plain product too.
TEST_F(CpuBf16, StampedWeightsUseABlockedCopyUntilTheStampChanges) {
  const int C = 96, OC = 200;
  std::vector<uint16_t> weight(size_t(OC) * C);
  const std::vector<float> w = random_values(weight.size(), 30);
  float_to_bf16(w.data(), weight.data(), weight.size());
  auto negate_in_place = [&] {
    for (uint16_t& bits : weight) bits ^= 0x8000;
  };
  const std::vector<float> bias = random_values(OC, 31);
  for (const int N : {5, 32, 64, 65}) {
    SCOPED_TRACE(N);
    std::vector<uint16_t> inp(size_t(N) * C);
    const std::vector<float> x = random_values(inp.size(), 32 + N);
    float_to_bf16(x.data(), inp.data(), inp.size());
    auto product = [&](uint64_t stamp) {
      std::vector<uint16_t> out(size_t(N) * OC);
      bf16_->run(ops::Linear{.out = Tensor::dense(out.data(), DType::kBF16, {N, OC}),
                             .inp = Tensor::dense(inp.data(), DType::kBF16, {N, C}),
                             .weight = Tensor::dense(weight.data(), DType::kBF16, {OC, C}),
                             .bias = Tensor::dense(bias.data(), DType::kF32, {OC}),
                             .batch_invariant = true, .weight_stamp = stamp});
      std::vector<float> values(out.size());
      bf16_to_float(out.data(), values.data(), values.size());
      return values;
    };
    const std::vector<float> plain = product(0);
    const uint64_t first = 1000 + N, second = 2000 + N;
    const std::vector<float> blocked = product(first);
    if (N > backend::cpu::BlockedWeights::kMaxRows) {
      EXPECT_EQ(blocked, plain);
      continue;
    }
    for (size_t i = 0; i < plain.size(); ++i) ASSERT_NEAR(blocked[i], plain[i], 0x1p-7f * std::abs(plain[i]) + 1e-3f) << i;
    negate_in_place();  // new values behind the same stamp: the copy is still used
    EXPECT_EQ(product(first), blocked);
    const std::vector<float> renewed = product(second), renewed_plain = product(0);
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_NEAR(renewed[i], renewed_plain[i], 0x1p-7f * std::abs(renewed_plain[i]) + 1e-3f) << i;
    }
    negate_in_place();
  }
  backend::cpu::BlockedWeights none(0);
  std::vector<uint16_t> inp(size_t(32) * C), out(size_t(32) * OC);
  EXPECT_FALSE(none.linear(out.data(), inp.data(), weight.data(), nullptr, 32, C, OC, 7));
  EXPECT_EQ(none.bytes(), 0u);
}

// Given the forward pass's losses, the backward pass takes each row's log-sum-exp from them (one
// pass over the row instead of three): the same gradient up to the rounding of the last bf16 bit,
// a poisoned row (a NaN logit) poisoned as before.
TEST_F(CpuBf16, CrossEntropyBackwardFromTheForwardLosses) {
  const int N = 6, V = 40000;
  std::vector<int32_t> ids(N);
  for (int n = 0; n < N; ++n) ids[n] = (n * 7919) % V;
  std::vector<float> values = random_values(size_t(N) * V, 15, 3.0f);
  values[size_t(3) * V + 17] = NAN;
  DeviceTensor summed(*bf16_, DType::kBF16, {N, V}, values), from_losses(*bf16_, DType::kBF16, {N, V}, values);
  DeviceTensor targets(*bf16_, ids), losses(*bf16_, DType::kF32, {N}, std::vector<float>(N));
  bf16_->run(ops::CrossEntropy{.losses = losses.tensor(), .logits = summed.tensor(), .targets = targets.tensor()});
  bf16_->run(ops::CrossEntropyBackward{.dlogits = summed.tensor(), .logits = summed.tensor(),
                                       .targets = targets.tensor(), .dloss = 0.25f});
  bf16_->run(ops::CrossEntropyBackward{.dlogits = from_losses.tensor(), .logits = from_losses.tensor(),
                                       .targets = targets.tensor(), .losses = losses.tensor(),
                                       .dloss = 0.25f});
  const std::vector<float> a = summed.read(), b = from_losses.read();
  for (size_t i = 0; i < a.size(); ++i) {
    if (i / V == 3) {
      ASSERT_TRUE(std::isnan(a[i]) && std::isnan(b[i])) << i << " " << a[i] << " " << b[i];
      continue;
    }
    ASSERT_NEAR(b[i], a[i], std::abs(a[i]) * 0x1p-7f + 1e-30f) << i;
  }
}

// The paged KV cache kept in bf16: rows written as they are, attention over the cache read in
// place, against the fp32 kernels over the same values (grouped-query heads, two sequences, one
// spanning two blocks).
TEST_F(CpuBf16, PagedAttentionReadsTheBf16Cache) {
  const int H = 4, KV = 2, hd = 16, blocks = 4, bs = 16, N = 23;  // 20 + 3 query rows
  const std::vector<int32_t> slots = [] {
    std::vector<int32_t> s;
    for (int i = 0; i < 20; ++i) s.push_back(i < 16 ? 16 + i : 48 + i - 16);  // blocks 1, 3
    for (int i = 0; i < 3; ++i) s.push_back(i);                                // block 0
    return s;
  }();
  Pair qkv(*bf16_, *cpu_, DType::kBF16, {N, (H + 2 * KV) * hd},
           random_values(size_t(N) * (H + 2 * KV) * hd, 16));
  Pair k_cache(*bf16_, *cpu_, DType::kBF16, {blocks, bs, KV, hd},
               std::vector<float>(size_t(blocks) * bs * KV * hd));
  Pair v_cache(*bf16_, *cpu_, DType::kBF16, {blocks, bs, KV, hd},
               std::vector<float>(size_t(blocks) * bs * KV * hd));
  Pair slot_ids(*bf16_, *cpu_, slots);
  Pair tables(*bf16_, *cpu_, std::vector<int32_t>{1, 3, 0, 0});  // [2 sequences, 2 blocks]
  Pair starts(*bf16_, *cpu_, std::vector<int32_t>{0, 20, 23});
  Pair contexts(*bf16_, *cpu_, std::vector<int32_t>{20, 3});
  Pair out(*bf16_, *cpu_, DType::kBF16, {N, H * hd}, std::vector<float>(size_t(N) * H * hd));
  for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
    auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
    backend->run(ops::KvCacheWrite{.k_cache = t(k_cache), .v_cache = t(v_cache),
                                   .k = heads_view(t(qkv), H * hd, KV, hd),
                                   .v = heads_view(t(qkv), (H + KV) * hd, KV, hd),
                                   .slots = t(slot_ids)});
    Tensor block_tables = t(tables);
    block_tables = Tensor::dense(block_tables.data, DType::kI32, {2, 2});
    backend->run(ops::PagedAttention{.out = t(out), .q = heads_view(t(qkv), 0, H, hd),
                                     .k_cache = t(k_cache), .v_cache = t(v_cache),
                                     .block_tables = block_tables, .query_start = t(starts),
                                     .context_len = t(contexts), .sinks = {},
                                     .max_query_len = 20, .max_context_len = 20,
                                     .spec = {.heads = H, .kv_heads = KV, .head_dim = hd}});
  }
  EXPECT_EQ(k_cache.gpu.read(), k_cache.cpu.read());  // the bf16 values, copied
  EXPECT_EQ(v_cache.gpu.read(), v_cache.cpu.read());
  EXPECT_LT(out.error(), 4e-3);  // the output's rounding to bf16
}

// Attention over windows with bf16 q, k, v and out (training, evaluation): each task widens its
// own heads and runs the fp32 kernel on them, so the results are the fp32 kernel's over the same
// values, rounded to bf16 where stored as bf16, and the fp32 record, scratch and sinks' gradient
// are its own. Grouped heads, a window, sinks, and windows longer than the kernel's block of 64
// query rows; the gradients are added to what the buffers held.
TEST_F(CpuBf16, AttentionWidensEachTaskHeadsAsTheFp32KernelReadsThem) {
  const int B = 2, T = 70, H = 4, KV = 2, hd = 16, N = B * T, width = (H + 2 * KV) * hd;
  const ops::AttentionSpec spec{.heads = H, .kv_heads = KV, .head_dim = hd, .window = 40};
  const size_t probabilities = size_t(B) * H * T * T;
  Pair qkv(*bf16_, *cpu_, DType::kBF16, {N, width}, random_values(size_t(N) * width, 30));
  Pair dqkv(*bf16_, *cpu_, DType::kBF16, {N, width}, random_values(size_t(N) * width, 31));
  Pair dout(*bf16_, *cpu_, DType::kBF16, {N, H * hd}, random_values(size_t(N) * H * hd, 32));
  Pair out(*bf16_, *cpu_, DType::kBF16, {N, H * hd}, std::vector<float>(size_t(N) * H * hd));
  Pair sinks(*bf16_, *cpu_, DType::kF32, {H}, random_values(H, 33));
  Pair dsinks(*bf16_, *cpu_, DType::kF32, {H}, random_values(H, 34));
  Pair record(*bf16_, *cpu_, DType::kF32, {int64_t(probabilities)},
              std::vector<float>(probabilities));
  Pair scratch(*bf16_, *cpu_, DType::kF32, {int64_t(probabilities)},
               std::vector<float>(probabilities));
  for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
    auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
    const Tensor q = heads_view(t(qkv), 0, H, hd), k = heads_view(t(qkv), H * hd, KV, hd),
                 v = heads_view(t(qkv), (H + KV) * hd, KV, hd);
    const ops::Attention forward{.out = t(out), .record = t(record), .q = q, .k = k, .v = v,
                                 .sinks = t(sinks), .batch = B, .seq = T, .spec = spec};
    EXPECT_EQ(backend->supports(forward), true) << backend->name();
    backend->run(forward);
    const ops::AttentionBackward backward{
        .dq = heads_view(t(dqkv), 0, H, hd), .dk = heads_view(t(dqkv), H * hd, KV, hd),
        .dv = heads_view(t(dqkv), (H + KV) * hd, KV, hd), .dsinks = t(dsinks),
        .scratch = t(scratch), .dout = t(dout), .out = t(out), .record = t(record), .q = q,
        .k = k, .v = v, .sinks = t(sinks), .batch = B, .seq = T, .spec = spec};
    EXPECT_EQ(backend->supports(backward), true) << backend->name();
    backend->run(backward);
  }
  EXPECT_EQ(record.gpu.read(), record.cpu.read());
  EXPECT_EQ(out.gpu.read(), rounded_to_bf16(out.cpu.read()));
  EXPECT_EQ(scratch.gpu.read(), scratch.cpu.read());
  EXPECT_EQ(dqkv.gpu.read(), rounded_to_bf16(dqkv.cpu.read()));
  EXPECT_LT(dsinks.error(), 1e-6);  // the windows' shares are added as their tasks finish
}

// Expert products over bf16 weights run here, not over fp32 copies of every expert: each expert's
// rows against its weights, a few rows (expert 0) and more (expert 2) alike, an expert without
// rows (1) left alone; the fp32 product of the same values, within the outputs' bf16 rounding.
TEST_F(CpuBf16, ExpertLinearOverBf16WeightsRunsEachExpertsProduct) {
  const int E = 3, C = 40, OC = 24, A = 9;
  Pair inp(*bf16_, *cpu_, DType::kBF16, {A, C}, random_values(size_t(A) * C, 40));
  Pair weight(*bf16_, *cpu_, DType::kBF16, {E, OC, C}, random_values(size_t(E) * OC * C, 41, 0.1f));
  Pair bias(*bf16_, *cpu_, DType::kF32, {E, OC}, random_values(size_t(E) * OC, 42));
  Pair offsets(*bf16_, *cpu_, std::vector<int32_t>{0, 2, 2, 9});
  Pair out(*bf16_, *cpu_, DType::kBF16, {A, OC}, std::vector<float>(size_t(A) * OC));
  for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
    auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
    const ops::ExpertLinear op{.out = t(out), .inp = t(inp), .weight = t(weight), .bias = t(bias),
                               .offsets = t(offsets)};
    EXPECT_TRUE(backend->supports(op)) << backend->name();
    backend->run(op);
  }
  EXPECT_LT(out.error(), 4e-3);  // the outputs' rounding to bf16
}

// MXFP4 experts as the published checkpoints store them, read as they lie on both sides: experts
// of 3 rows (the decoding kernel, blocks decoded in registers) and of 9 (panels decoded to bf16
// for oneDNN; the second shape's 2,100 outputs of 2,048 inputs are two panels of about 8 MiB)
// against the fp32 CPU's product over the same values.
TEST_F(CpuBf16, ExpertLinearOverMxfp4WeightsRunsEachExpertsProduct) {
  if (!backend::cpu::bf16_dot_linear_available()) {
    GTEST_SKIP() << "mxfp4 experts take the host fallback here";
  }
  for (const auto [C, OC] : {std::pair{64, 37}, std::pair{2048, 2100}}) {
    const int E = 3, A = 12;
    Rng rng(50 + C);
    std::vector<uint8_t> codes(size_t(E) * OC * C / 2), scales(size_t(E) * OC * C / 32);
    for (uint8_t& b : codes) b = static_cast<uint8_t>(rng.next_u64());
    for (uint8_t& b : scales) b = static_cast<uint8_t>(118 + rng.next_u64() % 8);
    const Tensor weight = Tensor::mxfp4(codes.data(), scales.data(), {E, OC, C});
    Pair inp(*bf16_, *cpu_, DType::kBF16, {A, C}, random_values(size_t(A) * C, 51));
    Pair bias(*bf16_, *cpu_, DType::kF32, {E, OC}, random_values(size_t(E) * OC, 52));
    Pair offsets(*bf16_, *cpu_, std::vector<int32_t>{0, 3, 3, 12});
    Pair out(*bf16_, *cpu_, DType::kBF16, {A, OC}, std::vector<float>(size_t(A) * OC));
    for (auto [backend, side] : {std::pair{bf16_.get(), 0}, std::pair{cpu_.get(), 1}}) {
      auto t = [&](const Pair& p) { return side == 0 ? p.gpu.tensor() : p.cpu.tensor(); };
      const ops::ExpertLinear op{.out = t(out), .inp = t(inp), .weight = weight, .bias = t(bias),
                                 .offsets = t(offsets)};
      backend->run(op);
    }
    EXPECT_TRUE(bf16_->supports(ops::ExpertLinear{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(),
                                                  .weight = weight, .bias = bias.gpu.tensor(),
                                                  .offsets = offsets.gpu.tensor()}));
    EXPECT_LT(out.error(), 4e-3) << "C " << C << " OC " << OC;  // the outputs' rounding to bf16
  }
}

// A frozen fp32 checkpoint served in bf16: fp32 weights with bf16 activations take the fp32
// product over widened rows.
TEST_F(CpuBf16, LinearTakesFp32WeightsToo) {
  const int N = 9, C = 32, OC = 24;
  Pair inp(*bf16_, *cpu_, DType::kBF16, {N, C}, random_values(size_t(N) * C, 13));
  Pair weight(*bf16_, *cpu_, DType::kF32, {OC, C}, random_values(size_t(OC) * C, 14));
  Pair out(*bf16_, *cpu_, DType::kBF16, {N, OC}, std::vector<float>(size_t(N) * OC));
  bf16_->run(ops::Linear{.out = out.gpu.tensor(), .inp = inp.gpu.tensor(),
                         .weight = weight.gpu.tensor(), .bias = {}});
  cpu_->run(ops::Linear{.out = out.cpu.tensor(), .inp = inp.cpu.tensor(),
                        .weight = weight.cpu.tensor(), .bias = {}});
  EXPECT_EQ(out.gpu.read(), rounded_to_bf16(out.cpu.read()));
}

// gpt-oss whole: the parity suite's reference checkpoint trained and decoded over the paged cache,
// and the published layout (bf16 matrices, MXFP4 experts) read as stored, each against the fp32
// CPU and held to what bf16 storage alone costs (gpt_oss_device_parity.h), as the GPU and the
// simulators are. The ops cpu-bf16 runs over widened operands by design are named; any other
// found there fails.
const std::set<std::string> kWidenedGptOssOps = {
    "attention",      "attention_backward",     "clamped_swiglu",         "clamped_swiglu_backward",
    "embedding",      "embedding_backward",     "expert_combine",         "expert_combine_backward",
    "expert_linear",  "expert_linear_backward", "rmsnorm",                "rmsnorm_backward",
    "rope",           "router_load_backward",   "router_load_stats",      "topk_routing",
    "topk_routing_backward"};

TEST_F(CpuBf16, GptOssReferenceModelTrainsAndDecodesAsInFp32) {
  check_reference_model_trains_and_decodes(*bf16_, *cpu_, /*bf16=*/true, kWidenedGptOssOps);
}

TEST_F(CpuBf16, GptOssPublishedMxfp4CheckpointRunsAsInFp32) {
  check_published_mxfp4_checkpoint_runs(*bf16_, *cpu_, /*bf16=*/true, kWidenedGptOssOps);
}

}  // namespace
}  // namespace switchyard
