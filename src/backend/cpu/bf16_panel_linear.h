// bf16 products of a continuous batch's decode step (a few dozen rows) over weights packed once
// into column panels, through AVX-512 BF16's vdpbf16ps: cpu-bf16's product at 5 to 64 rows over
// weights that stay put (blocked_weights.h keeps the packed copies).
//
// Layout: a panel is kPanelColumns consecutive outputs; for each pair of inputs (c = 2k, 2k + 1)
// it holds those outputs' two weights side by side, so one 32-bit broadcast gives an output's pair
// to every lane. The rows go down the vector lanes instead: up to 32 rows, their input pairs in
// two vectors, multiply each broadcast pair. A panel's 12 outputs x 32 rows stay in 24 registers
// while the panel's weights pass once, front to back: the weights stream exactly once per 32 rows,
// in order, which the hardware prefetcher and one software prefetch a few KB ahead keep up with.
// (oneDNN's matmul over its own blocked layout, which this replaces on such CPUs, ran 500-590
// GFLOP/s at 32 rows on a 2-core Zen 5 where this runs 600-790; BENCHMARKS.md, issue 15.)
//
// Numbers: each lane sums its row's products in c order, two at a time (vdpbf16ps: both products
// exact in fp32, added one after the other with fp32 rounding), then adds the bias and rounds to
// bf16. A row's result does not depend on the other rows or on how many there are.
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchyard::backend::cpu {

inline constexpr int kPanelColumns = 12;

// Whether this build has the kernel (compiled for a CPU with AVX-512 BF16).
bool bf16_panel_linear_available();

// uint16_t values a packed copy of a [OC, C] weight holds (C even; OC rounded up to whole panels).
size_t bf16_panel_values(int C, int OC);

// Packs weight [OC, C] bf16 (row-major, C even) into `panels` (bf16_panel_values(C, OC) values),
// outputs past OC as zeros.
void pack_bf16_panels(uint16_t* panels, const uint16_t* weight, int C, int OC);

// out[n, o] = bf16(sum over c of inp[n, c] * weight[o, c] + bias[o]) for inp [N, C] and out
// [N, OC] (bf16, row-major, dense), the weight packed by pack_bf16_panels, bias [OC] fp32 or null.
// Any N >= 1 (32 rows a pass over the weights). Throws Error where the build lacks the kernel.
void bf16_panel_linear(uint16_t* out, const uint16_t* inp, const uint16_t* panels,
                       const float* bias, int N, int C, int OC);

}  // namespace switchyard::backend::cpu
