#include "cli/simulated_collectives.h"

#include "core/dtype.h"
#include "model/tensor_parallel_shard.h"

namespace switchyard::cli {

void simulate_step_collectives(backend::Backend& backend, const model::ModelConfig& shard,
                               int degree, int64_t tokens) {
  if (degree <= 1) return;
  backend::SimulatorBackend& sim = backend::require_simulator(backend, "--tensor-parallel");
  const int64_t activation_bytes = tokens * shard.channels *
                                   static_cast<int64_t>(dtype_bytes(backend.precision().activations));
  for (int i = 0; i < model::tensor_parallel_all_reduces(shard, degree); ++i) {
    sim.simulate_all_reduce(activation_bytes, degree);
  }
  sim.simulate_all_reduce(tokens * 8, degree);  // each shard's best logit (fp32) and its id
}

}  // namespace switchyard::cli
