#include "plan/planner.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "plan/collectives.h"
#include "plan/units.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Option {
  bool zero1, recompute;
};
constexpr Option kOptions[] = {{false, false}, {true, false}, {true, true}};

// Largest power-of-two micro-batch (>= 1) whose memory fits; 0 if even 1 does not.
int64_t largest_micro_batch(const ModelShape& shape, const Precision& precision,
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

// A simulated cluster of this chip with as many chips as the row, for a data-parallel row: its
// collectives replace the ring formulas (a run of the planned model first, then the first given).
const StepEvidence* simulated_cluster(const PlanRequest& r, const ChipSpec& chip, const PlanRow& row) {
  if (row.tensor_parallel != 1) return nullptr;
  const StepEvidence* best = nullptr;
  for (const StepEvidence& e : r.evidence) {
    if (e.kind != EvidenceKind::kSimulated || e.chip != chip.name || e.cluster_chips() != row.chips) continue;
    if (!best || (e.model == r.shape.name && best->model != r.shape.name)) best = &e;
  }
  return best;
}

void fill_timing(const PlanRequest& r, const ChipSpec& chip, const InstanceSpec& inst,
                 const ComputeRate& rate, PlanRow& row) {
  const ModelShape& s = r.shape;
  const double T = static_cast<double>(r.seq_len);
  const double tokens_per_micro = static_cast<double>(row.micro_batch) * T;
  const double replica_tokens = tokens_per_micro * static_cast<double>(row.data_parallel);
  row.accumulation =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r.global_batch_tokens / replica_tokens)));
  row.tokens_per_step = replica_tokens * static_cast<double>(row.accumulation);
  row.requested_batch_tokens = r.global_batch_tokens;
  if (row.tokens_per_step != r.global_batch_tokens) {
    const std::string step = fmt::format("{} data-parallel replicas x micro-batch {} x T={}",
                                         row.data_parallel, row.micro_batch, r.seq_len);
    row.batch_note =
        replica_tokens > r.global_batch_tokens
            ? fmt::format(
                  "global batch {} tokens, not the requested {}: {} is the smallest step {} "
                  "chips can take",
                  group_digits(row.tokens_per_step), group_digits(r.global_batch_tokens), step,
                  row.chips)
            : fmt::format(
                  "global batch {} tokens, not the requested {}: rounded up to {} accumulation "
                  "steps of {}",
                  group_digits(row.tokens_per_step), group_digits(r.global_batch_tokens),
                  row.accumulation, step);
  }

  const double flops_micro = tokens_per_micro * s.training_flops_per_token(r.seq_len) /
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
      static_cast<double>(s.num_parameters()) / row.tensor_parallel * r.precision.grad_bytes;
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
  if (const StepEvidence* cluster = simulated_cluster(r, chip, row)) {
    // The simulated collectives, in proportion to the gradient bytes (the simulator moves fp32).
    const double scale = grad_bytes / cluster->gradient_bytes;
    row.dp_comm_s = cluster->collective_ms / 1000.0 * scale;
    row.exposed_dp_comm_s = cluster->exposed_collective_ms / 1000.0 * scale;
    row.evidence_detail += fmt::format(
        "; collectives simulated on {} cores ({} chips) in {}: {:.3f} ms a step, {:.3f} ms exposed, "
        "scaled by gradient bytes x{:.3g}",
        cluster->cores, row.chips, cluster->origin, cluster->collective_ms,
        cluster->exposed_collective_ms, scale);
  }
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
  if (!chip.power_w) {
    row.energy_note =
        fmt::format("no published power figure for {} in the chip catalog", chip.name);
  }
}

// A row for `chip` before any layout is chosen: names, evidence and memory figures.
PlanRow base_row(const PlanRequest& r, const ChipSpec& chip, const ComputeRate& rate) {
  PlanRow row;
  row.chip = chip.name;
  row.memory_capacity = chip.memory_gib.value * kGiB;
  row.memory_usable = row.memory_capacity * r.memory_fraction;
  row.requested_batch_tokens = r.global_batch_tokens;
  row.evidence = rate.kind;
  row.evidence_source_chips = rate.source_chips;
  row.evidence_detail = rate.detail;
  return row;
}

std::string describe_layout(int64_t dp, int64_t tp, const Option& option) {
  std::string s = fmt::format("DP={} TP={}", dp, tp);
  if (option.zero1) s += " ZeRO-1";
  if (option.recompute) s += " recompute";
  return s + " mb=1";
}

// Memory at micro-batch 1 for the (tensor-parallel, data-parallel) degrees given, each with every
// option, in order: the first layout that fits, or else the one that needs the least.
struct MemoryCheck {
  bool fits = false;
  double need = 0;  // bytes per chip
  std::string layout;
};
MemoryCheck check_memory(const PlanRequest& r, double usable,
                         const std::vector<std::pair<int64_t, int64_t>>& tp_dp) {
  MemoryCheck least;
  for (auto [tp, dp] : tp_dp) {
    for (const Option& option : kOptions) {
      MemoryLayout layout;
      layout.seq_len = r.seq_len;
      layout.micro_batch = 1;
      layout.tensor_parallel = tp;
      layout.data_parallel = dp;
      layout.zero1 = option.zero1;
      layout.recompute = option.recompute;
      const double need = estimate_memory(r.shape, r.precision, layout).total();
      MemoryCheck check{need <= usable, need, describe_layout(dp, tp, option)};
      if (check.fits) return check;
      if (least.layout.empty() || need < least.need) least = check;
    }
  }
  return least;
}

std::string memory_sentence(const MemoryCheck& check, const PlanRow& row, double fraction) {
  return fmt::format("needs {:.1f} GiB per chip{} ({}); {:.1f} GiB usable ({:.0f}% of {:g} GiB)",
                     check.need / kGiB, check.fits ? "" : " at the least", check.layout,
                     row.memory_usable / kGiB, 100 * fraction, row.memory_capacity / kGiB);
}

