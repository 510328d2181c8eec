// switchyard bench generate: greedy decoding with the KV cache, timed step by step. A step decodes
// one token of each of --batch sequences, so it yields --batch output tokens. The step's time and
// the output tokens per second are reported beside what bounds them: this machine's memory
// bandwidth over the weights a step reads (CPU), the device's peak memory (GPU), or the simulated
// chip's time, engines and bottleneck (simulator devices).
#include "cli/bench_generate_command.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/simulated_span.h"
#include "cli/bench_output.h"
#include "cli/heap_settings.h"
#include "cli/model_source.h"
#include "cli/simulated_collectives.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/memory_bandwidth.h"
#include "core/process_stats.h"
#include "core/rng.h"
#include "model/generator.h"
#include "model/sampler.h"

namespace switchyard::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kBlockSize = 16;  // model::Generator's default
constexpr int kMaxBatch = 4096;  // as serve's --max-seqs

struct GenerateFlags {
  ModelSource source;
  int batch = 1;
  int tokens = 64;
  int context = 0;  // positions the KV cache holds per sequence (0: the tokens generated)
  int start_at = 0;  // timing-only simulators: positions taken as already in the cache
  std::string trace;  // simulator devices: Chrome trace of the last decode step
  bool json = false;
};

struct DecodeRun {
  double ms_per_step = 0;  // wall time
  std::optional<backend::SimulatedSpan> sim;  // simulator devices: all timed steps together
};

// The sequences' first tokens: sequence 0 starts from token 0 (as batch 1 always has), the others
// from seeded random tokens, so that the sequences decode different tokens, as a batch of real
// requests does (a mixture of experts then routes them to different experts).
std::vector<int32_t> first_tokens(int batch, int vocab_size, uint64_t seed) {
  std::vector<int32_t> tokens{0};
  Rng rng(seed);
  while (static_cast<int>(tokens.size()) < batch) {
    tokens.push_back(static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(vocab_size)));
  }
  return tokens;
}

// Bytes of a KV cache of this shape: keys and values of every layer in every block.
double kv_cache_bytes(const model::KvCacheConfig& c) {
  double bytes = 0;
  for (const model::KvCacheGroup& g : c.groups) {
    const int64_t elements = int64_t{g.blocks} * c.block_size * c.kv_heads * c.head_dim;
    bytes += 2.0 * static_cast<double>(g.layers.size()) * static_cast<double>(storage_bytes(c.dtype, elements));
  }
  return bytes;
}

// The KV cache of `batch` sequences of `context` positions each; one the device cannot hold is an
// error that names --batch and the size it asked for.
std::unique_ptr<model::Generator> make_generator(model::Model& m, int batch, int context) {
  try {
    return std::make_unique<model::Generator>(m, batch, context, kBlockSize);
  } catch (const Error& e) {
    const int blocks = (context + kBlockSize - 1) / kBlockSize;
    fail("--batch {}: the KV cache of {} sequences of {} positions ({:.2f} GiB) does not fit on {}: {}", batch,
         batch, context, kv_cache_bytes(m.kv_cache_config(batch * blocks, kBlockSize)) / (1 << 30),
         m.backend().name(), e.what());
  }
}

// Marks the first --start-at positions of each sequence as cached without computing them: on a
// timing-only simulator no value is computed anyway, and decoding at a long context then needs no
// simulated prefill. Each sequence gets its own filler ids, so no blocks are shared.
void skip_to_start(model::KvCache& cache, const std::vector<model::Generator::Chunk>& chunks, int start_at) {
  for (const model::Generator::Chunk& chunk : chunks) {
    const std::vector<int32_t> filler(static_cast<size_t>(start_at), static_cast<int32_t>(chunk.sequence));
    cache.append(chunk.sequence, filler);
  }
}

