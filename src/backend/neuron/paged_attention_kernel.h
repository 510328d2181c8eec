// Attention of a flat batch's query rows over a block-paged KV cache (prefill chunks and decode
// steps), as a NeuronCore tile program.
//
// Work is cut into units: up to 128 query rows of one sequence, all heads. A unit's rows are laid
// out on partitions in lanes and sets (paged_attention_plan.h): a lane is the rows one matmul
// against one kv head's K^T scores. A decode row (a unit of one row) packs the G = heads /
// kv_heads query heads of a kv head into one lane, one head per partition, all at the same
// position; a prefill unit has one head per lane, one row per partition. Lanes start at the
// partition alignment their size needs (32, 64 or 128), and a set of up to 128 / alignment lanes
// is the rows of one step: for gpt-oss's 32 heads over 4 kv heads, one decode row's 32 heads
// are one set of four lanes of 8. A unit walks the key positions its rows may see (causal; from
// the window's start when there is a window) in key blocks of up to 512 positions, one step per
// (unit, key block, set), with an online softmax per row (a running max, kept as
// nb = -scale * max, and sum, fp32) so that scores never leave the chip:
//   1. gather_block: the block table entries of the key block come into SBUF by DMA; each
//      position's cache row (block_tables[s, p / block_size] * block_size + p % block_size) is
//      computed on VectorE along one partition and turned onto partitions by TensorE transposes;
//      indirect DMA gathers then bring the K and V rows of every kv head, 128 positions per
//      chunk with positions on partitions, cast to the compute dtype. Blocks are gathered
//      several ahead of the step that reads them.
//   2. transpose_keys: K^T [head_dim, keys] of each kv head a set reads, by TensorE transposes,
//      once per key block.
//   3. scores: per lane, S = Q_lane K^T into the lane's partitions of one PSUM bank; blocks that
//      cross the diagonal or the window's start get a 0 / -1e30 mask (GpSimd affine_select,
//      built once per key block) added on the way out.
//   4. softmax, once for the set's rows: block max, nb, P = exp(scale S + nb) with its row sum
//      fused (ScalarE), the correction exp(nb_new - nb_old) and l = l * corr + sum. With sinks,
//      the state starts at nb = -sink of the row's head, l = 1: the sink's exp joins the
//      denominator and adds nothing to the output.
//   5. values: P^T per 128-key chunk through TensorE (all lanes at once), per lane O_block = P V
//      of its kv head accumulated in PSUM, and O = O * corr + O_block in SBUF (fp32) for the
//      set; after the last block out = O / l, stored to each lane's heads and rows of `out`.
// Steps 3-4 of one step are issued before step 5 of the previous one, and the next key block's
// gathers and the next unit's Q^T load right after, so every engine has independent work queued.
//
// Shapes: q [N, heads * head_dim] and out [N, heads * head_dim] HBM rows (contiguous within a
// row, any row stride), bf16 or fp32; k_cache, v_cache [blocks * block_size, kv_heads * head_dim]
// (the caches' [blocks, block_size, kv_heads, head_dim] rows); block_tables [S, max_blocks]
// int32; sinks [1, heads] fp32 or absent. head_dim <= 128, heads a multiple of kv_heads,
// scale > 0. The host gives each sequence's rows and context length (launch sizing; the block
// tables stay on the device).
#pragma once

#include <cstdint>
#include <span>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

struct PagedSequence {
  int64_t first_row = 0;  // its query rows are [first_row, first_row + rows)
  int64_t rows = 0;
  int64_t context = 0;    // positions cached, the new rows' included; the last row is at context - 1
};

struct PagedAttentionShape {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int block_size = 0;
  int window = 0;  // 0: every earlier position; else positions (p - window, p]
  float scale = 0.0f;
};

// SBUF bytes per partition the kernel needs for this shape (the backend runs it only where they
// are free).
int64_t paged_attention_sbuf_bytes(const PagedAttentionShape& shape, DType compute);

void paged_attention(NeuronCore& core, const View& out, const View& q, const View& k_cache,
                     const View& v_cache, const View& block_tables, const View& sinks,
                     std::span<const PagedSequence> sequences, const PagedAttentionShape& shape,
                     DType compute);

}  // namespace switchyard::backend::neuron
