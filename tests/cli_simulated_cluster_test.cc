// `--cores N` on trn1-sim / trn2-sim (bench train, train): a data-parallel step on N simulated
// NeuronCores, end to end through the command-line tool: one core is exactly today's single-core
// step, bigger clusters spend more of the step in collectives, traces show them, bad flags say why.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "shell_command.h"

namespace {

using switchyard::run_cli;

nlohmann::json last_json_line(const std::string& output) {
  std::string trimmed = output.substr(0, output.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(trimmed.substr(trimmed.rfind('\n') + 1));
}

// One timed step of the tiny preset, `per_core` sequences of 16 tokens on each of `cores` cores.
nlohmann::json bench(const std::string& device, int cores, int per_core, const std::string& extra = "") {
  switchyard::ShellResult r = run_cli("bench train --model tiny --device " + device + " --seq 16 --steps 1 --warmup 1 --json --batch " +
                     std::to_string(per_core * std::max(cores, 1)) + (cores > 0 ? " --cores " + std::to_string(cores) : "") +
                     " " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.exit_code == 0 ? last_json_line(r.output) : nlohmann::json::object();
}

class SimulatedClusterCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "missing " << SWITCHYARD_CLI;
  }
};

TEST_F(SimulatedClusterCli, OneCoreIsTodaysSingleCoreStep) {
  const nlohmann::json plain = bench("trn2-sim", 0, 2);  // no --cores
  const nlohmann::json one = bench("trn2-sim", 1, 2);
  ASSERT_TRUE(plain.contains("simulated_ms_per_step") && one.contains("simulated_ms_per_step"));
  EXPECT_FALSE(plain.contains("cores"));
  EXPECT_EQ(one["simulated_ms_per_step"], plain["simulated_ms_per_step"]);
  EXPECT_EQ(one["flops_per_step"], plain["flops_per_step"]);
  EXPECT_EQ(one["cores"], 1);
  EXPECT_EQ(one["scaling_efficiency"], 1.0);
  EXPECT_EQ(one["collective_ms"], 0.0);
  // The single-core baseline of a cluster is timed on a timing-only copy: the same step, to the bit.
  const nlohmann::json two = bench("trn2-sim", 2, 2);
  EXPECT_EQ(two["simulated_single_core_ms_per_step"], plain["simulated_ms_per_step"]);
  EXPECT_GT(two["collective_ms"].get<double>(), 0);
}

TEST_F(SimulatedClusterCli, MoreCoresSpendMoreOfTheStepInCollectives) {
  double last_total = 0, last_exposed = 0, last_share = 0, single = 0;
  for (int cores : {2, 8, 16, 128, 256}) {  // a chip's cores, then chips, then instances
    SCOPED_TRACE(cores);
    const nlohmann::json j = bench("trn2-sim:timing", cores, 1);
    ASSERT_TRUE(j.contains("collective_ms"));
    const double total = j["collective_ms"], exposed = j["exposed_collective_ms"];
    const double step = j["simulated_ms_per_step"];
    EXPECT_GT(total, last_total);
    EXPECT_GT(exposed, last_exposed);
    EXPECT_LE(exposed, total + 1e-12);
    EXPECT_DOUBLE_EQ(j["exposed_collective_share"].get<double>(), exposed / step);
    EXPECT_GT(exposed / step, last_share);
    last_share = exposed / step;
    // A core of the cluster runs the single core's step, minus 1 - 1/N of the optimizer step
    // (ZeRO-1), plus the exposed collectives: never slower than that with nothing saved.
    if (single == 0) single = j["simulated_single_core_ms_per_step"];
    EXPECT_EQ(j["simulated_single_core_ms_per_step"].get<double>(), single);
    EXPECT_LE(step, single + exposed + 1e-9);
    EXPECT_NEAR(j["simulated_cluster_tokens_per_s"].get<double>(),
                j["simulated_tokens_per_s_per_core"].get<double>() * cores, 1e-6 * cores * 1e6);
    EXPECT_EQ(j["cores"], cores);
    EXPECT_EQ(j["chips"], cores <= 8 ? 1 : cores / 8);
    EXPECT_EQ(j["instances"], cores <= 128 ? 1 : cores / 128);
    last_total = total;
    last_exposed = exposed;
  }
}

TEST_F(SimulatedClusterCli, TheTraceShowsTheCollectivesOnTheirOwnTrack) {
  const std::string trace = ::testing::TempDir() + "simulated_cluster_trace.json";
  const nlohmann::json j = bench("trn1-sim:timing", 4, 1, "--trace " + trace);
  EXPECT_EQ(j["chips"], 2);
  const nlohmann::json t = nlohmann::json::parse(std::ifstream(trace));
  int track = -1, reduce_scatters = 0, gathers = 0, waits = 0;
  for (const auto& e : t["traceEvents"]) {
    if (e.value("name", "") == "thread_name" &&
        e["args"].value("name", "") == "collectives (simulated interconnect)") {
      track = e["tid"];
    }
  }
  ASSERT_GE(track, 0) << "no collectives track";
  for (const auto& e : t["traceEvents"]) {
    const std::string name = e.value("name", "");
    if (e.value("ph", "") != "X") continue;
    if (e["tid"] == track) {
      reduce_scatters += name.rfind("reduce_scatter", 0) == 0;
      gathers += name == "all_gather parameters";
    }
    waits += name.rfind("data_parallel.wait", 0) == 0;
  }
  EXPECT_EQ(reduce_scatters, j["gradient_buckets"].get<int>());
  EXPECT_EQ(gathers, 1);
  EXPECT_GE(waits, 2);  // the statistics and the all-gather are always waited for
}

TEST_F(SimulatedClusterCli, BadFlagsSayWhy) {
  const std::string base = "bench train --model tiny --seq 16 --steps 1 --warmup 0 ";
  switchyard::ShellResult r = run_cli(base + "--device trn2-sim --batch 2 --cores 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--cores: Value 0 not in range"), std::string::npos) << r.output;
  r = run_cli(base + "--device cpu --batch 2 --cores 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--cores needs a simulator device"), std::string::npos) << r.output;
  r = run_cli(base + "--device trn2-sim:timing --batch 3 --cores 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--batch 3 does not split over --cores 2"), std::string::npos) << r.output;
  r = run_cli(base + "--device trn2-sim:timing --batch 12 --cores 12");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--cores 12: more cores than one trn2 chip holds (8) must fill whole chips"),
            std::string::npos)
      << r.output;
  r = run_cli(base + "--device trn1-sim:timing --batch 48 --cores 48");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("must fill whole instances: 32, 64"), std::string::npos) << r.output;
}

