// fill_zero as a tile program, and the streaming pieces the elementwise kernels of the trn*-sim
// backend share (contiguous blocks, DMA spread over queues).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// The number of elements of `view`, an HBM tensor whose elements are contiguous (a 1-D tensor or a
// 2-D one with rows packed back to back); throws Error naming `kernel` and `name` otherwise.
int64_t contiguous_elements(const View& view, const char* kernel, const char* name);

// Covers N elements with blocks that are each one contiguous byte range: [128, max_cols] blocks of
// 128 * max_cols consecutive elements, then the rest as [128, rest / 128] and a tail row (or rows,
// when max_cols < 127) of the last rest % 128 elements. flat_blocks' column ranges of one
// [128, N / 128] array span almost the whole tensor each, so the simulator's dependency tracking
// (bounding boxes) would order every block after every earlier one of the same tensor; these
// blocks overlap nothing, so storing one while loading the next, or filling many at once, overlap.
// Use block_view() on them as on flat_blocks'.
std::vector<FlatBlock> contiguous_blocks(int64_t n, int64_t max_cols);

// Issues DMAs round-robin over queues [first_queue, first_queue + queues), cutting each transfer by
// rows into pieces of at least kMinPieceBytes (one piece per queue at most), so that one large
// tile streams through several queues at once.
class DmaSpreader {
 public:
  static constexpr int64_t kMinPieceBytes = 128 * 1024;

  DmaSpreader(NeuronCore& core, int first_queue, int queues);
  // dst and src: the same rows and free size (one of them in HBM or both in SBUF).
  void copy(const View& dst, const View& src);
  // The next queue in the rotation, for a small transfer issued directly.
  int next_queue();

 private:
  NeuronCore& core_;
  int first_queue_;
  int queues_;
  int next_ = 0;
};

// dst (HBM, contiguous elements, any dtype) = 0: one SBUF tile is zeroed once and copied over
// every block of dst, spread over all DMA queues.
void fill_zero(NeuronCore& core, const View& dst);

}  // namespace switchyard::backend::neuron
