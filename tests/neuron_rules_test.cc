// Every hardware rule the simulator enforces produces an Error naming the kernel, the
// instruction and the rule.
#include <gtest/gtest.h>

#include "expect_error.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {
namespace {

class NeuronRules : public ::testing::Test {
 protected:
  NeuronRules() : core(trn1_config()) { core.set_kernel("rules_kernel"); }
  View filled_sbuf(int64_t partitions, std::vector<int64_t> shape, DType dtype,
                   const std::string& name) {
    View v = core.sbuf_alloc(partitions, shape, dtype, name);
    core.write(v, std::vector<float>(static_cast<size_t>(v.elements()), 1.0f));
    return v;
  }
  NeuronCore core;
};

TEST_F(NeuronRules, PartitionStartAlignment) {
  View t = filled_sbuf(128, {16}, DType::kF32, "t");
  View o = core.sbuf_alloc(128, {16}, DType::kF32, "o");
  // Allowed: <= 32 partitions at 0/32/64/96; 33-64 at 0 or 64; > 64 at 0.
  core.tensor_copy(o.rows(96, 32), t.rows(32, 32));
  core.tensor_copy(o.rows(64, 64), t.rows(0, 64));
  core.tensor_copy(o.rows(0, 100), t.rows(0, 100));
  expect_error([&] { core.tensor_copy(o.rows(16, 16), t.rows(0, 16)); },
               {"rules_kernel", "tensor_copy", "cannot start at partition 16"});
  expect_error([&] { core.tensor_copy(o.rows(0, 64), t.rows(32, 64)); },
               {"tensor_copy", "64 partitions cannot start at partition 32"});
  expect_error([&] { core.tensor_copy(o.rows(0, 96), t.rows(32, 96)); },
               {"96 partitions cannot start at partition 32"});
}

TEST_F(NeuronRules, MatmulLimits) {
  View st = filled_sbuf(128, {129}, DType::kBF16, "st");
  View mv = filled_sbuf(128, {513}, DType::kBF16, "mv");
  View mv32 = filled_sbuf(128, {64}, DType::kF32, "mv32");
  View ints = filled_sbuf(128, {64}, DType::kI32, "ints");
  View acc = core.psum_alloc(128, {512}, DType::kF32, "acc");
  View acc16 = core.psum_alloc(128, {512}, DType::kBF16, "acc16");
  View wide = core.psum_alloc(128, {1024}, DType::kF32, "wide");
  expect_error([&] { core.matmul(acc.cols(0, 64), st, mv.cols(0, 64), true, true); },
               {"matmul", "M = 129 exceeds 128"});
  expect_error([&] { core.matmul(acc, st.cols(0, 128), mv, true, true); }, {"N = 513 exceeds 512"});
  expect_error(
      [&] {
        core.matmul(acc.rows(0, 128).cols(0, 64), st.cols(0, 128).rows(0, 64), mv.cols(0, 64), true,
                    true);
      },
      {"stationary has K = 64 partitions but moving has 128"});
  expect_error([&] { core.matmul(acc16.cols(0, 64), st.cols(0, 128), mv.cols(0, 64), true, true); },
               {"must be an fp32 PSUM tile"});
  expect_error([&] { core.matmul(acc.cols(0, 64), st.cols(0, 128), mv32, true, true); },
               {"same dtype"});
  expect_error(
      [&] { core.matmul(acc.cols(0, 64), ints.cols(0, 64).rows(0, 128), ints, true, true); },
      {"not int32"});
  expect_error(
      [&] { core.matmul(wide.cols(256, 512), st.cols(0, 128), mv.cols(0, 512), true, true); },
      {"crosses a PSUM bank boundary"});
  expect_error(
      [&] {
        core.matmul(acc.rows(0, 64).cols(0, 64), st.cols(0, 128), mv.cols(0, 64), true, true);
      },
      {"must be [M = 128, N = 64]"});
}

TEST_F(NeuronRules, AccumulationGroups) {
  View st = filled_sbuf(128, {128}, DType::kBF16, "st");
  View mv = filled_sbuf(128, {64}, DType::kBF16, "mv");
  View acc = core.psum_alloc(128, {8, 512}, DType::kF32, "acc");  // all 8 banks
  View out = core.sbuf_alloc(128, {64}, DType::kF32, "out");
  auto bank = [&](int i) { return acc.slice(0, i, 1).flatten().cols(0, 64); };
  expect_error([&] { core.matmul(bank(0), st, mv, /*start=*/false, true); },
               {"no open accumulation group"});
  for (int i = 0; i < 8; ++i) core.matmul(bank(i), st, mv, true, false);
  expect_error([&] { core.tensor_copy(out, bank(3)); },
               {"tensor_copy", "accumulation group that is still open"});
  // A new group over part of an open one is rejected.
  expect_error([&] { core.matmul(bank(0).cols(0, 32), st, mv.cols(0, 32), true, false); },
               {"overlaps a different open accumulation group"});
  core.matmul(bank(0), st, mv, false, true);  // closes group 0
  core.tensor_copy(out, bank(0));
  EXPECT_EQ(core.read(out)[0], 256.0f);  // 2 matmuls x K = 128 ones
  expect_error([&] { core.release(acc); }, {"release of PSUM tile 'acc'", "still open"});
}

TEST_F(NeuronRules, NinthOpenGroupIsRejected) {
  View st = filled_sbuf(128, {128}, DType::kBF16, "st");
  View mv = filled_sbuf(128, {32}, DType::kBF16, "mv");
  View acc = core.psum_alloc(128, {16, 32}, DType::kF32, "acc");  // two groups per bank
  for (int i = 0; i < 8; ++i) core.matmul(acc.slice(0, i, 1).flatten(), st, mv, true, false);
  expect_error([&] { core.matmul(acc.slice(0, 8, 1).flatten(), st, mv, true, false); },
               {"9th accumulation group", "at most 8"});
}

TEST_F(NeuronRules, FreeSizeLimits) {
  View big = filled_sbuf(128, {65537}, DType::kBF16, "big");
  expect_error([&] { core.tensor_copy(big, big); },
               {"free size 65537 exceeds the sbuf limit of 65536"});
  View ps = core.psum_alloc(128, {5000}, DType::kBF16, "ps");
  View small = core.sbuf_alloc(128, {5000}, DType::kBF16, "small");
  expect_error([&] { core.tensor_copy(small, ps); },
               {"free size 5000 exceeds the psum limit of 4096"});
}

TEST_F(NeuronRules, EngineAndMemoryConstraints) {
  View t = filled_sbuf(128, {16}, DType::kF32, "t");
  View ps = core.psum_alloc(128, {16}, DType::kF32, "ps");
  View h = core.hbm_alloc({128, 16}, DType::kF32, "h");
  expect_error([&] { core.tensor_copy(ps, t, Engine::kGpSimd); }, {"GpSimd cannot access PSUM"});
  expect_error([&] { core.tensor_copy(t, h); }, {"cannot access HBM"});
  expect_error([&] { core.dma_copy(ps, h); }, {"dma_copy", "not PSUM"});
  expect_error([&] { core.dma_copy(t.cols(0, 8), h); }, {"differ in shape"});
  expect_error([&] { core.dma_copy(t, h, 16); }, {"DMA queue 16 does not exist"});
  expect_error([&] { core.tensor_tensor(t, t, AluOp::kAdd, t, Engine::kScalar); },
               {"ScalarE cannot run tensor_tensor"});
  View idx = filled_sbuf(128, {1}, DType::kF32, "idx");
  expect_error([&] { core.dma_gather(t, h, idx); }, {"must be an int32 [P, 1] tile"});
  View col = filled_sbuf(128, {1}, DType::kF32, "col");
  expect_error([&] { core.tensor_copy(col.broadcast(0, 16), t); }, {"broadcast"});
  expect_error([&] { core.dma_copy(t, h.pattern(100, {128, 16}, {{16, 1}})); }, {"reaches byte"});
  core.release(t);
  expect_error([&] { core.tensor_copy(ps, t); }, {"released"});
  // The released tile's slot goes to the next allocation; the old view still may not be used.
  View reused = filled_sbuf(128, {16}, DType::kF32, "reused");
  expect_error([&] { core.tensor_copy(ps, t); }, {"'(released)'", "was released"});
  expect_error([&] { core.release(t); }, {"was already released"});
  core.tensor_copy(ps, reused);
}

TEST_F(NeuronRules, CapacityFailsAtOnceWithSizes) {
  expect_error([&] { core.sbuf_alloc(128, {200000}, DType::kF8E4M3, "huge"); },
               {"SBUF allocation 'huge'", "200000 bytes per partition", "180224"});
  View a = core.sbuf_alloc(128, {40000}, DType::kF32, "a");  // 160000 bytes
  expect_error([&] { core.sbuf_alloc(128, {8000}, DType::kF32, "b"); },
               {"32000 bytes per partition", "20224 of 180224"});
  core.release(a);
  core.sbuf_alloc(128, {8000}, DType::kF32, "b");  // fits after release
  for (int i = 0; i < 8; ++i) core.psum_alloc(128, {512}, DType::kF32, "bank");
  expect_error([&] { core.psum_alloc(128, {1}, DType::kF32, "ninth"); },
               {"PSUM allocation 'ninth'", "0 of 16384"});
  expect_error([&] { core.hbm_alloc({5LL << 30}, DType::kF32, "weights"); },
               {"HBM allocation 'weights'", "21474836480 bytes"});
  expect_error([&] { core.sbuf_alloc(129, {4}, DType::kF32, "tall"); }, {"must be in 1..128"});
}

}  // namespace
}  // namespace switchyard::neuron
