// `--cores N` on trn1-sim / trn2-sim (train, bench train): a data-parallel step on N simulated
// NeuronCores (train/simulated_cluster.h), put in the terms clusters are compared by.
//
// --batch is the global batch, as under mpirun: each core takes batch / N sequences per
// micro-batch. Scaling efficiency compares a core of the cluster with one core alone on the same
// per-core batch (weak scaling): single-core step / cluster step.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/model_source.h"
#include "dist/simulated_interconnect.h"
#include "train/simulated_cluster.h"

namespace CLI {
class App;
}

namespace switchyard::cli {

// Adds --cores to a subcommand; `what_runs` says what the run computes with it.
void add_cores_flag(CLI::App* command, int& cores, const char* what_runs);
// The sequences each core takes of a global `batch` over `cores`: throws Error unless `device` is
// a simulator and `batch` splits evenly (what names the batch flag).
int per_core_batch(const backend::Backend& device, int batch, int cores);
// The interconnect of a simulator device's chip.
dist::Interconnect interconnect_of_device(const backend::Backend& device);

struct ClusterFigures {
  dist::Interconnect links;
  dist::CoreLayout layout;
  double step_ms = 0;         // core 0's simulated step, waits for the collectives included
  double single_core_ms = 0;  // one core alone, same per-core batch
  train::ClusterCollectives collectives;
  double tokens_per_core = 0;  // per step
  double gradient_bytes = 0;   // what the reduce-scatters move a step (fp32 gradients)
  double tokens_per_s_per_core() const { return tokens_per_core / (step_ms / 1e3); }
  double tokens_per_s_per_chip() const { return tokens_per_s_per_core() * layout.per_chip; }
  double tokens_per_s_per_instance() const {
    return tokens_per_s_per_chip() * layout.chips_per_instance;
  }
  double tokens_per_s() const { return tokens_per_s_per_core() * layout.cores; }
  double scaling_efficiency() const { return single_core_ms / step_ms; }
};

// "simulated data parallel on 64 trn2 cores (8 chips of 8 cores, 1 instance): 41.2 ms/step, ..."
// and, on a second line, the interconnect's figures.
std::string describe_cluster(const ClusterFigures& figures);
// The figures as bench train --json adds them.
nlohmann::json cluster_json(const ClusterFigures& figures);

// One core's step and its collectives, timed on a timing-only copy of `source`'s model (same
// shape and seed, device DEVICE:timing): a warm-up step, then the timed one. cores == 1 times the
// single core without a StepSync.
struct TimedStep {
  double ms = 0;
  train::ClusterCollectives collectives;
};
TimedStep time_step_on_timing_copy(const ModelSource& source, int batch_per_core, int seq,
                                   int micro_batches, int cores);

// train --cores: the cluster's step for a run of global `batch` x `seq` in `micro_batches`
// micro-batches on `device` (a simulator), timed on timing-only copies (N cores, and one alone),
// described as describe_cluster does.
std::string describe_training_cluster(const ModelSource& source, const backend::Backend& device,
                                      int batch, int seq, int micro_batches, int cores);

}  // namespace switchyard::cli
