// Run by mpirun as 2 (or more) processes (tests/CMakeLists.txt): the MPI Communicator's
// collectives, and data-parallel training with the sharded optimizer against one process training
// on the whole batch. Every test is collective: all ranks run them in the same order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <vector>

#include "backend/backend.h"
#include "dist/mpi/mpi_communicator.h"
#include "model/model.h"
#include "model/model_config.h"
#include "train/data_parallel.h"
#include "relative_error.h"

namespace switchyard {
namespace {

dist::Communicator* comm = nullptr;  // set by main

// What rank q contributes at element i: distinct per rank and element, with rounding to matter.
float contribution(int q, int64_t i) { return 0.1f * static_cast<float>(q + 1) + 1e-3f * static_cast<float>(i % 97); }

TEST(MpiCommunicator, ReduceScatterSumsEachPieceInRankOrderOnItsOwner) {
  const int n = comm->size(), me = comm->rank();
  const std::vector<int64_t> counts = dist::even_counts(1001, n);
  std::vector<float> x(1001);
  for (int64_t i = 0; i < 1001; ++i) x[static_cast<size_t>(i)] = contribution(me, i);
  comm->reduce_scatter_sum(Tensor::dense(x.data(), DType::kF32, {1001}), counts);
  const int64_t begin = std::accumulate(counts.begin(), counts.begin() + me, int64_t{0});
  for (int64_t i = begin; i < begin + counts[static_cast<size_t>(me)]; ++i) {
    float expected = contribution(0, i);
    for (int q = 1; q < n; ++q) expected += contribution(q, i);
    ASSERT_EQ(x[static_cast<size_t>(i)], expected) << "element " << i;  // bit for bit
  }
}

TEST(MpiCommunicator, AllGatherAllReduceBroadcastAndText) {
  const int n = comm->size(), me = comm->rank();
  const std::vector<int64_t> counts = dist::even_counts(37, n);
  std::vector<double> x(37, -1.0);
  const int64_t begin = std::accumulate(counts.begin(), counts.begin() + me, int64_t{0});
  for (int64_t i = begin; i < begin + counts[static_cast<size_t>(me)]; ++i) x[static_cast<size_t>(i)] = 2.0 * i;
  comm->all_gather(Tensor::dense(x.data(), DType::kF64, {37}), counts);
  for (int64_t i = 0; i < 37; ++i) EXPECT_EQ(x[static_cast<size_t>(i)], 2.0 * i);

  std::vector<float> y(5, static_cast<float>(me + 1));
  comm->all_reduce_sum(Tensor::dense(y.data(), DType::kF32, {5}));
  for (float v : y) EXPECT_EQ(v, static_cast<float>(n * (n + 1) / 2));

  std::vector<float> z(3, static_cast<float>(me));
  comm->broadcast(Tensor::dense(z.data(), DType::kF32, {3}), n - 1);
  for (float v : z) EXPECT_EQ(v, static_cast<float>(n - 1));

  // 16-bit elements (bf16, and the low halves of parameters held as fp32 halves) move as they are.
  std::vector<uint16_t> halves(37, 0);
  for (int64_t i = begin; i < begin + counts[static_cast<size_t>(me)]; ++i) {
    halves[static_cast<size_t>(i)] = static_cast<uint16_t>(0xFF00 + i);
  }
  comm->all_gather(Tensor::dense(halves.data(), DType::kU16, {37}), counts);
  for (int64_t i = 0; i < 37; ++i) EXPECT_EQ(halves[static_cast<size_t>(i)], 0xFF00 + i);
  std::vector<uint16_t> high(4, static_cast<uint16_t>(me));
  comm->broadcast(Tensor::dense(high.data(), DType::kBF16, {4}), n - 1);
  for (uint16_t v : high) EXPECT_EQ(v, n - 1);

  const std::vector<std::string> texts = comm->all_gather_text(std::string(static_cast<size_t>(me), 'r'));
  ASSERT_EQ(texts.size(), static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) EXPECT_EQ(texts[static_cast<size_t>(q)], std::string(static_cast<size_t>(q), 'r'));
}

TEST(MpiCommunicator, PiecesThatDoNotAddUpAreAnError) {
  std::vector<float> x(10);
  const std::vector<int64_t> counts = dist::even_counts(9, comm->size());
  EXPECT_THROW(comm->reduce_scatter_sum(Tensor::dense(x.data(), DType::kF32, {10}), counts), Error);
  // 16-bit elements move in gathers and broadcasts but are not summed.
  std::vector<uint16_t> halves(9);
  EXPECT_THROW(comm->reduce_scatter_sum(Tensor::dense(halves.data(), DType::kU16, {9}), counts), Error);
}

// The corpus as byte tokens (the tiny preset's vocabulary), read once.
const std::vector<int32_t>& corpus_bytes() {
  static const std::vector<int32_t> bytes = [] {
    std::ifstream in(std::string(SWITCHYARD_SHARED_DATA) + "/tinyshakespeare.txt", std::ios::binary);
    std::vector<int32_t> values;
    for (char c; in.get(c);) values.push_back(static_cast<unsigned char>(c));
    return values;
  }();
  return bytes;
}

// A small GPT-2 trained for `steps` steps on consecutive windows of the corpus, with the statistics
// of every step: by one process on the whole batch, or by this rank on its share with
// DataParallelSync.
struct Trained {
  std::vector<float> losses, norms, parameters;
  size_t optimizer_bytes = 0;
};

Trained train_tiny(bool data_parallel, int steps, int grad_accum, const char* device = "cpu") {
  model::ModelConfig config = model::preset("tiny");
  config.num_layers = 3;  // odd: buckets and pieces that do not split evenly
  config.channels = 72;   // vectors of 72 floats: alignment padding after each, inside the buckets
  auto backend = backend::create_backend(device);
  auto gpt = model::Model::create(*backend, config);
  gpt->init_random(5);
  std::unique_ptr<train::DataParallelSync> sync;
  const int ranks = data_parallel ? comm->size() : 1;
  if (data_parallel) sync = std::make_unique<train::DataParallelSync>(*gpt, *comm, 20000);
  const int B = 2 * comm->size(), T = 32, rows = B / ranks;
  const size_t offset = static_cast<size_t>(data_parallel ? comm->rank() : 0) * rows * T;
  model::AdamWConfig adamw;
  Trained out;
  for (int step = 1; step <= steps; ++step) {
    gpt->begin_step();
    for (int micro = 0; micro < grad_accum; ++micro) {
      const size_t start = static_cast<size_t>((step - 1) * grad_accum + micro) * B * T;
      const int32_t* tokens = corpus_bytes().data() + start;
      if (sync) sync->begin_micro_batch(micro == grad_accum - 1);
      gpt->forward_backward(tokens + offset, tokens + offset + 1, rows, T,
                            1.0f / static_cast<float>(grad_accum * ranks));
    }
    const model::Model::StepResult r = gpt->finish_step(adamw, 6e-4f, step, 1.0f);
    out.losses.push_back(r.loss);
    out.norms.push_back(r.grad_norm);
  }
  out.parameters = gpt->parameters_to_host();
  out.optimizer_bytes = gpt->optimizer_state_bytes();
  return out;
}

void expect_same_training(int grad_accum) {
  const Trained alone = train_tiny(false, 20, grad_accum);
  const Trained ranks = train_tiny(true, 20, grad_accum);
  for (size_t s = 0; s < alone.losses.size(); ++s) {
    EXPECT_NEAR(ranks.losses[s], alone.losses[s], 1e-6 * std::fabs(alone.losses[s])) << "step " << s + 1;
    EXPECT_NEAR(ranks.norms[s], alone.norms[s], 1e-5 * alone.norms[s]) << "step " << s + 1;
  }
  const double parameters_apart = relative_error(ranks.parameters, alone.parameters);
  EXPECT_LT(parameters_apart, 1e-6);
  if (comm->rank() == 0) std::printf("final parameters %.3g apart (relative L2)\n", parameters_apart);
  // Every rank holds the same parameters: rank 0's, broadcast, are everyone's.
  std::vector<float> first = ranks.parameters;
  comm->broadcast(Tensor::dense(first.data(), DType::kF32, {static_cast<int64_t>(first.size())}), 0);
  EXPECT_EQ(first, ranks.parameters);
}

TEST(DataParallel, TwentyStepsMatchOneProcessOnTheWholeBatch) { expect_same_training(1); }

TEST(DataParallel, GradientAccumulationToo) { expect_same_training(2); }

// In bf16 the matrices are held as fp32 halves (model/parameter_storage.h), gathered as two 16-bit
// pieces: every rank ends with rank 0's parameters bit for bit, and the run follows the single
// process's within what bf16 products over different row counts allow.
TEST(DataParallel, Bf16ParametersHeldAsHalvesGatherWhole) {
  const Trained alone = train_tiny(false, 5, 1, "cpu-bf16");
  const Trained ranks = train_tiny(true, 5, 1, "cpu-bf16");
  for (size_t s = 0; s < alone.losses.size(); ++s) {
    EXPECT_NEAR(ranks.losses[s], alone.losses[s], 1e-2 * std::fabs(alone.losses[s])) << "step " << s + 1;
  }
  EXPECT_LT(relative_error(ranks.parameters, alone.parameters), 1e-2);
  std::vector<float> first = ranks.parameters;
  comm->broadcast(Tensor::dense(first.data(), DType::kF32, {static_cast<int64_t>(first.size())}), 0);
  EXPECT_EQ(first, ranks.parameters);
}

TEST(DataParallel, EachRankHoldsItsShareOfTheOptimizerState) {
  const Trained alone = train_tiny(false, 1, 1);
  const Trained ranks = train_tiny(true, 1, 1);
  // Pieces differ by at most one float per span between ranks; together they are the whole.
  double total = static_cast<double>(ranks.optimizer_bytes);
  comm->all_reduce_sum(Tensor::dense(&total, DType::kF64, {1}));
  const size_t whole_layout = alone.optimizer_bytes;
  EXPECT_LE(total, static_cast<double>(whole_layout));  // the alignment gaps between spans are nobody's
  EXPECT_GT(total, 0.999 * static_cast<double>(whole_layout));
  EXPECT_NEAR(static_cast<double>(ranks.optimizer_bytes),
              static_cast<double>(whole_layout) / comm->size(), 0.002 * static_cast<double>(whole_layout));
}

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  switchyard::dist::MpiCommunicator mpi;
  switchyard::comm = &mpi;
  // Only rank 0 prints gtest's report; every rank's failures still fail the job.
  if (mpi.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  double failures = failed;
  mpi.all_reduce_sum(switchyard::Tensor::dense(&failures, switchyard::DType::kF64, {1}));
  return failures > 0 ? 1 : 0;
}
