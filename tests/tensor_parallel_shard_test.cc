// One core's shard of a tensor-parallel group (model/tensor_parallel_shard.h) and the ring
// all-reduce a simulator adds for it (backend/neuron/all_reduce_kernel.h): the shard's shape, the
// errors for degrees that do not divide, and the all-reduce's simulated time against the bounds
// its traffic and waits set.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/neuron/all_reduce_kernel.h"
#include "expect_error.h"
#include "model/model_config.h"
#include "model/tensor_parallel_shard.h"

namespace switchyard {
namespace {

TEST(TensorParallelShard, SplitsHeadsExpertWidthsAndVocabulary) {
  const model::ModelConfig full = model::preset("gpt-oss-20b");
  const model::ModelConfig two = model::tensor_parallel_shard(full, 2);
  EXPECT_EQ(two.num_heads, 32);
  EXPECT_EQ(two.kv_heads(), 4);
  EXPECT_EQ(two.head_size(), 64);
  EXPECT_EQ(two.intermediate, 1440);  // 45 MXFP4 blocks each
  EXPECT_EQ(two.vocab_size, 100544);
  EXPECT_EQ(two.channels, 2880);       // the residual stream is whole on every core
  EXPECT_EQ(two.num_experts, 32);
  // 90 blocks over 8 cores: the widest shard holds 12 blocks.
  const model::ModelConfig eight = model::tensor_parallel_shard(full, 8);
  EXPECT_EQ(eight.num_heads, 8);
  EXPECT_EQ(eight.kv_heads(), 1);
  EXPECT_EQ(eight.intermediate, 384);
  EXPECT_EQ(eight.vocab_size, 25136);
  // bf16 experts split evenly.
  EXPECT_EQ(model::tensor_parallel_shard(full, 8, /*mxfp4_experts=*/false).intermediate, 360);
  EXPECT_EQ(model::tensor_parallel_all_reduces(full, 8), 49);
  EXPECT_EQ(model::tensor_parallel_all_reduces(full, 1), 0);
  EXPECT_EQ(model::tensor_parallel_shard(full, 1).num_heads, 64);
  const std::string text = model::describe_shard(full, eight, 8);
  EXPECT_NE(text.find("8 of 64 query heads, 1 of 8 key-value heads, 384 of 2880 columns"),
            std::string::npos)
      << text;
}

TEST(TensorParallelShard, DegreesThatDoNotDivideAreErrors) {
  const model::ModelConfig full = model::preset("gpt-oss-20b");
  expect_error([&] { model::tensor_parallel_shard(full, 3); },
               {"tensor-parallel degree 3 must divide the 64 query heads and 8 key-value heads"});
  expect_error([&] { model::tensor_parallel_shard(full, 16); }, {"degree 16 must divide"});
  expect_error([&] { model::tensor_parallel_shard(full, 0); }, {"at least 1, got 0"});
  expect_error([&] { model::tensor_parallel_shard(model::preset("gpt2-124m"), 2); },
               {"modelled for gpt-oss only"});
}

// Simulated nanoseconds of one all-reduce of `bytes` over `ranks` cores on a fresh device.
double all_reduce_ns(const std::string& device, int64_t bytes, int ranks) {
  std::unique_ptr<backend::Backend> b = backend::create_backend(device);
  backend::SimulatorBackend& sim = backend::require_simulator(*b, "test");
  const double before = sim.simulation_report().total_ns;
  sim.simulate_all_reduce(bytes, ranks);
  return sim.simulation_report().total_ns - before;
}

TEST(SimulatedAllReduce, TakesItsWaitsAndAtLeastItsTrafficOverHbm) {
  const double wait = backend::neuron::kRingStepWaitNs;
  // A few bytes: the 2 (R - 1) waits, plus little.
  const double tiny = all_reduce_ns("trn2-sim:timing", 256, 4);
  EXPECT_GE(tiny, 6 * wait);
  EXPECT_LT(tiny, 6 * wait + 50'000);
  // 32 MiB over 4 ranks: each reduce-scatter step reads two chunks and writes one, each
  // all-gather step reads and writes one: 5 (R - 1) / R of the bytes through this core's HBM.
  const int64_t bytes = int64_t{32} << 20;
  const double big = all_reduce_ns("trn2-sim:timing", bytes, 4);
  std::unique_ptr<backend::Backend> b = backend::create_backend("trn2-sim");
  const double core_gbps = backend::simulation_report(*b)->peak_hbm_gbps;
  ASSERT_GT(core_gbps, 0);
  const double traffic_ns = 5.0 * 3 / 4 * static_cast<double>(bytes) / core_gbps;
  EXPECT_GE(big, 6 * wait + traffic_ns);
  EXPECT_LT(big, 6 * wait + 4 * traffic_ns);
  // More ranks: more waits, a little less traffic.
  EXPECT_GT(all_reduce_ns("trn2-sim:timing", 256, 8), tiny);
  // Fewer elements than ranks (the sampled tokens' reduction at batch 1): empty chunks move
  // nothing, and the waits remain.
  EXPECT_GE(all_reduce_ns("trn2-sim:timing", 8, 8), 14 * wait);
}

TEST(SimulatedAllReduce, TimingOnlyTakesTheFunctionalTime) {
  for (const int ranks : {2, 8}) {
    EXPECT_EQ(all_reduce_ns("trn1-sim", 100'000, ranks), all_reduce_ns("trn1-sim:timing", 100'000, ranks));
  }
}

TEST(SimulatedAllReduce, BadArgumentsAreErrors) {
  std::unique_ptr<backend::Backend> b = backend::create_backend("trn2-sim:timing");
  backend::SimulatorBackend& sim = backend::require_simulator(*b, "test");
  expect_error([&] { sim.simulate_all_reduce(1024, 1); }, {"2 or more ranks, got 1024 and 1"});
  expect_error([&] { sim.simulate_all_reduce(0, 4); }, {"bytes > 0"});
}

}  // namespace
}  // namespace switchyard
