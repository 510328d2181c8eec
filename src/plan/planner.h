// The planner: for each chip and instance type, and each cluster size, the cheapest parallel layout
// that fits in memory, its step time, tokens/s, wall time, dollars and energy for a training run.
//
// Layouts are data parallelism over every chip, optionally with ZeRO-1 (optimizer state sharded
// over the replicas), activation recomputation, and tensor parallelism inside an instance. Every
// combination (tensor-parallel degree a power of two dividing the instance and the heads; plain,
// ZeRO-1, ZeRO-1 with recomputation) is tried with the largest micro-batch that fits (a power of
// two, at most 64 and at most the global batch per replica); the fastest wins, which for a fixed
// set of instances is also the cheapest. Ties keep the simpler layout.
//
// The global batch is the requested one unless a layout cannot take a step that small: with d
// replicas, micro-batch b and sequence T, a step is a whole number of b x T x d micro-steps, so the
// planner rounds up (1024 replicas at b = 1 and T = 1024 already take 1,048,576 tokens a step).
// Such a row says the batch it used and why (PlanRow::batch_note): a larger batch changes the
// training, not only its speed.
//
// Rows that are not plans say why: a chip without a priced instance is checked for memory fit all
// the same (status kNoPrice when it fits), so that "does not fit" (kOutOfMemory) means memory
// alone.
//
// Step time per optimizer step = accumulation steps x (compute + tensor-parallel all-reduces) +
// the part of the gradient all-reduce that the last backward pass does not hide (backward is 2/3 of
// the compute). Compute = model FLOPs / (chip FLOP rate from the best evidence), x 4/3 with
// recomputation (one more forward pass).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plan/catalog.h"
#include "plan/evidence.h"
#include "plan/workload.h"

namespace switchyard::plan {

struct PlanRequest {
  ModelShape shape;
  int64_t seq_len = 1024;
  double tokens = 0;               // tokens to train on
  std::vector<std::string> chips;  // empty: every chip in the catalog
  int64_t max_chips = 1024;
  std::optional<double> deadline_hours;
  double global_batch_tokens = 524288;  // tokens per optimizer step (GPT-2's 0.5M)
  double assumed_mfu = 0.35;            // for families without a stated MFU, labelled as assumed
  double memory_fraction = 0.9;         // usable share of device memory (runtime, fragmentation)
  double link_latency_s = 5e-6;         // per ring step inside an instance
  double network_latency_s = 20e-6;     // per ring step between instances
  Precision precision = mixed_bf16();
  std::vector<StepEvidence> evidence;
};

enum class RowStatus {
  kPlanned,      // fits in memory on a priced instance: time, dollars and all
  kNoPrice,      // fits in memory, but the instance catalog has no priced instance with the chip
  kOutOfMemory,  // no layout fits in memory (memory_per_chip is the least any layout needs)
  kOverMaxChips  // one instance already has more chips than --max-chips (memory not checked)
};
// "planned", "no-price", "out-of-memory", "over-max-chips".
const char* status_name(RowStatus status);

struct PlanRow {
  std::string chip, instance;
  int64_t instances = 0, chips = 0;
  int64_t tensor_parallel = 1, data_parallel = 1;
  bool zero1 = false, recompute = false;
  int64_t micro_batch = 0, accumulation = 0;
  RowStatus status = RowStatus::kOutOfMemory;
  bool fits = false;    // in memory (false and unchecked for kOverMaxChips)
  std::string why_not;  // when not planned
  // Bytes per chip: used by the plan, or for rows that are not plans the least any layout needs;
  // the chip's memory, and the share of it the planner lets a plan use.
  double memory_per_chip = 0, memory_capacity = 0, memory_usable = 0;
  double requested_batch_tokens = 0;  // the global batch asked for
  double tokens_per_step = 0;         // the global batch used
  std::string batch_note;             // why, when the two differ
  double compute_s = 0, tp_comm_s = 0, dp_comm_s = 0, exposed_dp_comm_s = 0, step_s = 0;
  double tokens_per_s = 0, hours = 0, dollars = 0, dollars_per_billion_tokens = 0, energy_kwh = 0;
  std::string energy_note;  // why energy_kwh is NaN
  double price_per_hour = 0;
  EvidenceKind evidence = EvidenceKind::kRoofline;
  std::vector<std::string> evidence_source_chips;  // published and borrowed evidence
  std::string evidence_detail;
  bool pareto = false;  // no other planned row is both cheaper and faster

  bool planned() const { return status == RowStatus::kPlanned; }
  bool batch_changed() const { return planned() && tokens_per_step != requested_batch_tokens; }
  std::string evidence_label() const {
    return plan::evidence_label(evidence, evidence_source_chips);
  }
  std::string layout() const;  // "DP=16 TP=1 ZeRO-1 recompute mb=4"
};

// Every configuration, planned ones first (cheapest, then fastest), then the rest by chip.
// Throws Error for tokens <= 0, max_chips < 1, an unknown chip, or a deadline that no fitting
// configuration meets (naming the fastest one).
std::vector<PlanRow> make_plan(const Catalog& catalog, const PlanRequest& request);

}  // namespace switchyard::plan
