#include "plan/planner.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "plan/collectives.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Option {
  bool zero1, recompute;
};
constexpr Option kOptions[] = {{false, false}, {true, false}, {true, true}};

// Largest power-of-two micro-batch (>= 1) whose memory fits; 0 if even 1 does not.
int64_t largest_micro_batch(const DecoderShape& shape, const Precision& precision,
                            MemoryLayout layout, double capacity, int64_t max_micro, double* used) {
  int64_t best = 0;
  for (int64_t mb = 1; mb <= max_micro; mb *= 2) {
    layout.micro_batch = mb;
    double bytes = estimate_memory(shape, precision, layout).total();
    if (bytes > capacity) break;
    best = mb;
    *used = bytes;
  }
  return best;
}

void fill_timing(const PlanRequest& r, const ChipSpec& chip, const InstanceSpec& inst,
                 const ComputeRate& rate, PlanRow& row) {
  const DecoderShape& s = r.shape;
  const double T = static_cast<double>(r.seq_len);
  const double tokens_per_micro = static_cast<double>(row.micro_batch) * T;
  const double replica_tokens = tokens_per_micro * static_cast<double>(row.data_parallel);
  row.accumulation =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r.global_batch_tokens / replica_tokens)));
  row.tokens_per_step = replica_tokens * static_cast<double>(row.accumulation);

  const double flops_micro = tokens_per_micro * training_flops_per_token(s, r.seq_len) /
                             static_cast<double>(row.tensor_parallel);
  row.compute_s = flops_micro / rate.flops_per_second * (row.recompute ? 4.0 / 3.0 : 1.0);

  // Chip-to-chip links: a ring uses one direction of each link.
  const double link_bytes_per_s =
      chip.chip_to_chip_gbs.value * 1e9 / (chip.chip_to_chip_bidirectional ? 2.0 : 1.0);
  // Tensor parallelism (Megatron style): two all-reduces of the layer's activations forward and two
  // backward per layer (three forward with recomputation).
  if (row.tensor_parallel > 1) {
    const double bytes =
        tokens_per_micro * static_cast<double>(s.hidden) * r.precision.activation_bytes;
    const double per =
        ring_allreduce_seconds(bytes, row.tensor_parallel, link_bytes_per_s, r.link_latency_s);
    row.tp_comm_s = static_cast<double>(s.layers) * (row.recompute ? 6.0 : 4.0) * per;
  }
  // Gradient all-reduce (or ZeRO-1 reduce-scatter + all-gather: the same bytes), once per step.
  const double grad_bytes =
      static_cast<double>(num_parameters(s)) / row.tensor_parallel * r.precision.grad_bytes;
  if (row.data_parallel > 1) {
    if (row.instances == 1) {
      row.dp_comm_s =
          ring_allreduce_seconds(grad_bytes, row.data_parallel, link_bytes_per_s, r.link_latency_s);
    } else {
      HierarchicalLinks links;
      links.intra_bytes_per_second = link_bytes_per_s;
      links.inter_bytes_per_second = inst.network_gbps.value * 1e9 / 8.0 / inst.chips;
      links.intra_latency_s = r.link_latency_s;
      links.inter_latency_s = r.network_latency_s;
      const int64_t per_instance = inst.chips / row.tensor_parallel;
      row.dp_comm_s =
          hierarchical_allreduce_seconds(grad_bytes, per_instance, row.instances, links);
    }
  }
  const double hidden_by_backward = row.compute_s * (2.0 / 3.0);
  row.exposed_dp_comm_s = std::max(0.0, row.dp_comm_s - hidden_by_backward);
  row.step_s = static_cast<double>(row.accumulation) * (row.compute_s + row.tp_comm_s) +
               row.exposed_dp_comm_s;

  row.tokens_per_s = row.tokens_per_step / row.step_s;
  row.hours = r.tokens / row.tokens_per_s / 3600.0;
  row.price_per_hour = inst.price_per_hour.value * static_cast<double>(row.instances);
  row.dollars = row.hours * row.price_per_hour;
  row.dollars_per_billion_tokens = row.dollars / r.tokens * 1e9;
  // Chip power only (no host, network or cooling); unknown where the catalog has no power figure.
  row.energy_kwh = chip.power_w
                       ? static_cast<double>(row.chips) * chip.power_w->value * row.hours / 1000.0
                       : std::nan("");
  row.evidence = rate.kind;
  row.evidence_detail = rate.detail;
}

