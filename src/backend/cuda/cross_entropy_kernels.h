// Softmax cross-entropy CUDA kernels over the logits of a batch of rows.
//
// Act is the logits' storage type (float or bf16); losses are fp32 and all arithmetic is fp32.
// One block of 512 threads per row, rows on the grid's x dimension (N up to 2^31 - 1); any V >= 1
// (50257 unpadded, or 13). Each row's maximum and sum of exponentials come from one pass over the
// row (an online softmax: per-thread running maximum and rescaled sum, then combined in a fixed
// order), so results are repeatable. As in the CPU kernels, a NaN or infinite logit makes the
// row's loss (and gradient) NaN.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// losses[N] = -log softmax(logits[n, :V])[targets[n]] = logsumexp(logits[n]) - logits[n, target],
// max-subtracted. targets[n] must lie in [0, V).
template <typename Act>
void cross_entropy_forward(float* losses, const Act* logits, const int32_t* targets, int N, int V,
                           cudaStream_t stream);

// dlogits[N,V] = (softmax(logits) - onehot(targets)) * dloss. WRITES (does not accumulate).
// dlogits may be logits itself (in place): a row's statistics are complete before any of it is
// overwritten, and each element is then read and written by the same thread. fp32 probabilities
// are never stored. targets[n] must lie in [0, V).
template <typename Act>
void cross_entropy_backward(Act* dlogits, const Act* logits, const int32_t* targets, float dloss,
                            int N, int V, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
