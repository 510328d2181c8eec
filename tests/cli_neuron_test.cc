// `switchyard neuron bench` (matmul and the model kernels), `bench train` and `bench generate` on a
// simulated device (also timing only), end to end: JSON output, traces and clear errors.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

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
    if (!std::filesystem::exists(SWITCHYARD_CLI)) GTEST_SKIP() << "missing " << SWITCHYARD_CLI << " (the switchyard command is not built)";
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

nlohmann::json last_json_line(const std::string& output) {
  std::string trimmed = output.substr(0, output.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(trimmed.substr(trimmed.rfind('\n') + 1));
}

TEST_F(NeuronCli, BenchModelKernelsJson) {
  // Small shapes of every kind of kernel (the defaults are gpt2-124m's and take longer).
  const std::pair<const char*, const char*> kernels[] = {
      {"linear_backward", "128x64x192"}, {"layernorm", "128x64"},
      {"gelu_backward", "8192"},         {"attention_backward", "2x32x64x2"},
      {"cross_entropy", "128x1000"},     {"embedding_backward", "2x32x64x1000"},
      {"adamw", "100000"}};
  for (const auto& [kernel, shape] : kernels) {
    SCOPED_TRACE(kernel);
    CliRun r = run_cli(std::string("neuron bench ") + kernel + " --target trn1 --shape " + shape +
                       " --json");
    ASSERT_EQ(r.status, 0) << r.output;
    nlohmann::json j = last_json_line(r.output);
    EXPECT_EQ(j["kernel"], kernel);
    EXPECT_GT(j["simulated_us"].get<double>(), 0);
    EXPECT_GE(j["tflops"].get<double>(), 0);
    EXPECT_LE(j["percent_of_peak"].get<double>(), 100);
    double busy = 0;
    for (const auto& [engine, cycles] : j["busy_cycles"].items()) busy += cycles.get<double>();
    EXPECT_GT(busy, 0);
  }
}

TEST_F(NeuronCli, BenchTrainOnASimulatedDevice) {
  std::string trace = ::testing::TempDir() + "neuron_cli_step_trace.json";
  CliRun r = run_cli(
      "bench train --model tiny --device trn2-sim --batch 2 --seq 16 --steps 1 --warmup 1 --json "
      "--trace " + trace);
  ASSERT_EQ(r.status, 0) << r.output;
  nlohmann::json j = last_json_line(r.output);
  EXPECT_EQ(j["device"], "trn2-sim");
  EXPECT_GT(j["ms_per_step"].get<double>(), 0);
  const double simulated_ms = j["simulated_ms_per_step"].get<double>();
  EXPECT_GT(simulated_ms, 0);
  EXPECT_GT(j["simulated_instructions_per_step"].get<int64_t>(), 0);
  EXPECT_NEAR(j["simulated_tokens_per_s_per_core"].get<double>(), 2 * 16 / (simulated_ms / 1e3),
              1e-6 * j["simulated_tokens_per_s_per_core"].get<double>());
  EXPECT_GT(j["utilization"]["TensorE"].get<double>(), 0);
  EXPECT_LE(j["utilization"]["DMA"].get<double>(), 1.0);
  // Every op of a GPT-2 training step has a tile program: none ran off the simulated clock.
  ASSERT_TRUE(j.contains("unsimulated_ops")) << r.output;
  EXPECT_TRUE(j["unsimulated_ops"].empty()) << j["unsimulated_ops"].dump();
  EXPECT_EQ(r.output.find("not simulated"), std::string::npos) << r.output;
  nlohmann::json t = nlohmann::json::parse(std::ifstream(trace));
  bool saw_adamw = false;
  for (const auto& e : t["traceEvents"]) saw_adamw |= e.value("name", "").rfind("adamw", 0) == 0;
  EXPECT_TRUE(saw_adamw);
}

// On a simulator --profile times the host's simulation of each kernel.
TEST_F(NeuronCli, BenchTrainProfileOnASimulatedDevice) {
  CliRun r = run_cli(
      "bench train --model tiny --device trn2-sim --batch 2 --seq 16 --steps 1 --warmup 1 --json "
      "--profile");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("all kernels"), std::string::npos) << r.output;
  nlohmann::json j = last_json_line(r.output);
  EXPECT_GT(j["simulated_ms_per_step"].get<double>(), 0);
  ASSERT_TRUE(j.contains("kernel_ms_per_step")) << r.output;
  EXPECT_GT(j["kernel_ms_per_step"].value("linear_backward", 0.0), 0);
  EXPECT_GT(j["kernel_ms_per_step"].value("adamw", 0.0), 0);
}

