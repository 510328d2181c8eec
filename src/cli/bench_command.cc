// switchyard bench train|prefill: measured speed and memory of the engine on a model, with the
// bounds this machine sets (the GEMM rate); bench generate (bench_generate_command.cc), decoding
// against the memory bandwidth; and bench serve (bench_serve_command.cc), a load generator for
// OpenAI-compatible servers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/bench_generate_command.h"
#include "cli/bench_output.h"
#include "cli/bench_serve_command.h"
#include "cli/commands.h"
#include "cli/model_source.h"
#include "cli/simulated_cluster_report.h"
#include "cli/simulated_collectives.h"
#include "core/error.h"
#include "core/process_stats.h"
#include "core/rng.h"
#include "backend/simulated_span.h"
#include "model/device_buffer.h"
#include "model/generator.h"

namespace switchyard::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  ModelSource source;
  int batch = 4;
  int seq = 64;
  int steps = 5;
  int warmup = 1;
  int tokens = 64;
  bool json = false;
  std::string trace;  // simulator devices: Chrome trace of the last timed step
  int cores = 1;      // bench train on a simulator: data-parallel cores (simulated_cluster_report.h)
  bool cores_given = false;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// GFLOP/s of the backend's fastest matrix product on a large square problem (best of several runs,
// so a passing disturbance on a shared machine does not lower it): the rate the step's FLOPs are
// compared against. Both the forward product and the weight-gradient product of matmul_backward
// are tried, since backends may route them through different GEMM implementations. GPUs get a
// problem big enough to fill them.
double measure_gemm_gflops(backend::Backend& backend) {
  const int64_t n = backend.device_memory_peak_bytes() ? 8192 : 2048;
  const size_t count = static_cast<size_t>(n) * n;
  const backend::Precision precision = backend.precision();
  model::DeviceBuffer weights(backend, count), inputs(backend, count), outputs(backend, count),
      weight_grads(backend, count);
  const Tensor w = Tensor::dense(weights.get(), precision.matmul_weights, {n, n});
  const Tensor x = Tensor::dense(inputs.get(), precision.activations, {n, n});
  const Tensor y = Tensor::dense(outputs.get(), precision.activations, {n, n});
  const Tensor dw = Tensor::dense(weight_grads.get(), DType::kF32, {n, n});
  std::vector<float> host(count);
  Rng rng(7);
  for (float& value : host) value = rng.uniform() - 0.5f;
  for (const Tensor& t : {w, x, y}) backend::from_host_f32(backend, t, host.data());
  double best_ms = 1e30;
  for (int rep = 0; rep < 10; ++rep) {
    auto t0 = Clock::now();
    if (rep % 2 == 0) {
      backend.run(backend::ops::Linear{.out = y, .inp = x, .weight = w});
    } else {
      backend.run(backend::ops::LinearBackward{.dweight = dw, .dout = y, .inp = x, .weight = w});
    }
    backend.synchronize();
    best_ms = std::min(best_ms, ms_since(t0));
  }
  return 2.0 * n * n * n / (best_ms * 1e6);
}

// Simulator devices: the simulated step beside the wall-clock time of simulating it (the host's
// GEMM bound says nothing about a simulated chip, so it is not measured).
// With --cores, `cluster` holds the data-parallel figures; `sim` is then core 0's step, its waits for
// the collectives included.
void report_simulated_train(const BenchFlags& f, const OpenedModel& opened, const backend::SimulatedSpan& sim,
                            double wall_ms, double flops, const nlohmann::json& kernels,
                            const std::optional<ClusterFigures>& cluster) {
  const size_t BT = static_cast<size_t>(f.batch / f.cores) * f.seq;  // what this run computed
  const backend::SimulationReport report = *backend::simulation_report(*opened.backend);
  double peak_mib = peak_rss_bytes() / 1048576.0;
  std::printf("train %s on %s: batch %d x seq %d: %.1f ms/step of wall time to simulate; peak RSS %.0f MiB\n",
              f.source.model.c_str(), opened.backend->name().c_str(), f.batch, f.seq, wall_ms, peak_mib);
  std::printf("  %s\n", backend::describe_span(sim, report, "step").c_str());
  if (cluster) std::printf("  %s\n", describe_cluster(*cluster).c_str());
  if (!f.trace.empty()) std::printf("  trace of the last step: %s\n", f.trace.c_str());
  if (f.json) {
    nlohmann::json utilization = nlohmann::json::object();
    for (const auto& e : sim.engines) utilization[e.name] = e.utilization;
    nlohmann::json result = {{"mode", "train"}, {"model", f.source.model}, {"device", opened.backend->name()},
                     {"batch", f.batch}, {"seq", f.seq}, {"steps", f.steps},
                     {"ms_per_step", wall_ms}, {"tokens_per_s", BT / (wall_ms / 1000)},
                     {"flops_per_step", flops}, {"peak_rss_mib", peak_mib},
                     {"simulated_ms_per_step", sim.ms},
                     {"simulated_tokens_per_s_per_core", sim.tokens_per_s_per_core},
                     {"simulated_tokens_per_s_per_chip", sim.tokens_per_s_per_chip},
                     {"cores_per_chip", sim.cores_per_chip}, {"utilization", utilization},
                     {"bottleneck", sim.bottleneck}, {"simulated_tflops", sim.tflops},
                     {"percent_of_peak", sim.percent_of_peak}, {"simulated_hbm_gbps", sim.hbm_gbps},
                     {"simulated_instructions_per_step", sim.instructions}};
    nlohmann::json unsimulated = nlohmann::json::object();
    for (const auto& [name, calls] : sim.unsimulated_ops) unsimulated[name] = calls;
    result["unsimulated_ops"] = unsimulated;  // ran on the host: not in simulated_ms_per_step
    if (cluster) result.update(cluster_json(*cluster));
    if (opened.profiler) result["kernel_ms_per_step"] = kernels;
    print_json_line(result);
  }
}