// A chip that no instance in the catalog holds: it has no price, but whether the model fits in its
// memory is still worth saying. No instance means no known group for tensor parallelism, so this
// checks data parallelism alone, on one chip and on --max-chips chips (ZeRO-1 shards further).
PlanRow unpriced_row(const PlanRequest& r, const ChipSpec& chip, const ComputeRate& rate) {
  PlanRow row = base_row(r, chip, rate);
  row.instance = std::string(1, '-');  // (a literal trips a false GCC 12 -Wrestrict warning)
  const MemoryCheck check = check_memory(r, row.memory_usable, {{1, 1}, {1, r.max_chips}});
  row.fits = check.fits;
  row.status = check.fits ? RowStatus::kNoPrice : RowStatus::kOutOfMemory;
  row.memory_per_chip = check.need;
  row.why_not = fmt::format("{}; no priced instance with {} in the instance catalog",
                            memory_sentence(check, row, r.memory_fraction), chip.name);
  return row;
}

PlanRow plan_one(const PlanRequest& r, const ChipSpec& chip, const InstanceSpec& inst,
                 int64_t instances, const ComputeRate& rate) {
  PlanRow base = base_row(r, chip, rate);
  base.instance = inst.name;
  base.instances = instances;
  base.chips = instances * inst.chips;
  std::vector<std::pair<int64_t, int64_t>> tp_dp;  // every tensor-parallel degree that divides
  for (int64_t tp = 1; tp <= inst.chips; tp *= 2) {
    if (inst.chips % tp != 0 || r.shape.heads % tp != 0 || r.shape.kv_heads % tp != 0) continue;
    tp_dp.emplace_back(tp, base.chips / tp);
  }
  std::optional<PlanRow> best;
  for (auto [tp, dp] : tp_dp) {
    for (const Option& option : kOptions) {
      MemoryLayout layout;
      layout.seq_len = r.seq_len;
      layout.tensor_parallel = tp;
      layout.data_parallel = dp;
      layout.zero1 = option.zero1;
      layout.recompute = option.recompute;
      const double per_replica_micro_cap =
          r.global_batch_tokens / (static_cast<double>(r.seq_len) * layout.data_parallel);
      int64_t max_micro =
          std::max<int64_t>(1, static_cast<int64_t>(std::floor(per_replica_micro_cap)));
      max_micro = std::min<int64_t>(max_micro, 64);
      double used = 0;
      int64_t mb =
          largest_micro_batch(r.shape, r.precision, layout, base.memory_usable, max_micro, &used);
      if (mb == 0) continue;
      PlanRow row = base;
      row.status = RowStatus::kPlanned;
      row.fits = true;
      row.tensor_parallel = tp;
      row.data_parallel = dp;
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
  const MemoryCheck check = check_memory(r, base.memory_usable, tp_dp);
  base.status = RowStatus::kOutOfMemory;
  base.memory_per_chip = check.need;
  base.why_not = memory_sentence(check, base, r.memory_fraction);
  return base;
}

}  // namespace

const char* status_name(RowStatus status) {
  switch (status) {
    case RowStatus::kPlanned:
      return "planned";
    case RowStatus::kNoPrice:
      return "no-price";
    case RowStatus::kOutOfMemory:
      return "out-of-memory";
    case RowStatus::kOverMaxChips:
      return "over-max-chips";
  }
  return "?";
}

std::string PlanRow::layout() const {
  if (!planned()) return "-";
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
  if (r.shape.context > 0) {
    require(r.seq_len <= r.shape.context, "sequence length {} exceeds the model's context of {}",
            r.seq_len, r.shape.context);
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
      rows.push_back(unpriced_row(r, *chip, rate));
      continue;
    }
    for (const InstanceSpec* inst : instances) {
      if (inst->chips > r.max_chips) {
        PlanRow row = base_row(r, *chip, rate);
        row.instance = inst->name;
        row.status = RowStatus::kOverMaxChips;
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

  // Pareto front over the planned rows: nothing else is at most as expensive and at most as slow,
  // and strictly better in one of the two.
  for (PlanRow& a : rows) {
    if (!a.planned()) continue;
    a.pareto = true;
    for (const PlanRow& b : rows) {
      if (&a == &b || !b.planned()) continue;
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
      if (row.planned() && (!fastest || row.hours < fastest->hours)) fastest = &row;
    }
    require(fastest != nullptr,
            "no configuration fits in memory on a priced instance, so none meets --deadline {:g} "
            "({})",
            *r.deadline_hours, format_duration(*r.deadline_hours));
    if (fastest->hours > *r.deadline_hours) {
      fail(
          "no configuration meets --deadline {:g} ({}): the fastest within "
          "--max-chips {} is {} x {} ({} chips) at {}",
          *r.deadline_hours, format_duration(*r.deadline_hours), r.max_chips, fastest->instances,
          fastest->instance, fastest->chips, format_duration(fastest->hours));
    }
    std::erase_if(
        rows, [&](const PlanRow& row) { return row.planned() && row.hours > *r.deadline_hours; });
  }

  std::stable_sort(rows.begin(), rows.end(), [](const PlanRow& a, const PlanRow& b) {
    if (a.planned() != b.planned()) return a.planned();
    if (a.planned()) {
      return std::tie(a.dollars, a.hours, a.chip, a.instance, a.instances) <
             std::tie(b.dollars, b.hours, b.chip, b.instance, b.instances);
    }
    return std::tie(a.chip, a.instance, a.instances) < std::tie(b.chip, b.instance, b.instances);
  });
  return rows;
}

}  // namespace switchyard::plan
