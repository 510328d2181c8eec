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
// the window's start when there is a window) in key blocks of 512 positions (256 or 128 where
// a wide shape's tiles would not fit SBUF otherwise), one step per (unit, key block, set), with
// an online softmax per row (a running max, kept as nb = -scale * max, and sum, fp32) so that
// scores never leave the chip:
//   1. gather (paged_attention_gather.h): each key block's cache rows, from its block table
//      entries, and its K and V rows of every kv head by indirect DMA, positions on partitions,
//      several blocks ahead of the step that reads them.
//   2. transpose_keys: K^T [head_dim, keys] once per key block and kv head, by TensorE
//      transposes; a key tile holds two kv heads (head_dim <= 64; four for <= 32) at 64- (32-)
//      partition offsets, with each lane's Q^T on its head's partitions and zeros elsewhere, so
//      that one transpose, one PSUM copy and one scores matmul serve two kv heads.
//   3. scores: S = Q K^T into the set's partitions of one PSUM bank, a matmul per run of lanes
//      sharing a key tile; blocks that cross the diagonal or the window's start get a 0 / -1e30
//      mask (GpSimd affine_select, built once per key block) added on the way out.
//   4. softmax, one instruction per stage for all of the set's rows: block max, nb,
//      P = exp(scale S + nb) with its row sum fused (ScalarE), the correction exp(nb_new - nb_old)
//      and l = l * corr + sum. With sinks, the state starts at nb = -sink of the row's head,
//      l = 1: the sink's exp joins the denominator and adds nothing to the output.
//   5. values: P^T per 128-key chunk through TensorE (all lanes at once); per lane O_block = P V
//      of its kv head accumulated in PSUM; O = O * corr + O_block in SBUF (fp32) for the set.
//      After a unit's last block out = O / l, staged and stored to each lane's heads and rows of
//      `out`, once for a group of decode units on consecutive rows.
// Engines run their instructions in issue order, so the loop is software-pipelined: iteration t
// issues the scores of step t, the softmax of step t - 1, the P^T of step t - 2 and the P V of
// step t - 3 (and the K^T of step t + 1), each reading what earlier iterations produced.
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

// SBUF bytes per partition the kernel needs for this shape with its shortest key blocks (the
// backend runs it only where they are free; with more free it uses longer blocks, up to 512).
int64_t paged_attention_sbuf_bytes(const PagedAttentionShape& shape, DType compute);

void paged_attention(NeuronCore& core, const View& out, const View& q, const View& k_cache,
                     const View& v_cache, const View& block_tables, const View& sinks,
                     std::span<const PagedSequence> sequences, const PagedAttentionShape& shape,
                     DType compute);

}  // namespace switchyard::backend::neuron