PlanRow plan_one(const PlanRequest& r, const ChipSpec& chip, const InstanceSpec& inst,
                 int64_t instances, const ComputeRate& rate) {
  PlanRow base;
  base.chip = chip.name;
  base.instance = inst.name;
  base.instances = instances;
  base.chips = instances * inst.chips;
  base.memory_capacity = chip.memory_gib.value * kGiB;
  base.evidence = rate.kind;
  base.evidence_detail = rate.detail;
  const double usable = base.memory_capacity * r.memory_fraction;
  double smallest_need = 0;
  std::optional<PlanRow> best;
  for (int64_t tp = 1; tp <= inst.chips; tp *= 2) {
    if (inst.chips % tp != 0 || r.shape.heads % tp != 0 || r.shape.kv_heads % tp != 0) continue;
    for (const Option& option : kOptions) {
      MemoryLayout layout;
      layout.seq_len = r.seq_len;
      layout.tensor_parallel = tp;
      layout.data_parallel = base.chips / tp;
      layout.zero1 = option.zero1;
      layout.recompute = option.recompute;
      const double per_replica_micro_cap =
          r.global_batch_tokens / (static_cast<double>(r.seq_len) * layout.data_parallel);
      int64_t max_micro =
          std::max<int64_t>(1, static_cast<int64_t>(std::floor(per_replica_micro_cap)));
      max_micro = std::min<int64_t>(max_micro, 64);
      double used = 0;
      int64_t mb = largest_micro_batch(r.shape, r.precision, layout, usable, max_micro, &used);
      if (mb == 0) {
        layout.micro_batch = 1;
        double need = estimate_memory(r.shape, r.precision, layout).total();
        if (smallest_need == 0 || need < smallest_need) smallest_need = need;
        continue;
      }
      PlanRow row = base;
      row.fits = true;
      row.tensor_parallel = tp;
      row.data_parallel = layout.data_parallel;
      row.zero1 = option.zero1;
      row.recompute = option.recompute;
      row.micro_batch = mb;
      row.memory_per_chip = used;
      fill_timing(r, chip, inst, rate, row);
      // Same instances, same price: the fastest layout is the cheapest. Ties keep the simpler one.
      if (!best || row.tokens_per_s > best->tokens_per_s * (1 + 1e-12)) best = row;
    }
  }
  if (best) return *best;
  base.why_not = fmt::format(
      "needs {:.1f} GiB per chip even with TP={}, ZeRO-1, recomputation and micro-batch 1; "
      "{:.0f}% of {:g} GiB is usable",
      smallest_need / kGiB, inst.chips, 100 * r.memory_fraction, chip.memory_gib.value);
  base.memory_per_chip = smallest_need;
  return base;
}

}  // namespace

std::string PlanRow::layout() const {
  if (!fits) return "-";
  std::string s = fmt::format("DP={} TP={}", data_parallel, tensor_parallel);
  if (zero1) s += " ZeRO-1";
  if (recompute) s += " recompute";
  s += fmt::format(" mb={}", micro_batch);
  return s;
}

