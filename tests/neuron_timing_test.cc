// Simulated timing reproduces the published cost figures (simulated time is deterministic, so
// these are exact checks of the model, not of the machine running the tests).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "neuron/cost_model.h"
#include "neuron/isa.h"
#include "neuron/neuron_core.h"

namespace switchyard::neuron {
namespace {

View filled(NeuronCore& core, int64_t partitions, std::vector<int64_t> shape, DType dtype,
            const char* name) {
  View v = core.sbuf_alloc(partitions, shape, dtype, name);
  core.write(v, std::vector<float>(static_cast<size_t>(v.elements()), 0.5f));
  return v;
}

// TensorE cycles per matmul in steady state (many independent matmuls back to back).
double matmul_cycles(const CoreConfig& config, DType dtype, int64_t n) {
  NeuronCore core(config);
  View st = filled(core, 128, {128}, dtype, "st");
  View mv = filled(core, 128, {n}, dtype, "mv");
  std::vector<View> acc;
  for (int i = 0; i < 8; ++i) acc.push_back(core.psum_alloc(128, {n}, DType::kF32, "acc"));
  const int count = 64;
  for (int i = 0; i < count; ++i) core.matmul(acc[i % 8], st, mv, true, true);
  RunStats s = core.stats();
  return s.engines[0].busy_cycles / count;
}

TEST(NeuronTiming, MatmulBf16CostsAboutNCycles) {
  double cycles = matmul_cycles(trn1_config(), DType::kBF16, 512);
  EXPECT_NEAR(cycles, 512, 0.05 * 512);
  // A single matmul: 512 cycles plus the first LoadStationary (a quarter of 128 cycles).
  NeuronCore core(trn1_config());
  View st = filled(core, 128, {128}, DType::kBF16, "st");
  View mv = filled(core, 128, {512}, DType::kBF16, "mv");
  View acc = core.psum_alloc(128, {512}, DType::kF32, "acc");
  core.matmul(acc, st, mv, true, true);
  EXPECT_NEAR(core.now_ns() * trn1_config().tensor_ghz, 512 + 32, 1e-6);
  // Achieved rate in steady state is the published per-core peak (~92 TFLOPS on trn1).
  double tflops = 2.0 * 128 * 128 * 512 / (cycles / trn1_config().tensor_ghz) / 1e3;
  EXPECT_NEAR(tflops, 91.75, 0.05 * 91.75);
}

TEST(NeuronTiming, MatmulFp32IsFourTimesSlowerAndSmallNHasAFloor) {
  EXPECT_NEAR(matmul_cycles(trn1_config(), DType::kF32, 512), 4 * 512, 0.05 * 4 * 512);
  EXPECT_NEAR(matmul_cycles(trn1_config(), DType::kBF16, 16), 64, 0.05 * 64);
  // fp8 doubles the rate on trn2 only.
  EXPECT_NEAR(matmul_cycles(trn2_config(), DType::kF8E4M3, 512), 256, 0.05 * 256);
  EXPECT_NEAR(matmul_cycles(trn1_config(), DType::kF8E4M3, 512), 512, 0.05 * 512);
}

TEST(NeuronTiming, VectorOpCostsNPlusFixedOverhead) {
  NeuronCore core(trn1_config());
  View in = filled(core, 128, {2048}, DType::kF32, "in");
  View out = core.sbuf_alloc(128, {2048}, DType::kF32, "out");
  core.tensor_copy(out, in);
  const double ghz = trn1_config().vector_ghz;
  EXPECT_NEAR(core.last_timing().end_ns - core.last_timing().start_ns, 2048 / ghz, 1e-6);
  EXPECT_NEAR(core.now_ns() * ghz, 2048 + cost::kVectorFixedLatencyCycles, 1e-6);
  // Two inputs: ~2N.
  View b = filled(core, 128, {2048}, DType::kF32, "b");
  core.tensor_tensor(out, in, AluOp::kAdd, b);
  EXPECT_NEAR((core.last_timing().end_ns - core.last_timing().start_ns) * ghz, 4096, 1e-6);
  // Small ops hit the minimum issue interval.
  core.tensor_copy(out.cols(0, 8), in.cols(0, 8));
  EXPECT_NEAR((core.last_timing().end_ns - core.last_timing().start_ns) * ghz,
              cost::kVectorMinIssueCycles, 1e-6);
}

TEST(NeuronTiming, ScalarActivationCostsMaxOf64AndN) {
  NeuronCore core(trn1_config());
  View in = filled(core, 128, {1000}, DType::kF32, "in");
  View out = core.sbuf_alloc(128, {1000}, DType::kF32, "out");
  core.activation(out, Activation::kExp, in);
  const double ghz = trn1_config().scalar_ghz;
  EXPECT_NEAR((core.last_timing().end_ns - core.last_timing().start_ns) * ghz, 1000, 1e-6);
  core.activation(out.cols(0, 10), Activation::kExp, in.cols(0, 10));
  EXPECT_NEAR((core.last_timing().end_ns - core.last_timing().start_ns) * ghz, 64, 1e-6);
}

// Achieved bandwidth of `count` back-to-back transfers of `bytes` each on one DMA queue.
double queue_gbps(int64_t bytes, int count) {
  NeuronCore core(trn1_config());
  int64_t cols = bytes / 4 / 128;
  View src = core.hbm_alloc({128, cols * count}, DType::kF32, "src");
  core.write(src, std::vector<float>(static_cast<size_t>(128 * cols * count), 1.0f));
  View dst = core.sbuf_alloc(128, {cols * count}, DType::kF32, "dst");
  for (int i = 0; i < count; ++i)
    core.dma_copy(dst.cols(i * cols, cols), src.cols(i * cols, cols), /*queue=*/3);
  return static_cast<double>(bytes) * count / core.last_timing().end_ns;
}

TEST(NeuronTiming, DmaReachesQueueBandwidthFrom32KiB) {
  const double bw = trn1_config().dma_queue_gbps;
  EXPECT_NEAR(queue_gbps(32 * 1024, 32), bw, 0.01 * bw);
  EXPECT_NEAR(queue_gbps(256 * 1024, 8), bw, 0.01 * bw);
  EXPECT_LT(queue_gbps(4 * 1024, 32), 0.2 * bw);
  EXPECT_LT(queue_gbps(16 * 1024, 32), 0.6 * bw);
}

TEST(NeuronTiming, DmaQueuesShareTheCoresHbmBandwidth) {
  // 16 queues x ~29 GB/s exceed trn1's 410 GB/s per-core HBM share: HBM is the limit.
  NeuronCore core(trn1_config());
  const int64_t cols = 2048;  // 1 MiB per transfer
  View src = core.hbm_alloc({128, cols * 64}, DType::kF32, "src");
  core.write(src, std::vector<float>(static_cast<size_t>(128 * cols * 64), 1.0f));
  std::vector<View> tiles;
  for (int i = 0; i < 64; ++i) tiles.push_back(core.sbuf_alloc(128, {cols / 16}, DType::kF32, "t"));
  // 64 independent 64 KiB transfers spread over the 16 queues.
  for (int i = 0; i < 64; ++i) core.dma_copy(tiles[i], src.cols(i * cols, cols / 16), i % 16);
  const double bytes = 64.0 * 128 * (cols / 16) * 4;
  const double gbps = bytes / core.now_ns();
  EXPECT_LE(gbps, trn1_config().hbm_core_gbps() * 1.001);
  EXPECT_GT(gbps, trn1_config().hbm_core_gbps() * 0.85);
  RunStats s = core.stats();
  EXPECT_EQ(s.hbm_read_bytes, static_cast<int64_t>(bytes));
}

TEST(NeuronTiming, ReadWaitsForWriteAndWriteWaitsForRead) {
  NeuronCore core(trn1_config());
  View src = core.hbm_alloc({128, 8192}, DType::kF32, "src");
  core.write(src, std::vector<float>(128 * 8192, 1.0f));
  View t = core.sbuf_alloc(128, {8192}, DType::kF32, "t");
  View out = core.sbuf_alloc(128, {8192}, DType::kF32, "out");
  core.dma_copy(t, src);
  InstructionTiming load = core.last_timing();
  core.tensor_copy(out, t);  // RAW: waits for the DMA's data
  InstructionTiming copy = core.last_timing();
  EXPECT_GE(copy.start_ns, load.done_ns);
  core.dma_copy(t, src);  // WAR: may not overwrite t before the copy has read it
  InstructionTiming reload = core.last_timing();
  EXPECT_GE(reload.start_ns, copy.end_ns);
  core.tensor_copy(out, t);  // WAW on out and RAW on t
  EXPECT_GE(core.last_timing().start_ns, reload.done_ns);
  // An independent op on another tile does not wait.
  View other = core.sbuf_alloc(128, {64}, DType::kF32, "other");
  core.memset(other, 0.0f, Engine::kScalar);
  EXPECT_LT(core.last_timing().start_ns, reload.start_ns);
}

TEST(NeuronTiming, EnginesOverlapExceptV2PortConflicts) {
  for (bool v2 : {true, false}) {
    NeuronCore core(v2 ? trn1_config() : trn2_config());
    View a = filled(core, 128, {4096}, DType::kF32, "a");
    View b = filled(core, 128, {4096}, DType::kF32, "b");
    View c = filled(core, 128, {4096}, DType::kF32, "c");
    View oa = core.sbuf_alloc(128, {4096}, DType::kF32, "oa");
    View ob = core.sbuf_alloc(128, {4096}, DType::kF32, "ob");
    View oc = core.sbuf_alloc(128, {4096}, DType::kF32, "oc");
    core.tensor_scalar(oa, a, AluOp::kAdd, 1.0f, AluOp::kBypass, 0.0f, Engine::kVector);
    InstructionTiming vec = core.last_timing();
    core.activation(ob, Activation::kExp, b);  // ScalarE on SBUF: overlaps on both
    EXPECT_LT(core.last_timing().start_ns, vec.end_ns);
    core.tensor_scalar(oc, c, AluOp::kAdd, 1.0f, AluOp::kBypass, 0.0f, Engine::kGpSimd);
    if (v2) {
      EXPECT_GE(core.last_timing().start_ns, vec.end_ns);  // shares the SBUF port with VectorE
    } else {
      EXPECT_LT(core.last_timing().start_ns, vec.end_ns);
    }
  }
}

TEST(NeuronTiming, StatsReportBusyTimesAndHighWaterMarks) {
  NeuronCore core(trn1_config());
  View st = filled(core, 128, {128}, DType::kBF16, "st");
  View mv = filled(core, 128, {512}, DType::kBF16, "mv");
  View acc = core.psum_alloc(128, {512}, DType::kF32, "acc");
  core.matmul(acc, st, mv, true, true);
  RunStats s = core.stats();
  EXPECT_EQ(s.matmul_flops, 2.0 * 128 * 128 * 512);
  EXPECT_EQ(s.sbuf_high_water_bytes, 256 + 1024);
  EXPECT_EQ(s.psum_high_water_bytes, 2048);
  EXPECT_NEAR(s.engines[0].utilization, 1.0, 1e-9);
  EXPECT_EQ(s.engines[0].instructions, 1);
  EXPECT_EQ(s.engines.size(), 4u + 16u);
}

TEST(NeuronTiming, FenceStartsLaterWorkAfterEverythingBefore) {
  // Two independent DMAs overlap on separate queues; after a fence the second waits for the first.
  for (bool fenced : {false, true}) {
    NeuronCore core(trn2_config());
    View a = core.hbm_alloc({128, 512}, DType::kF32, "a");
    View b = core.hbm_alloc({128, 512}, DType::kF32, "b");
    core.write(a, std::vector<float>(128 * 512, 1.0f));
    core.write(b, std::vector<float>(128 * 512, 2.0f));
    View ta = core.sbuf_alloc(128, {512}, DType::kF32, "ta");
    View tb = core.sbuf_alloc(128, {512}, DType::kF32, "tb");
    core.dma_copy(ta, a, 0);
    const double first_done = core.now_ns();
    if (fenced) core.fence();
    core.dma_copy(tb, b, 1);
    if (fenced) {
      EXPECT_GE(core.last_timing().start_ns, first_done);
    } else {
      EXPECT_LT(core.last_timing().start_ns, first_done);
    }
  }
}

TEST(NeuronTiming, AttachedHbmTensorsAreTheCallersMemory) {
  NeuronCore core(trn1_config());
  std::vector<float> host(4 * 8);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
  View t = core.hbm_attach(host.data(), {4, 8}, DType::kF32, "host");
  EXPECT_EQ(core.read(t.rows(1, 1)), std::vector<float>(host.begin() + 8, host.begin() + 16));
  View tile = core.sbuf_alloc(4, {8}, DType::kF32, "tile");
  core.dma_copy(tile, t);
  core.tensor_scalar(tile, tile, AluOp::kMultiply, 2.0f);
  core.dma_copy(t, tile);
  for (size_t i = 0; i < host.size(); ++i) EXPECT_EQ(host[i], 2.0f * static_cast<float>(i));
  core.release(t);
  EXPECT_EQ(host[3], 6.0f);  // releasing leaves the caller's bytes alone
}

TEST(NeuronTiming, FencedRunsKeepTheirTimingOverManyKernels) {
  // The same kernel launched repeatedly with fences in between costs the same each time (the
  // ledger and dependency records forgotten at a fence must not change later timings).
  NeuronCore core(trn2_config());
  View src = core.hbm_alloc({128, 4096}, DType::kBF16, "src");
  core.write(src, std::vector<float>(128 * 4096, 1.0f));
  std::vector<double> durations;
  for (int launch = 0; launch < 5; ++launch) {
    const double start = core.now_ns();
    View tile = core.sbuf_alloc(128, {4096}, DType::kBF16, "tile");
    for (int q = 0; q < 4; ++q) core.dma_copy(tile.cols(q * 1024, 1024), src.cols(q * 1024, 1024), q);
    core.release(tile);
    core.fence();
    durations.push_back(core.now_ns() - start);
  }
  for (double d : durations) EXPECT_NEAR(d, durations[0], 1e-6 * durations[0]);
}

TEST(NeuronTiming, TraceHasATrackPerEngineAndQueueAndNamedSlices) {
  NeuronCore core(trn2_config());
  core.record_trace(true);
  core.set_kernel("k1");
  View h = core.hbm_alloc({128, 64}, DType::kF32, "h");
  core.write(h, std::vector<float>(128 * 64, 1.0f));
  View t = core.sbuf_alloc(128, {64}, DType::kF32, "t");
  core.dma_copy(t, h, 5);
  core.tensor_copy(t, t);
  const std::string path = ::testing::TempDir() + "neuron_trace_test.json";
  core.write_trace(path);
  nlohmann::json doc = nlohmann::json::parse(std::ifstream(path));
  std::set<std::string> tracks;
  std::vector<std::pair<std::string, int>> slices;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "thread_name") tracks.insert(e["args"]["name"]);
    if (e["ph"] == "X") slices.emplace_back(e["name"], e["tid"]);
  }
  EXPECT_EQ(tracks.size(), 4u + 16u + 1u);  // engines, DMA queues, LoadStationary
  EXPECT_TRUE(tracks.count("VectorE") && tracks.count("DMA queue 15"));
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[0], std::make_pair(std::string("k1.dma_copy"), kComputeEngines + 5));
  EXPECT_EQ(slices[1], std::make_pair(std::string("k1.tensor_copy"), 1));
}

}  // namespace
}  // namespace switchyard::neuron
