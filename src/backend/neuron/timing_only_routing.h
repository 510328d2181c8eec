// The routing a timing-only simulator assumes. Its memories hold no computed values, so a
// mixture-of-experts layer's router logits are zeros there and their top-k would send every
// token to the same k experts: the fewest weights any step could read. Instead each token chooses
// k distinct experts uniformly at random (seeded, so runs repeat), the assumption the planner's
// serving model makes too (plan/serving_model.h: expected_distinct_experts), with equal weights.
// The host writes these choices after the routing's tile program has taken its simulated time,
// and the grouping that follows is computed on the host as well: later launches (the experts'
// products) size themselves from it.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace switchyard::backend::neuron {

// expert_ids [N, k] int32 and weights [N, k] fp32, dense: row n gets k distinct experts of
// `experts`, drawn from a stream seeded by (call, n), and weights 1/k.
void write_uniform_routing(const Tensor& expert_ids, const Tensor& weights, int experts,
                           uint64_t call);

}  // namespace switchyard::backend::neuron
