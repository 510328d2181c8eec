// Combining the experts' outputs, and its backward pass, as NeuronCore tile programs (the
// ExpertCombine and ExpertCombineBackward ops of ops.h).
//
// Forward: a row tile's k choices are stacked on partitions: choice j of row n sits at partition
// j * r + n (r = floor(128 / k) rows a tile, so at k = 4 a 32-row decode step fills all 128
// partitions), and one indirect DMA gathers the k * r grouped rows expert_out[position[n * k + j]]
// onto them. Then out[n] = sum_j w[n, j] x[j * r + n] is one TensorE matmul per 512 columns: the
// stationary operand W [k * r, r] holds w[n, j] at (j * r + n, n) and zeros elsewhere (a stack of
// k identities scaled by the weights as a per-partition column), so the PE array sums each row's k
// products in PSUM in order j = 0..k-1, in fp32, from operands in the compute dtype. A row's sum
// reads only its own products; the zeros of W meet the other rows' values, so a non-finite value
// in another row's expert output (0 x inf) would reach this row too, as in any product-based
// combine.
//
// Backward, in three passes, so that no two DMAs write overlapping HBM ranges at once (the
// simulator orders such writes one after another, as it must for indirect stores whose rows it
// cannot know apart; an accumulating scatter of every grouped row would serialise the whole pass):
//   1. per 128 rows, the k scatters sources[position[n * k + j]] = (n, w[n, j]) into an HBM
//      scratch table: one fp32 pair per grouped row, small;
//   2. per 128 grouped rows g, plain loads of expert_out[g], dexpert_out[g] and their sources, a
//      gather of dout[n] by source row; dexpert_out[g] += w dout[n] (ScalarE scales, GpSimd adds)
//      and dots[g] = dout[n] . expert_out[g] (VectorE) go out by plain stores;
//   3. per 128 rows, dweights[n, j] += dots[position[n * k + j]] by k gathers of one element.
//
// Columns are cut into pieces of at most 1024 elements (the gathers take column slices of the
// grouped rows), loaded up to three pieces ahead; outputs stay whole in SBUF per row tile and go
// out cut by rows (column pieces would write overlapping HBM ranges). The instruction stream
// depends on the shapes only, not on the positions.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// Columns the programs take: whole rows of a row tile stay in SBUF (16-32 KiB per partition).
inline constexpr int64_t kMaxCombineColumns = 8192;

// out [N, C] (fp32 or bf16) = sum_j weights[n, j] * expert_out[position[n * k + j]], from
// expert_out [A, C], weights [N, k] fp32 and position [N, k] int32 (A = N * k), dense HBM
// tensors; 1 <= k <= 128. Positions must be rows of expert_out (the gather rejects others).
void expert_combine_forward(NeuronCore& core, const View& out, const View& expert_out,
                            const View& weights, const View& position, DType compute);

// dexpert_out[position[a]] += weights[a] * dout[n] and dweights[a] += dout[n] .
// expert_out[position[a]] for a = n * k + j. dexpert_out [A, C] and dout [N, C] fp32 or bf16,
// dweights [N, k] fp32. Positions must be a permutation (the backend checks it): a grouped row no
// position names would keep a stale source.
void expert_combine_backward(NeuronCore& core, const View& dexpert_out, const View& dweights,
                             const View& dout, const View& expert_out, const View& weights,
                             const View& position, DType compute);

}  // namespace switchyard::backend::neuron