// One decode step of every sequence (greedy, the server's pick), with a tensor-parallel group's
// collectives.
model::Generator::LogitRows decode_step(model::Generator& generator, std::vector<model::Generator::Chunk>& chunks,
                                        const model::Generator::LogitRows& logits, const GenerateFlags& f) {
  for (size_t i = 0; i < chunks.size(); ++i) chunks[i].tokens = {model::first_greatest(logits.row(i))};
  model::Generator::LogitRows next = generator.run_rows(chunks);
  simulate_step_collectives(generator.model().backend(), generator.model().config(), f.source.tensor_parallel,
                            f.batch);
  return next;
}

// Decodes --tokens tokens of each of --batch sequences and times the steps.
DecodeRun time_decode(const GenerateFlags& f, const OpenedModel& opened) {
  model::Model& m = *opened.model;
  const int context = f.context > 0 ? f.context : f.start_at + f.tokens + 1;
  std::unique_ptr<model::Generator> generator = make_generator(m, f.batch, context);
  // The first position of every sequence, in one pass, warms caches and allocations for steps of
  // this batch; the timed steps then decode one token of each.
  std::vector<model::Generator::Chunk> chunks;
  for (const int32_t token : first_tokens(f.batch, m.config().vocab_size, f.source.seed)) {
    chunks.push_back({.sequence = generator->cache().add_sequence(), .tokens = {token}, .logits = true});
  }
  skip_to_start(generator->cache(), chunks, f.start_at);
  model::Generator::LogitRows logits = generator->run_rows(chunks);
  if (opened.profiler) opened.profiler->reset();  // the timed decode steps only
  backend::SimulatedClock sim_clock(m.backend());
  const auto t0 = Clock::now();
  for (int step = 1; step <= f.tokens; ++step) {
    if (step == f.tokens && !f.trace.empty()) backend::require_simulator(m.backend(), "--trace").start_trace();
    logits = decode_step(*generator, chunks, logits, f);
  }
  DecodeRun run;
  run.ms_per_step = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / f.tokens;
  // Written after the clock stops: a long step's trace takes seconds to write.
  if (!f.trace.empty()) backend::require_simulator(m.backend(), "--trace").finish_trace(f.trace);
  // Per core of a tensor-parallel group: its degree of cores produce the step's tokens.
  run.sim = sim_clock.lap(static_cast<double>(f.batch) * f.tokens / f.source.tensor_parallel);
  return run;
}

// "generate M on D: batch 1, 64 tokens" or "generate M on D: batch 8, 64 tokens each".
std::string headline(const GenerateFlags& f, const OpenedModel& opened) {
  return fmt::format("generate {} on {}: batch {}, {} tokens{}", f.source.model, opened.backend->name(), f.batch,
                     f.tokens, f.batch == 1 ? "" : " each");
}

// At batch 1 a step is a token, and the figures keep that name.
const char* step_unit(const GenerateFlags& f) { return f.batch == 1 ? "token" : "step"; }

// The fields every device reports: ms_per_step and tokens_per_s (output tokens, --batch per
// step); at batch 1 also ms_per_token, the same as ms_per_step.
nlohmann::json common_json(const GenerateFlags& f, const OpenedModel& opened, double ms_per_step) {
  nlohmann::json json = {{"mode", "generate"},        {"model", f.source.model},
                         {"device", opened.backend->name()}, {"batch", f.batch},
                         {"tokens", f.tokens},        {"ms_per_step", ms_per_step},
                         {"tokens_per_s", f.batch * 1000.0 / ms_per_step}};
  if (f.batch == 1) json["ms_per_token"] = ms_per_step;
  return json;
}

