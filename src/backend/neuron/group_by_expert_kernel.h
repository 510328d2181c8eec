// Grouping the assignments by expert as a NeuronCore tile program (the GroupByExpert op of ops.h):
// a counting sort done with one-hot compares and prefix sums on TensorE.
//
// Assignment a = n * k + j (row n's j-th choice) goes to grouped position
//   g = offsets[e] + (assignments to the same expert e before a),
// and "before a" splits into earlier rows and, within row n, earlier choices. With rows on
// partitions and C[n, e] = how many of row n's choices are e (a one-hot tile summed over j):
//   1. counts: sum_n C[n, e], TensorE against a ones column, accumulated over all row tiles in PSUM;
//      offsets[e] = sum_{e' < e} counts[e'] is one more matmul against a strictly triangular
//      [e' < e] matrix. Both before any position can be known: a first pass over the rows.
//   2. per row tile, X[n, e] = offsets[e] + (rows before this tile choosing e) + sum_{n' < n} C[n', e]
//      in one PSUM accumulation group: tri^T C (the same [n' < n] matrix) plus ones^T R, where
//      R holds the offsets in its first row and the counts of the tiles already done (added to it
//      after each tile);
//   3. g[n, j] = X[n, ids[n, j]] (a one-hot tile [n, j, e] times X, summed over e) plus how many of
//      choices 0..j-1 of row n are the same expert (a [k, k] compare, masked to j' < j by GpSimd's
//      affine_select).
// Then g, the row n and the assignment a of each choice go out: position[a] = g by a plain store,
// order[g] = a and rows[g] = n by indirect stores (DMA scatters of one element per assignment).
// For them the [n, j] values are first restacked onto partition n * k + j (assignment order) by
// k small TensorE matmuls against a constant placement matrix, so that each row tile's
// assignments go out in one DMA per output rather than k; a row tile is therefore floor(128 / k)
// rows. Counts, offsets and positions pass through fp32 (PSUM) and are exact: the matmuls take
// fp32 operands because bf16 holds integers exactly only up to 256.
//
// Why TensorE rather than a scalar loop on GpSimd: the sort's sequential form is O(A) dependent
// steps, each an instruction on an engine built for 128-lane work; the prefix sums as matmuls are
// a few instructions per 128 assignments whatever E (<= 512), with TensorE otherwise idle here.
#pragma once

#include <cstdint>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// order [A, 1], rows [A, 1], position [A, 1] (A = N * k, assignment a = n * k + j) and offsets
// [1, E + 1], all int32 dense HBM tensors, from expert_ids [N, k] int32, each id in [0, E) (the
// backend checks them on the host: an id outside matches no expert and would leave positions
// undefined). 1 <= E <= kMaxExperts, 1 <= k <= 128, A < 2^24.
void group_by_expert(NeuronCore& core, const View& order, const View& rows, const View& position,
                     const View& offsets, const View& expert_ids, int64_t experts);

}  // namespace switchyard::backend::neuron
