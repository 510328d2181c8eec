// Embedding tile programs: rows of a table gathered by id (the token embedding, optionally plus a
// position embedding gathered the same way), and their gradients scattered back.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out[N, C] = table[ids[n]] + position_table[position_ids[n]] (the second term only when
// position_table is given; position_ids then too, else both are empty View()s).
//   ids, position_ids  HBM int32 tensors of N contiguous ids; an id outside its table is an Error
//   table              HBM [rows, C] float tensor with contiguous rows (fp32 parameters, or an
//                      activation when the op selects rows)
//   position_table     HBM [positions, C] float tensor with contiguous rows
//   out                HBM [N, C]
// `compute` is the dtype of the row tiles in SBUF (kBF16 or kF32): both rows are rounded to it,
// added, and stored.
void embedding_forward(NeuronCore& core, const View& out, const View& ids, const View& table,
                       const View& position_ids, const View& position_table, DType compute);

// dtable[ids[n]] += dout[n] and dposition_table[position_ids[n]] += dout[n] (repeated ids add up,
// in row order). dposition_table and position_ids are optional (empty View()s together).
// dtable: HBM [rows, C], dposition_table: HBM [positions, C], dout: HBM [N, C].
void embedding_backward(NeuronCore& core, const View& dtable, const View& dposition_table,
                        const View& dout, const View& ids, const View& position_ids,
                        DType compute);

}  // namespace switchyard::backend::neuron