// bench generate on a simulated chip: the simulated figures of a decode step at batch 1 and at
// batch 3. Three sequences a step share one read of the weights, so the simulated core turns out
// more tokens a second than at batch 1 (a loop of batch-1 steps would not).
TEST_F(NeuronCli, BenchGenerateOnASimulatedDeviceAtBatchOneAndThree) {
  CliRun one = run_cli("bench generate --model tiny --device trn2-sim --tokens 2 --json");
  ASSERT_EQ(one.status, 0) << one.output;
  EXPECT_NE(one.output.find("generate tiny on trn2-sim: batch 1, 2 tokens: "), std::string::npos) << one.output;
  EXPECT_NE(one.output.find("ms/2 tokens, "), std::string::npos) << one.output;
  nlohmann::json j1 = last_json_line(one.output);
  EXPECT_EQ(j1["batch"], 1);
  EXPECT_EQ(j1["simulated_ms_per_token"], j1["simulated_ms_per_step"]);
  EXPECT_EQ(j1["ms_per_token"], j1["ms_per_step"]);

  CliRun three = run_cli("bench generate --model tiny --device trn2-sim --batch 3 --tokens 2 --json");
  ASSERT_EQ(three.status, 0) << three.output;
  EXPECT_NE(three.output.find("generate tiny on trn2-sim: batch 3, 2 tokens each: "), std::string::npos)
      << three.output;
  EXPECT_NE(three.output.find("ms/2 steps, "), std::string::npos) << three.output;
  nlohmann::json j3 = last_json_line(three.output);
  EXPECT_EQ(j3["device"], "trn2-sim");
  EXPECT_EQ(j3["batch"], 3);
  EXPECT_FALSE(j3.contains("ms_per_token")) << j3;
  EXPECT_FALSE(j3.contains("simulated_ms_per_token")) << j3;
  const double step_ms = j3["simulated_ms_per_step"].get<double>();
  ASSERT_GT(step_ms, 0);
  const double per_core = j3["simulated_tokens_per_s_per_core"].get<double>();
  EXPECT_NEAR(per_core, 3 / (step_ms / 1e3), 1e-6 * per_core);
  EXPECT_EQ(j3["cores_per_chip"], 8);  // Trainium2: 8 NeuronCores a chip
  EXPECT_NEAR(j3["simulated_tokens_per_s_per_chip"].get<double>(), 8 * per_core, 1e-6 * 8 * per_core);
  EXPECT_GT(j3["utilization"]["TensorE"].get<double>(), 0);
  EXPECT_FALSE(j3["bottleneck"].get<std::string>().empty());
  EXPECT_GT(j3["simulated_hbm_gbps"].get<double>(), 0);
  EXPECT_TRUE(j3.contains("unsimulated_ops")) << j3;
  EXPECT_GT(per_core, j1["simulated_tokens_per_s_per_core"].get<double>());
  EXPECT_GE(step_ms, j1["simulated_ms_per_step"].get<double>());
}

