// Embedding CUDA kernels: token plus position embeddings, and their deterministic backward pass.
//
// Act is the activation storage type (float or bf16); the embedding tables and their gradients are
// fp32. tokens[B,T] are int32 in [0, V), already range-checked by the caller.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// out[B,T,C] = wte[tokens[b,t], :] + wpe[t, :]. Tokens are already range-checked.
template <typename Act>
void encoder_forward(Act* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                     int T, int C, cudaStream_t stream);

// Scratch bytes encoder_backward needs for B*T tokens (0 when B*T is 0): the sorted tokens and
// positions plus CUB's radix-sort storage. Asks CUB for its size, so it needs the CUDA runtime and
// the current device that encoder_backward will run on.
size_t encoder_backward_workspace_bytes(int B, int T);

// dwte[V,C] ACCUMULATES the scatter of dout[B,T,C] by token; dwpe[T,C] ACCUMULATES the sum over the
// batch of dout[b,t,:]. Deterministic, and for fp32 bit-identical to the CPU kernel: (token,
// position) pairs are sorted by token with cub::DeviceRadixSort (stable, so positions stay in
// order) into `workspace` (encoder_backward_workspace_bytes(B, T) bytes, any alignment); one block
// per distinct token adds its rows of dout in position order onto the token's row of dwte, and
// dwpe adds b = 0, 1, ... in order. V is not passed (tokens are valid indices).
template <typename Act>
void encoder_backward(float* dwte, float* dwpe, const Act* dout, const int32_t* tokens, int B,
                      int T, int C, void* workspace, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
