// Softmax cross-entropy of the trn*-sim backend as tile programs (the CrossEntropy and
// CrossEntropyBackward ops of ops.h).
//
// Rows on partitions, 128 at a time. The vocabulary is far wider than SBUF holds for 128 rows
// (50257 fp32 logits are 196 KiB per partition), so each row tile streams vocabulary chunks:
// VectorE/GpSimd take each chunk's row maxima, ScalarE its exp(x - max) with a fused row sum, and
// the chunks' (max, sum) pairs are merged at the end (online logsumexp). The target logit of each
// row is fetched by an indirect DMA (gather of element row * V + target) and the backward pass's
// one-hot term is an indirect accumulating DMA (scatter-add of -dloss at the same element), so no
// engine spends a full-width pass per chunk on a one-hot mask.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// losses[n] = logsumexp(logits[n, :]) - logits[n, targets[n]].
//   losses   HBM, N contiguous elements ([1, N] or [N, 1]), float (fp32 in the backend)
//   logits   HBM [N, V], contiguous rows, fp32 or bf16
//   targets  HBM int32, N contiguous elements ([N, 1] or [1, N]), each in [0, V) (checked: Error)
//   compute  dtype of the logits chunks in SBUF (kBF16 or kF32); statistics are fp32.
void cross_entropy_forward(NeuronCore& core, const View& losses, const View& logits,
                           const View& targets, int N, int V, DType compute);

// dlogits[N, V] = (softmax(logits) - onehot(targets)) * dloss. Overwrites dlogits (no +=), which
// may be the very same HBM view as logits (in place): every chunk is read before it is written.
// Chunks that fit in SBUF stay there between the statistics pass and the output pass (all of them
// for bf16 chunks at V = 50257); the others are read from HBM a second time.
void cross_entropy_backward(NeuronCore& core, const View& dlogits, const View& logits,
                            const View& targets, float dloss, int N, int V, DType compute);

}  // namespace switchyard::backend::neuron
