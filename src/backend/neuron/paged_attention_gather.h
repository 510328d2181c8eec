// Step 1 of the paged-attention tile program (paged_attention_kernel.h): the K and V rows of each
// key block, gathered from the block-paged caches ahead of the steps that read them.
//
// Per key block, with DMAs and one GpSimd instruction, so that no other engine's in-order queue
// waits on this work: the block table entries of its positions are copied, each replicated
// block_size times, into a row of an HBM scratch tensor, and read back with positions on
// partitions (a 128-position chunk per column); GpSimd turns each entry into the position's cache
// row, entry * block_size + (position % block_size), the latter a column of a table built once;
// indirect DMA gathers then bring the K and V rows of every kv head, positions on partitions,
// cast to the compute dtype. Table entries load kPagedLocateAhead blocks ahead of the block
// being read and the gathers run kPagedGatherAhead blocks ahead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/kernel_support.h"
#include "backend/neuron/paged_attention_plan.h"

namespace switchyard::backend::neuron {

inline constexpr size_t kPagedGatherAhead = 3;
inline constexpr size_t kPagedLocateAhead = kPagedGatherAhead + 2;
// Iterations of the program's loop after a block's last step that its V is still read (the
// step's P V runs that many iterations after its scores).
inline constexpr size_t kPagedValueLag = 3;

class PagedKeyBlockGatherer {
 public:
  // Allocates its SBUF tiles from `pool` and an HBM scratch tensor it releases when destroyed.
  PagedKeyBlockGatherer(NeuronCore& core, TilePool& pool, DmaQueues& queues, const View& k_cache,
                        const View& v_cache, const View& block_tables,
                        std::span<const PagedKeyBlock> blocks, int64_t key_block,
                        int64_t block_size, DType compute);
  ~PagedKeyBlockGatherer();
  PagedKeyBlockGatherer(const PagedKeyBlockGatherer&) = delete;
  PagedKeyBlockGatherer& operator=(const PagedKeyBlockGatherer&) = delete;

  // Issues the work for the first blocks; then, as each block's first step is issued, the work
  // for blocks kPagedLocateAhead and kPagedGatherAhead blocks ahead.
  void begin();
  void ahead_of(size_t b);

  // Block b's gathered rows: [128, chunks * kv_heads * head_dim], chunk c's positions on
  // partitions in columns [c * width, (c + 1) * width). They stay until the gather of block
  // b + 1 + kPagedGatherAhead (K) or b + 1 + kPagedGatherAhead + kPagedValueLag (V) is issued.
  View k(size_t b) const { return k_[b % kKeyBuffers]; }
  View v(size_t b) const { return v_[b % kValueBuffers]; }

  // SBUF bytes per partition of the gatherer's tiles for key blocks of `key_block` positions.
  static int64_t sbuf_bytes(int64_t key_block, int64_t block_size, int64_t width, DType compute);

 private:
  // A gather into a ring slot is issued kGatherAhead blocks ahead of the block being read: the
  // slot's previous block must have had its K^T made (K) or all of its P V issued (V) by then.
  static constexpr size_t kKeyBuffers = kPagedGatherAhead + 1;
  static constexpr size_t kValueBuffers = kPagedGatherAhead + 1 + kPagedValueLag;
  static constexpr size_t kTableBuffers = kPagedLocateAhead - kPagedGatherAhead + 1;

  static int64_t scratch_columns(int64_t key_block, int64_t block_size);
  static int64_t offsets_row(int64_t block_size);
  void build_offsets();
  // Brings block b's table entries onto partitions; then computes its cache rows and gathers
  // its K and V rows. Both are no-ops past the last block.
  void locate(size_t b);
  void gather(size_t b);

  NeuronCore& core_;
  DmaQueues& queues_;
  View k_cache_, v_cache_, tables_;
  std::span<const PagedKeyBlock> blocks_;
  int64_t key_block_, chunks_, bs_, width_;
  View scratch_;   // HBM [kTableBuffers + 1, columns]: replicated entries; the last row offsets
  View offsets_;   // [128, block_size]: column s holds (s + p) % block_size
  View build_offsets_row_;  // x % block_size along one partition, on the way to offsets_
  View entries_[kTableBuffers];  // [128, chunks] table entries of a block's positions
  View slots_[kKeyBuffers];
  View k_[kKeyBuffers];
  View v_[kValueBuffers];
};

}  // namespace switchyard::backend::neuron
