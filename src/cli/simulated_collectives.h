// The collectives of a tensor-parallel step on a simulator (bench generate and prefill with
// --tensor-parallel): after the shard's own work, this core's part of the group's all-reduces
// (model/tensor_parallel_shard.h), so that the simulated clock holds the whole step.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "model/model_config.h"

namespace switchyard::cli {

// Runs the all-reduces of one step of `tokens` tokens through `shard` at `degree` (nothing at
// degree 1): one [tokens, channels] activation reduction per model::tensor_parallel_all_reduces,
// and one of a value and an index per token for the sampled token over the vocabulary shards.
void simulate_step_collectives(backend::Backend& backend, const model::ModelConfig& shard,
                               int degree, int64_t tokens);

}  // namespace switchyard::cli
