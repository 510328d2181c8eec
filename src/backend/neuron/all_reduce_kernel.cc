#include "backend/neuron/all_reduce_kernel.h"

#include <algorithm>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/residual_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// Elements [c n / R, (c + 1) n / R) of chunk c of R over n elements: none when n < R for some c.
int64_t chunk_begin(int64_t n, int64_t c, int ranks) { return c * n / ranks; }
int64_t chunk_size(int64_t n, int64_t c, int ranks) {
  return chunk_begin(n, c + 1, ranks) - chunk_begin(n, c, ranks);
}
View chunk(const View& flat, int64_t c, int ranks) {
  const int64_t n = flat.elements();
  return flat.cols(chunk_begin(n, c, ranks), chunk_size(n, c, ranks));
}

constexpr int64_t kCopyBlockCols = 4096;

// One all-gather step: the neighbour's reduced chunk, HBM to HBM, as [128, F] blocks spread over
// the DMA queues.
void copy_chunk(NeuronCore& core, const View& dst, const View& src) {
  DmaQueues queues(core, 0.0);
  for (const FlatBlock& blk : flat_blocks(dst.elements(), kCopyBlockCols)) {
    split_copy(core, block_view(dst, blk), block_view(src, blk), queues.loads(),
               [&] { return queues.load(); });
  }
}

}  // namespace

void ring_all_reduce(NeuronCore& core, const View& own, const View& peer, int ranks,
                     DType compute) {
  const char* kName = "ring_all_reduce";
  require(ranks >= 2, "{}: a ring needs at least 2 ranks, got {}", kName, ranks);
  const int64_t n = own.elements();
  require_flat(kName, "own", own, n);
  require_flat(kName, "peer", peer, n);
  KernelScope scope(core, kName);
  // Rank 0's schedule: reduce-scatter steps s = 0 .. R-2 reduce chunk R-1-s, and all-gather
  // steps then pass the reduced chunks on; which chunk a step moves does not change its time.
  for (int s = 0; s + 1 < ranks; ++s) {
    core.wait_for_peers(kRingStepWaitNs);
    const int64_t c = ranks - 1 - s;
    if (chunk_size(n, c, ranks) > 0) accumulate(core, chunk(own, c, ranks), chunk(peer, c, ranks), compute);
  }
  for (int s = 0; s + 1 < ranks; ++s) {
    core.wait_for_peers(kRingStepWaitNs);
    const int64_t c = (ranks - s) % ranks;
    if (chunk_size(n, c, ranks) > 0) copy_chunk(core, chunk(own, c, ranks), chunk(peer, c, ranks));
  }
}

}  // namespace switchyard::backend::neuron