void run_bench_train(const BenchFlags& f) {
  OpenedModel opened = open_model(f.source, /*load_tokenizer=*/false);
  model::Model& gpt = *opened.model;
  const model::ModelConfig& config = gpt.config();
  require(f.seq <= config.max_seq_len, "--seq {} exceeds the model's context of {}", f.seq, config.max_seq_len);
  // With --cores this process is core 0 of the cluster: it computes its share of the global batch.
  const int batch = f.cores_given ? per_core_batch(gpt.backend(), f.batch, f.cores) : f.batch;
  std::optional<train::SimulatedCluster> cluster;
  if (f.cores > 1) {
    cluster.emplace(gpt, interconnect_of_device(gpt.backend()), f.cores, /*micro_batches=*/1);
    gpt.set_step_sync(&*cluster);
  }
  const size_t BT = static_cast<size_t>(batch) * f.seq;
  std::vector<int32_t> tokens(BT), targets(BT);
  Rng rng(f.source.seed);
  for (size_t i = 0; i < BT; ++i) {
    tokens[i] = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
    targets[i] = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
  }
  model::AdamWConfig adamw;
  std::vector<double> step_ms;
  backend::SimulatedClock sim_clock(gpt.backend());
  std::optional<backend::SimulatedSpan> sim_step;
  require(f.trace.empty() || sim_clock.active(), "--trace needs a simulator device (trn1-sim, trn2-sim), not '{}'",
          gpt.backend().name());
  for (int step = 0; step < f.warmup + f.steps; ++step) {
    const bool last = step == f.warmup + f.steps - 1;
    if (opened.profiler && step == f.warmup) opened.profiler->reset();
    if (last && !f.trace.empty()) backend::require_simulator(gpt.backend(), "--trace").start_trace();
    sim_clock.restart();
    auto t0 = Clock::now();
    gpt.begin_step();
    gpt.forward_backward(tokens.data(), targets.data(), batch, f.seq);
    const float loss = gpt.finish_step(adamw, 6e-4f, step + 1, /*clip=*/1.0f).loss;
    double ms = ms_since(t0);
    bool warm = step < f.warmup;
    if (!warm) step_ms.push_back(ms);
    // Simulated time is deterministic: every timed step costs the same, so keep the last.
    if (!warm) sim_step = sim_clock.lap(static_cast<double>(BT));
    std::fprintf(stderr, "%s step %d: %.1f ms, loss %.4f\n", warm ? "warmup" : "bench", step + 1, ms, loss);
    if (last && !f.trace.empty()) backend::require_simulator(gpt.backend(), "--trace").finish_trace(f.trace);
  }
  std::sort(step_ms.begin(), step_ms.end());
  double ms = step_ms[step_ms.size() / 2];  // median: robust to a busy machine
  // The whole cluster's model FLOPs (the planner's evidence divides them among its chips).
  double flops = gpt.shape().training_flops_per_token(f.seq) * static_cast<double>(f.batch) * f.seq;
  // With --profile: where the wall time of the steps went (on a simulator, the host time of
  // simulating each kernel).
  nlohmann::json kernels = nlohmann::json::object();
  if (opened.profiler) kernels = report_kernel_times(*opened.profiler, f.steps, ms);
  if (sim_step) {
    std::optional<ClusterFigures> figures;
    if (f.cores_given) {
      figures.emplace();
      figures->links = interconnect_of_device(gpt.backend());
      figures->layout = dist::layout_cores(figures->links, f.cores, "--cores");
      figures->step_ms = figures->single_core_ms = sim_step->ms;
      figures->tokens_per_core = static_cast<double>(BT);
      figures->gradient_bytes = static_cast<double>(gpt.layout().total()) * sizeof(float);
      if (cluster) {
        figures->collectives = cluster->last_step();
        figures->single_core_ms = time_step_on_timing_copy(f.source, batch, f.seq, 1, 1).ms;
      }
    }
    report_simulated_train(f, opened, *sim_step, ms, flops, kernels, figures);
    return;
  }
  const std::optional<size_t> device_peak = opened.backend->device_memory_peak_bytes();
  double gemm_gflops = measure_gemm_gflops(*opened.backend);
  double bound_ms = flops / (gemm_gflops * 1e6);
  double peak_mib = peak_rss_bytes() / 1048576.0;
  if (device_peak) {
    std::printf("peak device memory of the training steps: %.0f MiB\n", *device_peak / 1048576.0);
  }
  std::printf("train %s on %s: batch %d x seq %d: %.1f ms/step, %.1f tokens/s, %.1f GFLOP/s; "
              "GEMM rate %.1f GFLOP/s gives a bound of %.1f ms (%.2fx); peak RSS %.0f MiB\n",
              f.source.model.c_str(), opened.backend->name().c_str(), f.batch, f.seq, ms, BT / (ms / 1000),
              flops / (ms * 1e6), gemm_gflops, bound_ms, ms / bound_ms, peak_mib);
  if (f.json) {
    nlohmann::json result = {{"mode", "train"},          {"model", f.source.model},
                             {"device", opened.backend->name()}, {"batch", f.batch},
                             {"seq", f.seq},             {"steps", f.steps},
                             {"ms_per_step", ms},        {"tokens_per_s", BT / (ms / 1000)},
                             {"gflops", flops / (ms * 1e6)}, {"flops_per_step", flops},
                             {"gemm_gflops", gemm_gflops}, {"gemm_bound_ms", bound_ms},
                             {"ratio_to_gemm_bound", ms / bound_ms}, {"peak_rss_mib", peak_mib}};
    if (opened.profiler) result["kernel_ms_per_step"] = kernels;
    if (device_peak) result["peak_device_mib"] = *device_peak / 1048576.0;
    report_cpu_threads(&result);
    print_json_line(result);
  } else {
    report_cpu_threads(nullptr);
  }
}