void report_simulated(const GenerateFlags& f, const OpenedModel& opened, const DecodeRun& run) {
  const backend::SimulatedSpan& sim = *run.sim;
  const backend::SimulationReport report = *backend::simulation_report(*opened.backend);
  const std::string unit = fmt::format("{} {}s", f.tokens, step_unit(f));
  std::printf("%s: %.1f ms/%s of wall time to simulate", headline(f, opened).c_str(), run.ms_per_step, step_unit(f));
  if (f.batch > 1) std::printf("; simulated %.3f ms/step", sim.ms / f.tokens);
  std::printf("\n  %s\n", backend::describe_span(sim, report, unit.c_str()).c_str());
  if (!opened.shard_layout.empty()) {
    std::printf("  %s; tokens/s per core and per chip count the group's %d cores as one replica\n",
                opened.shard_layout.c_str(), f.source.tensor_parallel);
  }
  if (f.start_at > 0) std::printf("  decoding at positions %d-%d of each sequence\n", f.start_at + 1, f.start_at + f.tokens);
  if (!f.trace.empty()) std::printf("  trace of the last decode step: %s\n", f.trace.c_str());
  if (!f.json) return;
  nlohmann::json json = common_json(f, opened, run.ms_per_step);
  json["simulated_ms_per_step"] = sim.ms / f.tokens;
  if (f.batch == 1) json["simulated_ms_per_token"] = sim.ms / f.tokens;
  json["simulated_tokens_per_s_per_core"] = sim.tokens_per_s_per_core;
  json["simulated_tokens_per_s_per_chip"] = sim.tokens_per_s_per_chip;
  json["cores_per_chip"] = sim.cores_per_chip;
  nlohmann::json utilization = nlohmann::json::object();
  for (const backend::SimulatedSpan::Engine& e : sim.engines) utilization[e.name] = e.utilization;
  json["utilization"] = utilization;
  json["bottleneck"] = sim.bottleneck;
  json["tensor_parallel"] = f.source.tensor_parallel;
  json["expert_weights"] = f.source.expert_weights;
  json["start_at"] = f.start_at;
  if (!opened.shard_layout.empty()) json["layout"] = opened.shard_layout;
  json["simulated_hbm_gbps"] = sim.hbm_gbps;
  nlohmann::json unsimulated = nlohmann::json::object();
  for (const auto& [name, calls] : sim.unsimulated_ops) unsimulated[name] = calls;
  json["unsimulated_ops"] = unsimulated;  // ran on the host: not in the simulated figures
  print_json_line(json);
}

// A GPU streams the weights from its own memory: the host's bandwidth bounds nothing there.
void report_device(const GenerateFlags& f, const OpenedModel& opened, const DecodeRun& run, size_t device_peak) {
  const double tokens_per_s = f.batch * 1000.0 / run.ms_per_step;
  std::printf("%s: %.3f ms/%s, %.1f tokens/s; peak device memory %.0f MiB\n", headline(f, opened).c_str(),
              run.ms_per_step, step_unit(f), tokens_per_s, device_peak / 1048576.0);
  if (!f.json) return;
  nlohmann::json json = common_json(f, opened, run.ms_per_step);
  json["peak_device_mib"] = device_peak / 1048576.0;
  json["peak_rss_mib"] = peak_rss_bytes() / 1048576.0;
  print_json_line(json);
}

// A step reads the weights at least once, whatever the batch: the weights one token reads (in the
// dtypes they are held in, without the unchosen experts), over the machine's read bandwidth, bound
// the step's time from below. At a large batch the products' arithmetic, not this, is the limit.
void report_host(const GenerateFlags& f, const OpenedModel& opened, const DecodeRun& run) {
  if (opened.profiler) report_kernel_times(*opened.profiler, f.tokens, run.ms_per_step);
  const double tokens_per_s = f.batch * 1000.0 / run.ms_per_step;
  const double weight_bytes = opened.model->weight_bytes_read_per_token();
  const double bandwidth = measure_read_bandwidth();
  const double bound_tokens_per_s = f.batch * bandwidth / weight_bytes;
  const double peak_mib = peak_rss_bytes() / 1048576.0;
  std::printf("%s: %.2f ms/%s, %.1f tokens/s; memory read %.1f GB/s over %.0f MB of weights bounds it at %.1f "
              "tokens/s (%.0f%% of bound); peak RSS %.0f MiB\n",
              headline(f, opened).c_str(), run.ms_per_step, step_unit(f), tokens_per_s, bandwidth / 1e9,
              weight_bytes / 1e6, bound_tokens_per_s, 100 * tokens_per_s / bound_tokens_per_s, peak_mib);
  if (!f.json) return report_cpu_threads(nullptr);
  nlohmann::json json = common_json(f, opened, run.ms_per_step);
  json["read_bandwidth_gbs"] = bandwidth / 1e9;
  json["weight_bytes"] = weight_bytes;
  json["bound_tokens_per_s"] = bound_tokens_per_s;
  json["fraction_of_bound"] = tokens_per_s / bound_tokens_per_s;
  json["peak_rss_mib"] = peak_mib;
  report_cpu_threads(&json);
  print_json_line(json);
}