// train --cores trains exactly what train without it does (the global batch on one core) and
// says what the cluster's step takes.
TEST_F(SimulatedClusterCli, TrainWithCoresTrainsTheSameModel) {
  const std::filesystem::path dir = ::testing::TempDir() + "simulated_cluster_train";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string text = (dir / "text.txt").string();
  {
    std::ofstream out(text);
    for (int i = 0; i < 400; ++i) out << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
  const std::string common = "train --model tiny --data " + text +
                             " --batch 4 --seq 16 --steps 2 --eval-windows 1 --out ";
  switchyard::ShellResult alone = run_cli(common + (dir / "alone").string() + " --device trn2-sim");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  switchyard::ShellResult cluster = run_cli(common + (dir / "cluster").string() + " --device trn2-sim --cores 4");
  ASSERT_EQ(cluster.exit_code, 0) << cluster.output;
  EXPECT_NE(cluster.output.find("simulated data parallel on 4 trn2 cores"), std::string::npos)
      << cluster.output;
  auto losses = [](const std::filesystem::path& out) {
    std::ifstream log(out / "log.jsonl");
    std::vector<double> values;
    for (std::string line; std::getline(log, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains("loss")) values.push_back(j["loss"]);
    }
    return values;
  };
  EXPECT_EQ(losses(dir / "alone"), losses(dir / "cluster"));
  EXPECT_EQ(losses(dir / "alone").size(), 2u);
  switchyard::ShellResult cpu = run_cli(common + (dir / "cpu").string() + " --device cpu --cores 2");
  EXPECT_NE(cpu.exit_code, 0);
  EXPECT_NE(cpu.output.find("--cores needs a simulator device"), std::string::npos) << cpu.output;
}

}  // namespace