// One core's shard of a tensor-parallel group, decoding at a long context without a simulated
// prefill: the layout sentence, per-core figures over the group, and the ring's waits in the trace.
TEST_F(NeuronCli, TensorParallelShardDecodesAtALongContext) {
  const std::string trace = ::testing::TempDir() + "neuron_cli_tp_trace.json";
  CliRun r = run_cli("bench generate --model gpt-oss-tiny --device trn2-sim:timing --tensor-parallel 2 "
                     "--batch 2 --tokens 2 --start-at 100 --trace " + trace + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tensor-parallel over 2 cores, each holding 2 of 4 query heads, 1 of 2 key-value "
                          "heads, 64 of 128 columns"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("decoding at positions 101-102 of each sequence"), std::string::npos) << r.output;
  nlohmann::json j = last_json_line(r.output);
  EXPECT_EQ(j["tensor_parallel"], 2);
  EXPECT_EQ(j["start_at"], 100);
  const double step_ms = j["simulated_ms_per_step"].get<double>();
  // 2 tokens a step over the group's 2 cores; the step holds 9 all-reduces of 2 (R - 1) waits.
  EXPECT_NEAR(j["simulated_tokens_per_s_per_core"].get<double>(), 2 / (step_ms / 1e3) / 2, 1e-6 * 2e3 / step_ms);
  EXPECT_GT(step_ms, 10 * 2 * 0.005);
  std::ifstream in(trace);
  ASSERT_TRUE(in.good()) << trace;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("wait_for_peers"), std::string::npos);
  EXPECT_NE(text.find("ring_all_reduce"), std::string::npos);
  std::filesystem::remove(trace);

  r = run_cli("bench generate --model gpt-oss-tiny --device cpu --tensor-parallel 2 --tokens 2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--tensor-parallel times one core's shard on a simulator device"), std::string::npos)
      << r.output;
  r = run_cli("bench generate --model gpt-oss-tiny --device trn2-sim:timing --tensor-parallel 3 --tokens 2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("degree 3 must divide the 4 query heads"), std::string::npos) << r.output;
  r = run_cli("bench generate --model gpt-oss-tiny --device trn2-sim:timing --tensor-parallel 2 "
              "--expert-weights bf16 --tokens 1 --json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(last_json_line(r.output)["expert_weights"], "bf16");
  EXPECT_NE(r.output.find("64 of 128 columns of every expert and"), std::string::npos) << r.output;
  r = run_cli("bench generate --model tiny --device trn2-sim:timing --expert-weights bf16 --tokens 1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--expert-weights chooses the format of a gpt-oss preset's random experts; tiny has no experts"),
            std::string::npos)
      << r.output;
  r = run_cli(std::string("bench generate --model ") + SWITCHYARD_TEST_DATA +
              "/gpt_oss_reference --device trn2-sim:timing --tensor-parallel 2 --tokens 1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("slicing the checkpoint"), std::string::npos) << r.output;
  r = run_cli("bench generate --model gpt-oss-tiny --device cpu --tokens 1 --trace /tmp/never.json");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--trace needs a simulator device"), std::string::npos) << r.output;
  r = run_cli("bench generate --model gpt-oss-tiny --device trn2-sim --start-at 10 --tokens 2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("only a timing-only simulator device"), std::string::npos) << r.output;
}

TEST_F(NeuronCli, ClearErrors) {
  CliRun r = run_cli("neuron bench matmul --target trn9 --shape 128x128x128");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown NeuronCore target 'trn9'"), std::string::npos) << r.output;
  r = run_cli("neuron bench matmul --target trn1 --shape 128x12a");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("bad --shape '128x12a'"), std::string::npos) << r.output;
  // A alone (32 GiB) exceeds a trn1 core's 16 GiB share of HBM.
  r = run_cli("neuron bench matmul --target trn1 --shape 131072x131072x128");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("HBM allocation 'A' of 34359738368 bytes does not fit"),
            std::string::npos)
      << r.output;
  r = run_cli("neuron bench softmax --target trn1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown neuron bench kernel 'softmax'"), std::string::npos) << r.output;
  r = run_cli("neuron bench layernorm --target trn1 --shape 128");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("NxC"), std::string::npos) << r.output;
  r = run_cli("neuron bench gelu --target trn1 --shape 1024 --dtype fp8");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--dtype for gelu must be bf16 or fp32"), std::string::npos) << r.output;
  r = run_cli("neuron bench matmul --target trn1 --shape 128x128x128 --dtype int4");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown dtype 'int4'"), std::string::npos) << r.output;
}

// A ":timing" device: the same simulated figures as the functional device, without arithmetic;
// `devices` says how to ask for one and that its outputs are unspecified.
TEST_F(NeuronCli, TimingOnlyDeviceGivesTheSameSimulatedTimes) {
  auto generate = [](const std::string& device) {
    CliRun r = run_cli("bench generate --model tiny --device " + device + " --tokens 3 --json");
    EXPECT_EQ(r.status, 0) << r.output;
    return last_json_line(r.output);
  };
  const nlohmann::json functional = generate("trn2-sim");
  const nlohmann::json timing = generate("trn2-sim:timing");
  EXPECT_EQ(timing["device"], "trn2-sim:timing");
  EXPECT_GT(functional["simulated_ms_per_token"].get<double>(), 0);
  EXPECT_EQ(timing["simulated_ms_per_token"], functional["simulated_ms_per_token"]);
  EXPECT_EQ(timing["simulated_hbm_gbps"], functional["simulated_hbm_gbps"]);

  CliRun devices = run_cli("devices");
  ASSERT_EQ(devices.status, 0) << devices.output;
  EXPECT_NE(devices.output.find("trn2-sim:timing"), std::string::npos) << devices.output;
  EXPECT_NE(devices.output.find("outputs unspecified"), std::string::npos) << devices.output;
  CliRun bad = run_cli("bench generate --model tiny --device trn2-sim:fast --tokens 1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("trn2-sim:fast"), std::string::npos) << bad.output;
}

}  // namespace
