#include "backend/neuron/all_reduce_kernel.h"

#include <algorithm>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/residual_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// Chunk c of R over n elements: [c n / R, (c + 1) n / R).
View chunk(const View& flat, int64_t c, int ranks) {
  const int64_t n = flat.elements();
  const int64_t begin = c * n / ranks, end = (c + 1) * n / ranks;
  return flat.cols(begin, end - begin);
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
    if (chunk(own, c, ranks).elements() > 0) {
      accumulate(core, chunk(own, c, ranks), chunk(peer, c, ranks), compute);
    }
  }
  for (int s = 0; s + 1 < ranks; ++s) {
    core.wait_for_peers(kRingStepWaitNs);
    const int64_t c = (ranks - s) % ranks;
    copy_chunk(core, chunk(own, c, ranks), chunk(peer, c, ranks));
  }
}

}  // namespace switchyard::backend::neuron
