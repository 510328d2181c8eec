#include "cli/simulated_cluster_report.h"

#include <optional>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "backend/simulated_span.h"
#include "core/error.h"

namespace switchyard::cli {

namespace {

constexpr const char* kTimingSuffix = ":timing";

std::string timing_device(const std::string& device) {
  return device.ends_with(kTimingSuffix) ? device : device + kTimingSuffix;
}

}  // namespace

void add_cores_flag(CLI::App* command, int& cores, const char* what_runs) {
  command->add_option("--cores", cores,
                      "trn1-sim/trn2-sim: time a data-parallel step on this many NeuronCores "
                      "(physical cores: 2 a trn1 chip, 8 a trn2 chip, which LNC=2 shows as 4; "
                      "beyond one chip whole chips, beyond one instance of 16 chips whole "
                      "instances). --batch is the global batch: each core takes batch / cores "
                      "sequences; ZeRO-1 collectives on a model of the links "
                      "(docs/simulated_cluster.md). " + std::string(what_runs))
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
}

int per_core_batch(const backend::Backend& device, int batch, int cores) {
  require(device.simulator() != nullptr,
          "--cores needs a simulator device (trn1-sim, trn2-sim, or either with :timing), not "
          "'{}': it times a data-parallel step on simulated NeuronCores",
          device.name());
  require(cores >= 1, "--cores {}: needs at least one core", cores);
  require(batch % cores == 0,
          "--batch {} does not split over --cores {}: --batch is the global batch and each core "
          "takes batch / cores sequences; give a multiple of {}",
          batch, cores, cores);
  return batch / cores;
}

dist::Interconnect interconnect_of_device(const backend::Backend& device) {
  return dist::interconnect_of(backend::simulation_report(device).value().target);
}

std::string describe_cluster(const ClusterFigures& f) {
  const dist::CoreLayout& l = f.layout;
  const train::ClusterCollectives& c = f.collectives;
  return fmt::format(
      "simulated data parallel on {} {} cores ({} chip{} x {} cores, {} {}{}): {:.3f} ms/step "
      "against {:.3f} ms on one core alone, scaling efficiency {:.1f}%; tokens/s {:.0f} per core, "
      "{:.0f} per chip, {:.0f} per instance, {:.0f} in all\n"
      "  collectives {:.3f} ms a step ({:.1f}% of it), exposed {:.3f} ms ({:.1f}%): "
      "reduce-scatter {:.3f} ms in {} buckets ({:.3f} ms exposed, the rest under the backward "
      "pass), statistics all-reduce {:.3f} ms, parameter all-gather {:.3f} ms\n"
      "  {}",
      l.cores, f.links.target, l.chips(), l.chips() == 1 ? "" : "s", l.per_chip, l.instances,
      f.links.instance, l.chips_per_instance < f.links.chips_per_instance ? " (part of one)" : "",
      f.step_ms, f.single_core_ms, 100 * f.scaling_efficiency(), f.tokens_per_s_per_core(),
      f.tokens_per_s_per_chip(), f.tokens_per_s_per_instance(), f.tokens_per_s(), c.total_ms(),
      100 * c.total_ms() / f.step_ms, c.exposed_ms(), 100 * c.exposed_ms() / f.step_ms,
      c.reduce_scatter_ms, c.buckets, c.exposed_reduce_scatter_ms, c.statistics_ms,
      c.all_gather_ms, dist::describe_interconnect(f.links));
}

nlohmann::json cluster_json(const ClusterFigures& f) {
  const train::ClusterCollectives& c = f.collectives;
  return {{"cores", f.layout.cores},
          {"cores_per_chip_used", f.layout.per_chip},
          {"chips", f.layout.chips()},
          {"instances", f.layout.instances},
          {"instance", f.links.instance},
          {"simulated_single_core_ms_per_step", f.single_core_ms},
          {"scaling_efficiency", f.scaling_efficiency()},
          {"simulated_cluster_tokens_per_s", f.tokens_per_s()},
          {"simulated_tokens_per_s_per_instance", f.tokens_per_s_per_instance()},
          {"collective_ms", c.total_ms()},
          {"exposed_collective_ms", c.exposed_ms()},
          {"collective_share", c.total_ms() / f.step_ms},
          {"exposed_collective_share", c.exposed_ms() / f.step_ms},
          {"reduce_scatter_ms", c.reduce_scatter_ms},
          {"exposed_reduce_scatter_ms", c.exposed_reduce_scatter_ms},
          {"statistics_all_reduce_ms", c.statistics_ms},
          {"all_gather_ms", c.all_gather_ms},
          {"gradient_buckets", c.buckets},
          {"gradient_bytes", f.gradient_bytes}};
}

TimedStep time_step_on_timing_copy(const ModelSource& source, int batch_per_core, int seq,
                                   int micro_batches, int cores) {
  ModelSource copy = source;
  copy.device = timing_device(source.device);
  copy.profile = false;
  OpenedModel opened = open_model(copy, /*load_tokenizer=*/false);
  model::Model& model = *opened.model;
  std::optional<train::SimulatedCluster> cluster;
  if (cores > 1) {
    cluster.emplace(model, interconnect_of_device(*opened.backend), cores, micro_batches);
    model.set_step_sync(&*cluster);
  }
  // A timing-only core computes nothing from the tokens: any in the vocabulary will do.
  const std::vector<int32_t> tokens(static_cast<size_t>(batch_per_core) * seq, 0);
  backend::SimulatedClock clock(model.backend());
  for (int step = 1; step <= 2; ++step) {  // the first allocates the optimizer state
    clock.restart();
    model.begin_step();
    for (int micro = 0; micro < micro_batches; ++micro) {
      model.forward_backward(tokens.data(), tokens.data(), batch_per_core, seq,
                             1.0f / static_cast<float>(micro_batches));
    }
    model.finish_step(model::AdamWConfig{}, 6e-4f, step, 1.0f);
  }
  TimedStep timed;
  timed.ms = clock.lap(static_cast<double>(tokens.size()) * micro_batches)->ms;
  if (cluster) timed.collectives = cluster->last_step();
  return timed;
}

std::string describe_training_cluster(const ModelSource& source, const backend::Backend& device,
                                      int batch, int seq, int micro_batches, int cores) {
  ClusterFigures figures;
  const int per_core = per_core_batch(device, batch, cores);
  figures.links = interconnect_of_device(device);
  figures.layout = dist::layout_cores(figures.links, cores, "--cores");
  const TimedStep step = time_step_on_timing_copy(source, per_core, seq, micro_batches, cores);
  figures.step_ms = step.ms;
  figures.collectives = step.collectives;
  figures.single_core_ms =
      cores == 1 ? step.ms : time_step_on_timing_copy(source, per_core, seq, micro_batches, 1).ms;
  figures.tokens_per_core = static_cast<double>(per_core) * seq * micro_batches;
  return describe_cluster(figures);
}

}  // namespace switchyard::cli