void run_bench_generate(const GenerateFlags& f) {
  keep_freed_memory_for_reuse();
  ModelSource source = f.source;
  source.inference_only = true;
  OpenedModel opened = open_model(source, /*load_tokenizer=*/false);
  const model::ModelConfig& config = opened.model->config();
  require(f.tokens < config.max_seq_len, "--tokens {} must be below the model's context of {}", f.tokens,
          config.max_seq_len);
  require(f.context == 0 || (f.context > f.start_at + f.tokens && f.context <= config.max_seq_len),
          "--context {} must exceed --start-at {} plus --tokens {} and fit the model's context of {}", f.context,
          f.start_at, f.tokens, config.max_seq_len);
  require(f.start_at == 0 || (opened.backend->simulator() && opened.backend->simulator()->timing_only()),
          "--start-at takes cached positions as filled without computing them, which only a timing-only "
          "simulator device (trn1-sim:timing, trn2-sim:timing) may do, not '{}'",
          opened.backend->name());
  require(f.trace.empty() || opened.backend->simulator(),
          "--trace needs a simulator device (trn1-sim, trn2-sim), not '{}'", opened.backend->name());
  require(f.start_at + f.tokens < config.max_seq_len, "--start-at {} plus --tokens {} must be below the model's context of {}",
          f.start_at, f.tokens, config.max_seq_len);
  const DecodeRun run = time_decode(f, opened);
  if (run.sim) {
    report_simulated(f, opened, run);
  } else if (const std::optional<size_t> device_peak = opened.backend->device_memory_peak_bytes()) {
    report_device(f, opened, run, *device_peak);
  } else {
    report_host(f, opened, run);
  }
}

}  // namespace

void add_bench_generate_command(CLI::App& bench) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* generate = bench.add_subcommand("generate", "time greedy decoding with the KV cache, --batch sequences a step");
  add_model_flags(generate, flags->source);
  generate->add_option("--batch", flags->batch,
                       "sequences decoded together: a step decodes one token of each. Sequence 0 starts from token "
                       "0, the others from random tokens (--seed), so that they decode different tokens, as "
                       "different requests do")
      ->check(CLI::Range(1, kMaxBatch))
      ->capture_default_str();
  generate->add_option("--tokens", flags->tokens, "tokens to generate (of each sequence)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  generate->add_option("--context", flags->context,
                       "positions the KV cache is sized for (default: the tokens generated), for memory figures")
      ->check(CLI::Range(2, 1 << 24));
  generate->add_option("--start-at", flags->start_at,
                       "timing-only simulators: decode from this position, the earlier ones taken as cached "
                       "(not computed), to time steps at a long context without simulating a prefill")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  generate->add_option("--trace", flags->trace, "simulator devices: write a Chrome trace (Perfetto) of the last decode step");
  add_tensor_parallel_flag(generate, flags->source);
  generate->add_flag("--json", flags->json, "print one JSON object as the last line");
  generate->add_flag("--profile", flags->source.profile, "time every kernel call and print where a decode step goes");
  generate->callback([flags] { run_bench_generate(*flags); });
}

}  // namespace switchyard::cli
