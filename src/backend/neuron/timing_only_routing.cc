#include "backend/neuron/timing_only_routing.h"

#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace switchyard::backend::neuron {

void write_uniform_routing(const Tensor& expert_ids, const Tensor& weights, int experts,
                           uint64_t call) {
  require(expert_ids.rank == 2 && expert_ids.is_contiguous() && weights.is_contiguous() &&
              weights.numel() == expert_ids.numel(),
          "uniform routing: expert_ids and weights must be dense [N, k], got {} and {}",
          expert_ids.describe(), weights.describe());
  const int64_t N = expert_ids.shape[0], k = expert_ids.shape[1];
  require(k >= 1 && k <= experts, "uniform routing: k = {} of {} experts", k, experts);
  int32_t* ids = expert_ids.as<int32_t>();
  float* w = weights.as<float>();
  std::vector<int32_t> pool(static_cast<size_t>(experts));
  for (int64_t n = 0; n < N; ++n) {
    // The first k places of a Fisher-Yates shuffle: k distinct experts, each equally likely.
    std::iota(pool.begin(), pool.end(), 0);
    Rng rng(call * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(n));
    for (int64_t j = 0; j < k; ++j) {
      const int64_t pick = j + static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(experts - j));
      std::swap(pool[j], pool[pick]);
      ids[n * k + j] = pool[j];
      w[n * k + j] = 1.0f / static_cast<float>(k);
    }
  }
}

}  // namespace switchyard::backend::neuron
