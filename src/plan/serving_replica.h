// One replica of a served model: `tensor_parallel` chips holding the weights and a decode batch of
// `batch` sequences, fed by Poisson arrivals of the request mix.
//
//   decode step   s(b): the step-time table where one covers this batch, else the roofline model
//   TPOT          s(b) + (b / O) x mean prefill: a replica finishes b/O requests per step on
//                 average, and prefills the same number of prompts in between
//   capacity      b / (O x TPOT) requests/s, b / TPOT output tokens/s
//   TTFT          slot wait (M/D/c, c = b) + prefill wait (M/D/1) + half a decode step (a new
//                 request joins at the next step boundary) + its own prefill
//   memory        weights / TP + b x (cache of a sequence at the mix's decode context) / TP
#pragma once

#include <cstdint>

#include "plan/serving_evidence.h"
#include "plan/serving_mix.h"
#include "plan/serving_model.h"

namespace switchyard::plan {

struct ServingTimes {
  double step_s = 0;          // decode step at the batch
  double tpot_s = 0;          // time per output token a request sees
  double prefill_s = 0;       // mean prefill over the mix
  double slot_wait_s = 0;     // waiting for a free slot
  double prefill_wait_s = 0;  // waiting for the replica's prefill
  double ttft_s = 0;          // mean time to first token
  double utilisation = 0;     // busy share of the slots
};

class ReplicaModel {
 public:
  ReplicaModel(const ServedModel& model, const ServingChip& chip, const ServingRate& rate,
               const RequestMix& mix, double step_overhead_s, int64_t tensor_parallel);

  int64_t tensor_parallel() const { return tp_; }
  // Whether the decode steps come from a step-time table: timed at its degree up to its largest
  // batch, the roofline calibrated by it elsewhere (decode_step_s).
  bool timed() const;
  double decode_step_s(int64_t batch) const;
  double prefill_s() const { return prefill_s_; }
  double tpot_s(int64_t batch) const;
  // Requests/s one replica sustains at this batch.
  double capacity_per_s(int64_t batch) const;
  // The times at `arrivals_per_s` requests/s reaching this replica (infinite TTFT at saturation).
  ServingTimes times(int64_t batch, double arrivals_per_s) const;
  // Bytes per chip with `batch` sequences cached.
  double memory_per_chip(int64_t batch) const;
  // Largest batch whose memory fits `usable_bytes` per chip (0 when even the weights do not). A
  // sequence holds the mix's decode context on average (caches paged as tokens arrive, as vLLM and
  // this engine's server do); `reserve_whole_requests` reserves prompt + output for every sequence
  // instead (TensorRT-LLM's default GUARANTEED_NO_EVICT scheduling).
  int64_t memory_batch_limit(double usable_bytes, bool reserve_whole_requests = false) const;

 private:
  // The table's step at a batch it covers, with the roofline's cache reads for another context.
  double timed_step_s(int64_t batch) const;
  double roofline_step_s(int64_t batch, int64_t tensor_parallel) const;

  const ServedModel& model_;
  ServingChip chip_;
  const ServingRate& rate_;
  const RequestMix& mix_;
  ServingKnobs knobs_;
  int64_t tp_;
  double context_, mean_output_, prefill_s_;
};

}  // namespace switchyard::plan