// One prompt of --tokens tokens run in one pass over the KV cache, as generate and the server
// run prompts: tokens/s and the pass's FLOP rate against the backend's measured GEMM rate.
void run_bench_prefill(const BenchFlags& f) {
  ModelSource source = f.source;
  source.inference_only = true;
  OpenedModel opened = open_model(source, /*load_tokenizer=*/false);
  model::Model& m = *opened.model;
  require(f.tokens <= m.config().max_seq_len, "--tokens {} exceeds the model's context of {}",
          f.tokens, m.config().max_seq_len);
  std::vector<int32_t> prompt(static_cast<size_t>(f.tokens));
  Rng rng(f.source.seed);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng.next_u64() % m.config().vocab_size);
  model::Generator generator(m, 1, f.tokens);
  std::vector<double> pass_ms;
  backend::SimulatedClock sim_clock(m.backend());
  std::optional<backend::SimulatedSpan> sim_pass;
  for (int rep = 0; rep < f.warmup + f.steps; ++rep) {
    if (opened.profiler && rep == f.warmup) opened.profiler->reset();
    sim_clock.restart();
    const auto t0 = Clock::now();
    const model::SequenceId sequence = generator.start(prompt).first;
    simulate_step_collectives(m.backend(), m.config(), f.source.tensor_parallel, f.tokens);
    m.backend().synchronize();
    const double ms = ms_since(t0);
    generator.finish(sequence);
    if (rep < f.warmup) continue;
    pass_ms.push_back(ms);
    // Per core of a tensor-parallel group: its degree of cores take the prompt together.
    sim_pass = sim_clock.lap(static_cast<double>(f.tokens) / f.source.tensor_parallel);
  }
  std::sort(pass_ms.begin(), pass_ms.end());
  const double ms = pass_ms[pass_ms.size() / 2];
  // The prompt's own FLOPs: every layer's products for every token, attention at the causal
  // average, the LM head for the last token only (the others' logits are not computed).
  const double flops = m.shape().prompt_flops(f.tokens);
  const double tokens_per_s = f.tokens / (ms / 1000);
  nlohmann::json result = {{"mode", "prefill"},       {"model", f.source.model},
                           {"device", opened.backend->name()}, {"tokens", f.tokens},
                           {"ms", ms},                {"tokens_per_s", tokens_per_s},
                           {"gflops", flops / (ms * 1e6)}};
  if (opened.profiler) result["kernel_ms_per_pass"] = report_kernel_times(*opened.profiler, f.steps, ms);
  if (sim_pass) {
    const backend::SimulationReport report = *backend::simulation_report(*opened.backend);
    std::printf("prefill %s on %s: %d tokens: %.1f ms of wall time to simulate\n  %s\n",
                f.source.model.c_str(), opened.backend->name().c_str(), f.tokens, ms,
                backend::describe_span(*sim_pass, report, "prompt").c_str());
    if (!opened.shard_layout.empty()) std::printf("  %s\n", opened.shard_layout.c_str());
    result["simulated_ms"] = sim_pass->ms;
    result["simulated_tokens_per_s_per_core"] = sim_pass->tokens_per_s_per_core;
    result["simulated_tokens_per_s_per_chip"] = sim_pass->tokens_per_s_per_chip;
    result["bottleneck"] = sim_pass->bottleneck;
    result["tensor_parallel"] = f.source.tensor_parallel;
    result["expert_weights"] = f.source.expert_weights;
  } else {
    const double gemm_gflops = measure_gemm_gflops(*opened.backend);
    std::printf("prefill %s on %s: %d tokens in one pass: %.1f ms, %.0f tokens/s, %.1f GFLOP/s = "
                "%.0f%% of the GEMM rate (%.1f GFLOP/s)\n",
                f.source.model.c_str(), opened.backend->name().c_str(), f.tokens, ms, tokens_per_s,
                flops / (ms * 1e6), 100 * flops / (ms * 1e6) / gemm_gflops, gemm_gflops);
    result["gemm_gflops"] = gemm_gflops;
    result["fraction_of_gemm_rate"] = flops / (ms * 1e6) / gemm_gflops;
  }
  result["peak_rss_mib"] = peak_rss_bytes() / 1048576.0;
  report_cpu_threads(&result);
  if (f.json) print_json_line(result);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* bench = app.add_subcommand("bench", "measure training, generation or serving speed");
  bench->require_subcommand(1);
  CLI::App* train = bench->add_subcommand("train", "time forward + backward + AdamW steps on random tokens");
  add_model_flags(train, flags->source);
  train->add_option("--batch", flags->batch, "sequences per step (with --cores: the global batch, split evenly over the cores)")
      ->check(CLI::Range(1, 1 << 16))->capture_default_str();
  train->add_option("--seq", flags->seq, "sequence length")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  train->add_option("--steps", flags->steps, "timed steps")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  train->add_option("--warmup", flags->warmup, "untimed steps first")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  train->add_flag("--json", flags->json, "print one JSON object as the last line");
  train->add_flag("--profile", flags->source.profile,
                  "time every kernel call and print where the step goes (waits for the device after each)");
  train->add_option("--trace", flags->trace, "simulator devices: write a Chrome trace (Perfetto) of the last step");
  add_cores_flag(train, flags->cores,
                 "The run is core 0's: its share of the batch and its 1/N of the optimizer step; "
                 "the other cores are not computed, so with N > 1 the parameters outside its share "
                 "keep their values and the losses after the first step are those of that partly "
                 "updated model");
  train->callback([flags, train] {
    flags->cores_given = train->count("--cores") > 0;
    run_bench_train(*flags);
  });

  add_bench_generate_command(*bench);

  CLI::App* prefill = bench->add_subcommand("prefill", "time one prompt run in one pass over the KV cache");
  add_model_flags(prefill, flags->source);
  prefill->add_option("--tokens", flags->tokens, "prompt tokens")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  prefill->add_option("--repeats", flags->steps, "timed passes (the median is reported)")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  prefill->add_option("--warmup", flags->warmup, "untimed passes first")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  add_tensor_parallel_flag(prefill, flags->source);
  prefill->add_flag("--json", flags->json, "print one JSON object as the last line");
  prefill->add_flag("--profile", flags->source.profile,
                    "time every kernel call and print where the pass goes (waits for the device after each)");
  prefill->callback([flags] { run_bench_prefill(*flags); });

  add_bench_serve_command(*bench);
}

}  // namespace switchyard::cli
