// The Cast op as a tile program: a tensor converted to another float dtype in HBM.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out = inp converted to out's dtype (rounding to nearest even, as every store into simulated
// memory does). Both are HBM tensors of the same number of contiguous elements, of any float
// dtype. The DMA engines cast on the way: HBM-to-HBM transfers of contiguous blocks spread over
// every queue, with no engine work.
void cast(NeuronCore& core, const View& out, const View& inp);

}  // namespace switchyard::backend::neuron
