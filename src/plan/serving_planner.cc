#include "plan/serving_planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "plan/serving_replica.h"
#include "plan/units.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Where replicas live: an instance type, or (instance null) loose chips without a price.
struct Group {
  const InstanceSpec* instance = nullptr;
  int64_t chips = 0;  // per instance, or the largest tensor-parallel group without one
};

// Tensor-parallel degrees: powers of two dividing the group, the heads and the key/value heads.
std::vector<int64_t> degrees(const ModelShape& s, int64_t group) {
  std::vector<int64_t> out;
  for (int64_t t = 1; t <= group; t *= 2) {
    if (group % t == 0 && s.heads % t == 0 && s.kv_heads % t == 0) out.push_back(t);
  }
  return out;
}

// Largest batch in [1, limit] whose TPOT meets the target (TPOT grows with the batch); 0 if none.
int64_t largest_batch(const ReplicaModel& rep, int64_t limit, double target) {
  if (rep.tpot_s(1) > target) return 0;
  int64_t lo = 1, hi = limit;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (rep.tpot_s(mid) <= target)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

double ttft_floor(const ReplicaModel& rep, int64_t batch) {
  return rep.decode_step_s(batch) / 2.0 + rep.prefill_s();
}

// Fewest replicas (>= 1) that carry `load` requests/s with the TTFT target met, or nullopt past
// `max_replicas`. The TTFT falls as replicas are added, towards ttft_floor (below the target).
std::optional<int64_t> replicas_needed(const ReplicaModel& rep, int64_t batch, double load,
                                       double target, int64_t max_replicas) {
  const double first = std::floor(load / rep.capacity_per_s(batch)) + 1;
  if (first > static_cast<double>(max_replicas)) return std::nullopt;
  auto ok = [&](int64_t n) {
    return rep.times(batch, load / static_cast<double>(n)).ttft_s <= target;
  };
  int64_t lo = static_cast<int64_t>(first), hi = lo;
  while (!ok(hi)) {
    lo = hi + 1;
    if (hi >= max_replicas) return std::nullopt;
    hi = std::min(max_replicas, hi * 2);
  }
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ok(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  return hi;
}

ServePoint make_point(const ServeRequest& r, const ReplicaModel& rep, const Group& g, int64_t batch,
                      int64_t replicas) {
  ServePoint p;
  p.tensor_parallel = rep.tensor_parallel();
  p.batch = batch;
  p.replicas = replicas;
  p.chips = replicas * p.tensor_parallel;
  const ServingTimes t = rep.times(batch, r.requests_per_s / static_cast<double>(replicas));
  p.step_s = t.step_s;
  p.tpot_s = t.tpot_s;
  p.ttft_s = t.ttft_s;
  p.prefill_s = t.prefill_s;
  p.slot_wait_s = t.slot_wait_s;
  p.prefill_wait_s = t.prefill_wait_s;
  p.utilisation = t.utilisation;
  p.meets_tpot = t.tpot_s <= r.tpot_s;
  p.timed = rep.timed();
  p.capacity_tokens_per_s_per_chip =
      static_cast<double>(batch) / t.tpot_s / static_cast<double>(p.tensor_parallel);
  const double output_per_s = r.requests_per_s * r.mix.mean_output();
  p.load_tokens_per_s_per_chip = output_per_s / static_cast<double>(p.chips);
  p.memory_per_chip = rep.memory_per_chip(batch);
  p.price_per_hour = p.dollars_per_million = std::nan("");
  if (g.instance) {
    p.instances = (p.chips + g.chips - 1) / g.chips;
    p.price_per_hour = static_cast<double>(p.instances) * g.instance->price_per_hour.value;
    p.dollars_per_million = p.price_per_hour / 3600.0 / output_per_s * 1e6;
  }
  return p;
}

// What one (group, degree) reaches: a point meeting both targets, or how close it came.
struct Attempt {
  int64_t degree = 1;
  int64_t memory_limit = 0;  // batches that fit
  double need_bytes = 0;     // per chip at batch 1
  double tpot_at_1 = 0;      // the fastest TPOT
  double ttft_floor = 0;     // the fastest TTFT at the batch that met TPOT
  int64_t batch = 0;         // largest meeting TPOT and TTFT's floor
  std::optional<ServePoint> point;
  int64_t chips_needed = 0;  // when the load needs more than --max-chips
};

Attempt attempt(const ServeRequest& r, const ReplicaModel& rep, const Group& g, double usable) {
  Attempt a;
  a.degree = rep.tensor_parallel();
  a.need_bytes = rep.memory_per_chip(1);
  a.memory_limit = std::min(r.max_batch, rep.memory_batch_limit(usable));
  if (a.memory_limit < 1) return a;
  a.tpot_at_1 = rep.tpot_s(1);
  int64_t b = largest_batch(rep, a.memory_limit, r.tpot_s);
  if (b == 0) return a;
  while (b > 1 && ttft_floor(rep, b) > r.ttft_s) b /= 2;
  a.ttft_floor = ttft_floor(rep, b);
  if (a.ttft_floor > r.ttft_s) return a;
  a.batch = b;
  const int64_t max_replicas = std::max<int64_t>(1, r.max_chips / a.degree);
  const auto n = replicas_needed(rep, b, r.requests_per_s, r.ttft_s, max_replicas);
  if (!n) {
    a.chips_needed =
        static_cast<int64_t>(std::ceil(r.requests_per_s / rep.capacity_per_s(b))) * a.degree;
    return a;
  }
  a.point = make_point(r, rep, g, b, *n);
  return a;
}

// Batches 1, 2, 4, ... (and the plan's) at the plan's degree, each with the replicas its TTFT
// needs.
std::vector<ServePoint> curve(const ServeRequest& r, const ReplicaModel& rep, const Group& g,
                              const Attempt& a) {
  std::vector<int64_t> batches;
  for (int64_t b = 1; b <= a.memory_limit; b *= 2) batches.push_back(b);
  batches.push_back(a.batch);
  std::sort(batches.begin(), batches.end());
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  std::vector<ServePoint> points;
  const int64_t max_replicas = std::max<int64_t>(1, r.max_chips / a.degree);
  for (int64_t b : batches) {
    if (ttft_floor(rep, b) > r.ttft_s) continue;
    const auto n = replicas_needed(rep, b, r.requests_per_s, r.ttft_s, max_replicas);
    if (n) points.push_back(make_point(r, rep, g, b, *n));
  }
  return points;
}

bool cheaper(const ServePoint& a, const ServePoint& b, bool priced) {
  if (priced && a.price_per_hour != b.price_per_hour) return a.price_per_hour < b.price_per_hour;
  return std::tie(a.chips, a.tensor_parallel) < std::tie(b.chips, b.tensor_parallel);
}

std::string ms(double seconds) { return fmt::format("{:.3g} ms", seconds * 1000.0); }

// Why no attempt met the targets, in the most useful order: too many chips, latency, memory.
void explain(const ServeRequest& r, const std::vector<Attempt>& tries, ServeRow& row) {
  const Attempt* over = nullptr;
  const Attempt* fastest = nullptr;  // lowest TPOT at batch 1 among those that fit
  const Attempt* tpot_ok = nullptr;  // met TPOT, lowest TTFT floor
  for (const Attempt& a : tries) {
    if (a.chips_needed > 0 && (!over || a.chips_needed < over->chips_needed)) over = &a;
    if (a.memory_limit < 1) continue;
    if (!fastest || a.tpot_at_1 < fastest->tpot_at_1) fastest = &a;
    if (a.ttft_floor > 0 && (!tpot_ok || a.ttft_floor < tpot_ok->ttft_floor)) tpot_ok = &a;
  }
  if (over) {
    row.status = ServeStatus::kOverMaxChips;
    row.why_not = fmt::format(
        "meets the targets only with about {} chips (TP={}, batch {}), more than --max-chips {}",
        group_digits(static_cast<double>(over->chips_needed)), over->degree, over->batch,
        r.max_chips);
  } else if (tpot_ok) {
    row.status = ServeStatus::kMissesLatency;
    row.why_not = fmt::format(
        "TTFT target {} is below the fastest first token this chip gives: {} (a prefill and half "
        "a decode step, no queueing) at TP={}",
        ms(r.ttft_s), ms(tpot_ok->ttft_floor), tpot_ok->degree);
  } else if (fastest) {
    row.status = ServeStatus::kMissesLatency;
    row.why_not = fmt::format(
        "TPOT target {} is below the fastest this chip gives: {} per token at batch 1 with TP={}",
        ms(r.tpot_s), ms(fastest->tpot_at_1), fastest->degree);
  } else {
    const Attempt& widest = tries.back();
    row.status = ServeStatus::kOutOfMemory;
    row.why_not = fmt::format(
        "needs {:.1f} GiB per chip for the weights and one sequence's cache at TP={} (the largest "
        "degree tried); {:.1f} GiB usable ({:.0f}% of {:g} GiB)",
        widest.need_bytes / kGiB, widest.degree, row.memory_usable / kGiB, 100 * r.memory_fraction,
        row.memory_capacity / kGiB);
  }
}

ServeRow plan_chip(const Catalog& catalog, const ServeRequest& r, const ServedModel& model,
                   const ChipSpec& chip) {
  ServeRow row;
  row.chip = chip.name;
  row.memory_capacity = chip.memory_gib.value * kGiB;
  row.memory_usable = row.memory_capacity * r.memory_fraction;
  row.weight_format = weight_format_sentence(chip, r.precision, r.shape);
  const ServingRate rate = choose_serving_rate(catalog, chip, r.shape.name, r.precision.name,
                                               r.step_times, r.assumed_efficiency);
  const ServingRate roof = roofline_serving_rate(catalog, chip, r.assumed_efficiency);
  row.efficiency = rate.efficiency;
  const ServingChip rates = serving_chip(chip, r.precision, r.link_latency_s);

  std::vector<Group> groups;
  for (const InstanceSpec* i : catalog.instances_of(chip.name)) groups.push_back({i, i->chips});
  if (groups.empty()) groups.push_back({nullptr, r.unpriced_max_tensor_parallel});
  std::vector<Attempt> tries;
  std::optional<std::pair<Group, Attempt>> best;
  for (const Group& g : groups) {
    for (int64_t t : degrees(r.shape, g.chips)) {
      ReplicaModel rep(model, rates, rate, r.mix, r.step_overhead_s, t);
      tries.push_back(attempt(r, rep, g, row.memory_usable));
      const Attempt& a = tries.back();
      if (a.point && (!best || cheaper(*a.point, *best->second.point, g.instance != nullptr))) {
        best = std::make_pair(g, a);
      }
    }
  }
  // The instance type tried (or "-"), also on rows that are not plans.
  row.instance = groups[0].instance ? groups[0].instance->name : std::string(1, '-');
  if (!best) {
    row.evidence = roof.kind;
    row.evidence_source_chips = roof.source_chips;
    row.evidence_detail = roof.detail;
    explain(r, tries, row);
    return row;
  }
  const auto& [g, a] = *best;
  row.plan = *a.point;
  const ServingRate& used = row.plan.timed ? rate : roof;
  row.evidence = used.kind;
  row.evidence_source_chips = used.source_chips;
  row.evidence_detail = used.detail;
  ReplicaModel rep(model, rates, rate, r.mix, r.step_overhead_s, a.degree);
  row.curve = curve(r, rep, g, a);
  if (g.instance) {
    row.instance = g.instance->name;
    row.chips_per_instance = g.chips;
    row.status = ServeStatus::kPlanned;
  } else {
    row.status = ServeStatus::kNoPrice;
    row.why_not = fmt::format(
        "meets the targets with {} chip{} (TP={}, batch {}), but no priced instance holds {} in "
        "the instance catalog",
        row.plan.chips, row.plan.chips == 1 ? "" : "s", row.plan.tensor_parallel, row.plan.batch,
        chip.name);
  }
  return row;
}

void validate(const Catalog& catalog, const ServeRequest& r) {
  auto positive = [](double x) { return std::isfinite(x) && x > 0; };
  require(positive(r.requests_per_s), "the load must be a positive number of requests/s, got {}",
          r.requests_per_s);
  require(positive(r.ttft_s), "--ttft-ms must be a positive number, got {}", r.ttft_s * 1000);
  require(positive(r.tpot_s), "--tpot-ms must be a positive number, got {}", r.tpot_s * 1000);
  require(r.max_chips >= 1, "--max-chips must be at least 1, got {}", r.max_chips);
  require(r.max_batch >= 1, "--max-batch must be at least 1, got {}", r.max_batch);
  require(r.memory_fraction > 0 && r.memory_fraction <= 1, "memory fraction must be in (0, 1]");
  require(std::isfinite(r.step_overhead_s) && r.step_overhead_s >= 0,
          "--step-overhead-ms must be >= 0, got {}", r.step_overhead_s * 1000);
  r.shape.validate();
  if (r.shape.context > 0) {
    require(r.mix.longest() <= r.shape.context,
            "a request of {} tokens (prompt + output) exceeds {}'s context of {} tokens",
            r.mix.longest(), r.shape.name, r.shape.context);
  }
  for (const StepTimeTable& t : r.step_times) catalog.chip(t.chip);  // unknown chips are errors
}

}  // namespace

const char* serve_status_name(ServeStatus status) {
  switch (status) {
    case ServeStatus::kPlanned:
      return "planned";
    case ServeStatus::kNoPrice:
      return "no-price";
    case ServeStatus::kMissesLatency:
      return "misses-latency";
    case ServeStatus::kOutOfMemory:
      return "out-of-memory";
    case ServeStatus::kOverMaxChips:
      return "over-max-chips";
  }
  return "?";
}

std::vector<ServeRow> make_serving_plan(const Catalog& catalog, const ServeRequest& r) {
  validate(catalog, r);
  const ServedModel model(r.shape, r.precision);
  std::vector<const ChipSpec*> chips;
  if (r.chips.empty()) {
    for (const ChipSpec& c : catalog.chips) chips.push_back(&c);
  } else {
    for (const std::string& name : r.chips) {
      const ChipSpec* chip = &catalog.chip(name);
      if (std::find(chips.begin(), chips.end(), chip) == chips.end()) chips.push_back(chip);
    }
  }
  std::vector<ServeRow> rows;
  for (const ChipSpec* chip : chips) rows.push_back(plan_chip(catalog, r, model, *chip));
  std::stable_sort(rows.begin(), rows.end(), [](const ServeRow& a, const ServeRow& b) {
    auto rank = [](const ServeRow& x) { return static_cast<int>(x.status); };
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    if (a.meets_targets()) return cheaper(a.plan, b.plan, a.status == ServeStatus::kPlanned);
    return a.chip < b.chip;
  });
  if (!rows.empty() && rows[0].status == ServeStatus::kPlanned) rows[0].cheapest = true;
  return rows;
}

}  // namespace switchyard::plan
