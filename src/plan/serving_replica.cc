#include "plan/serving_replica.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "plan/serving_queue.h"

namespace switchyard::plan {

ReplicaModel::ReplicaModel(const ServedModel& model, const ServingChip& chip,
                           const ServingRate& rate, const RequestMix& mix, double step_overhead_s,
                           int64_t tensor_parallel)
    : model_(model),
      chip_(chip),
      rate_(rate),
      mix_(mix),
      knobs_{rate.efficiency, step_overhead_s},
      tp_(tensor_parallel),
      context_(mix.decode_context()),
      mean_output_(mix.mean_output()) {
  double prefill = 0;
  for (const RequestClass& c : mix.classes()) {
    prefill += c.share * prefill_step(model, chip_, knobs_, c.prompt_tokens, tp_).total();
  }
  prefill_s_ = prefill;
}

bool ReplicaModel::timed() const { return rate_.table != nullptr; }

double ReplicaModel::roofline_step_s(int64_t batch, int64_t tensor_parallel) const {
  return decode_step(model_, chip_, knobs_, batch, context_, tensor_parallel).total();
}

double ReplicaModel::timed_step_s(int64_t batch) const {
  // The timed step, plus the roofline's time for the cache this context reads beyond the timed one.
  const StepTimeTable& t = *rate_.table;
  const double extra_cache =
      static_cast<double>(batch) * (model_.kv_bytes(context_) - model_.kv_bytes(t.context));
  return t.seconds(batch) + extra_cache / static_cast<double>(t.tensor_parallel) /
                                chip_.memory_bytes_per_s / knobs_.efficiency;
}

double ReplicaModel::decode_step_s(int64_t batch) const {
  if (!timed()) return roofline_step_s(batch, tp_);
  const StepTimeTable& t = *rate_.table;
  if (t.tensor_parallel == tp_ && batch <= t.max_batch()) return timed_step_s(batch);
  // Past the largest timed batch, or at another degree, the roofline keeps its shape, held at the
  // distance the timed steps keep from it at their largest batch: a table twice as slow as the
  // roofline there makes every other step twice as slow too.
  const int64_t last = t.max_batch();
  return roofline_step_s(batch, tp_) * timed_step_s(last) / roofline_step_s(last, t.tensor_parallel);
}

double ReplicaModel::tpot_s(int64_t batch) const {
  return decode_step_s(batch) + static_cast<double>(batch) / mean_output_ * prefill_s_;
}

double ReplicaModel::capacity_per_s(int64_t batch) const {
  return static_cast<double>(batch) / (mean_output_ * tpot_s(batch));
}

ServingTimes ReplicaModel::times(int64_t batch, double arrivals_per_s) const {
  ServingTimes t;
  t.step_s = decode_step_s(batch);
  t.tpot_s = tpot_s(batch);
  t.prefill_s = prefill_s_;
  const double slot_s = mean_output_ * t.tpot_s;  // how long a request holds its slot
  t.utilisation = arrivals_per_s * slot_s / static_cast<double>(batch);
  t.slot_wait_s = mdc_wait_seconds(batch, arrivals_per_s, slot_s);
  t.prefill_wait_s = md1_wait_seconds(arrivals_per_s, prefill_s_);
  t.ttft_s = t.slot_wait_s + t.prefill_wait_s + t.step_s / 2.0 + prefill_s_;
  return t;
}

double ReplicaModel::memory_per_chip(int64_t batch) const {
  return (model_.resident_weight_bytes() + static_cast<double>(batch) * model_.kv_bytes(context_)) /
         static_cast<double>(tp_);
}

int64_t ReplicaModel::memory_batch_limit(double usable_bytes, bool reserve_whole_requests) const {
  const double free = usable_bytes * static_cast<double>(tp_) - model_.resident_weight_bytes();
  if (free <= 0) return 0;
  double per_sequence = model_.kv_bytes(context_);
  if (reserve_whole_requests) {
    // Slots held in proportion to share x output, each reserving its whole request.
    double weighted = 0;
    for (const RequestClass& c : mix_.classes()) {
      const double slots = c.share * static_cast<double>(c.output_tokens);
      weighted += slots * model_.kv_bytes(static_cast<double>(c.prompt_tokens + c.output_tokens));
    }
    per_sequence = weighted / mean_output_;
  }
  if (per_sequence <= 0) return std::numeric_limits<int64_t>::max();
  const double limit = std::floor(free / per_sequence);
  return limit > 1e15 ? static_cast<int64_t>(1e15) : static_cast<int64_t>(limit);
}

}  // namespace switchyard::plan