std::vector<PlanRow> make_plan(const Catalog& catalog, const PlanRequest& r) {
  require(std::isfinite(r.tokens) && r.tokens > 0, "--tokens must be positive, got {}", r.tokens);
  require(r.max_chips >= 1, "--max-chips must be at least 1, got {}", r.max_chips);
  require(r.seq_len >= 1, "sequence length must be positive, got {}", r.seq_len);
  require(r.global_batch_tokens >= 1, "global batch must be at least one token, got {}",
          r.global_batch_tokens);
  require(!r.deadline_hours || *r.deadline_hours > 0, "--deadline must be positive hours, got {}",
          r.deadline_hours.value_or(0));
  require(r.assumed_mfu > 0 && r.assumed_mfu <= 1, "assumed MFU must be in (0, 1], got {}",
          r.assumed_mfu);
  r.shape.validate();
  if (r.shape.gpt) {
    require(r.seq_len <= r.shape.gpt->max_seq_len,
            "sequence length {} exceeds the model's context of {}", r.seq_len,
            r.shape.gpt->max_seq_len);
  }
  for (const StepEvidence& e : r.evidence) catalog.chip(e.chip);  // unknown chips are errors

  std::vector<const ChipSpec*> chips;
  if (r.chips.empty()) {
    for (const ChipSpec& c : catalog.chips) chips.push_back(&c);
  } else {
    for (const std::string& name : r.chips) {
      const ChipSpec* chip = &catalog.chip(name);
      if (std::find(chips.begin(), chips.end(), chip) == chips.end()) chips.push_back(chip);
    }
  }

  std::vector<PlanRow> rows;
  for (const ChipSpec* chip : chips) {
    ComputeRate rate = choose_rate(catalog, *chip, r.shape.name, r.evidence, r.assumed_mfu);
    std::vector<const InstanceSpec*> instances = catalog.instances_of(chip->name);
    if (instances.empty()) {
      PlanRow row;
      row.chip = chip->name;
      row.instance = std::string(1, '-');
      row.why_not = fmt::format("no priced instance with {} in the instance catalog", chip->name);
      row.evidence = rate.kind;
      row.evidence_detail = rate.detail;
      rows.push_back(row);
      continue;
    }
    for (const InstanceSpec* inst : instances) {
      if (inst->chips > r.max_chips) {
        PlanRow row;
        row.chip = chip->name;
        row.instance = inst->name;
        row.why_not = fmt::format("one {} has {} chips, more than --max-chips {}", inst->name,
                                  inst->chips, r.max_chips);
        rows.push_back(row);
        continue;
      }
      for (int64_t n = 1; n * inst->chips <= r.max_chips; n *= 2) {
        rows.push_back(plan_one(r, *chip, *inst, n, rate));
      }
    }
  }

  // Pareto front over the fitting rows: nothing else is at most as expensive and at most as slow,
  // and strictly better in one of the two.
  for (PlanRow& a : rows) {
    if (!a.fits) continue;
    a.pareto = true;
    for (const PlanRow& b : rows) {
      if (&a == &b || !b.fits) continue;
      bool no_worse = b.dollars <= a.dollars && b.hours <= a.hours;
      bool better = b.dollars < a.dollars || b.hours < a.hours;
      if (no_worse && better) {
        a.pareto = false;
        break;
      }
    }
  }

  if (r.deadline_hours) {
    const PlanRow* fastest = nullptr;
    for (const PlanRow& row : rows) {
      if (row.fits && (!fastest || row.hours < fastest->hours)) fastest = &row;
    }
    require(fastest != nullptr,
            "no configuration fits in memory, so none meets the deadline of {} h",
            *r.deadline_hours);
    if (fastest->hours > *r.deadline_hours) {
      fail(
          "no configuration meets the deadline of {:g} h: the fastest within --max-chips {} is {} "
          "x {} "
          "({} chips) at {:.1f} h",
          *r.deadline_hours, r.max_chips, fastest->instances, fastest->instance, fastest->chips,
          fastest->hours);
    }
    std::erase_if(rows,
                  [&](const PlanRow& row) { return row.fits && row.hours > *r.deadline_hours; });
  }

  std::stable_sort(rows.begin(), rows.end(), [](const PlanRow& a, const PlanRow& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.fits) {
      return std::tie(a.dollars, a.hours, a.chip, a.instance, a.instances) <
             std::tie(b.dollars, b.hours, b.chip, b.instance, b.instances);
    }
    return std::tie(a.chip, a.instance, a.instances) < std::tie(b.chip, b.instance, b.instances);
  });
  return rows;
}

}  // namespace switchyard::plan
