#include "dist/communicator.h"

#include "core/error.h"

namespace switchyard::dist {

void Communicator::all_reduce_sum(const Tensor& x) {
  const std::vector<int64_t> counts = even_counts(x.numel(), size());
  reduce_scatter_sum(x, counts);
  all_gather(x, counts);
}

std::vector<int64_t> even_counts(int64_t n, int ranks) {
  require(ranks > 0 && n >= 0, "cannot split {} elements over {} ranks", n, ranks);
  std::vector<int64_t> counts(static_cast<size_t>(ranks), n / ranks);
  for (int64_t r = 0; r < n % ranks; ++r) counts[static_cast<size_t>(r)] += 1;
  return counts;
}

}  // namespace switchyard::dist
