// Storing new keys and values into a block-paged KV cache, as a NeuronCore tile program.
//
// Rows go to the cache by indirect DMA: per tile of up to 128 rows, one DMA brings the rows' slot
// ids into an SBUF index column, one DMA each brings the k and v rows (read with the projection's
// row stride, cast to the cache's dtype) into SBUF tiles with rows on partitions, and one
// indirect scatter each writes row p to cache row slot[p]. A negative slot drops its row (the
// scatter skips it). Tiles rotate over two buffers and the DMA queues, so one tile's loads run
// under the previous tile's scatters.
//
// Shapes: k and v [N, W] HBM views (W = kv_heads * head_dim elements per row, contiguous; the row
// stride may be larger, as for views of a packed projection), bf16 or fp32; slots [N, 1] int32;
// k_cache and v_cache [blocks * block_size, W] (the caches' [blocks, block_size, kv_heads,
// head_dim] rows), bf16 or fp32. Slots are < blocks * block_size (the scatter checks).
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// k_cache[slots[n]] = k[n] and v_cache[slots[n]] = v[n] for every n with slots[n] >= 0.
void kv_cache_write(NeuronCore& core, const View& k_cache, const View& v_cache, const View& k,
                    const View& v, const View& slots);

}  // namespace switchyard::backend::neuron
