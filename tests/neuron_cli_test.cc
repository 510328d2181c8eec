// `switchyard neuron bench matmul` end to end: JSON output and clear errors.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

struct CliRun {
  int status;
  std::string output;
};

CliRun run_cli(const std::string& args) {
  std::string command = std::string(SWITCHYARD_CLI) + " " + args + " 2>&1";
  CliRun r{0, ""};
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  r.status = pclose(pipe);
  return r;
}

class NeuronCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "CLI not built";
  }
};

TEST_F(NeuronCli, BenchMatmulJson) {
  std::string trace = ::testing::TempDir() + "neuron_cli_trace.json";
  CliRun r =
      run_cli("neuron bench matmul --target trn2 --shape 256x256x512 --json --trace " + trace);
  ASSERT_EQ(r.status, 0) << r.output;
  std::string trimmed = r.output.substr(0, r.output.find_last_not_of('\n') + 1);
  std::string last = trimmed.substr(trimmed.rfind('\n') + 1);
  nlohmann::json j = nlohmann::json::parse(last);
  EXPECT_GT(j["simulated_us"].get<double>(), 0);
  EXPECT_GT(j["tflops"].get<double>(), 0);
  EXPECT_LE(j["percent_of_peak"].get<double>(), 100);
  EXPECT_GT(j["busy_cycles"]["TensorE"].get<double>(), 0);
  EXPECT_LT(j["max_relative_error"].get<double>(), 4e-3);
  nlohmann::json t = nlohmann::json::parse(std::ifstream(trace));
  bool saw_matmul = false;
  for (const auto& e : t["traceEvents"]) saw_matmul |= e.value("name", "") == "gemm.matmul";
  EXPECT_TRUE(saw_matmul);
}

TEST_F(NeuronCli, ClearErrors) {
  CliRun r = run_cli("neuron bench matmul --target trn9 --shape 128x128x128");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown NeuronCore target 'trn9'"), std::string::npos) << r.output;
  r = run_cli("neuron bench matmul --target trn1 --shape 128x12a");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("bad --shape '128x12a'"), std::string::npos) << r.output;
  r = run_cli("neuron bench matmul --target trn1 --shape 128x100000x128");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("does not fit"), std::string::npos) << r.output;
  r = run_cli("neuron bench matmul --target trn1 --shape 128x128x128 --dtype int4");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown dtype 'int4'"), std::string::npos) << r.output;
}

}  // namespace
