// Embedding CUDA kernels (ops::Embedding, ops::EmbeddingBackward): token plus optional position
// embeddings, and their deterministic backward pass.
//
// Act is the activation storage type (float or bf16); the embedding tables and their gradients are
// fp32, except that the token table may be bf16 (a frozen checkpoint's, or rows of bf16
// activations that the op gathers), and its gradient bf16 activations (the gather's backward
// pass, a scatter-add). Token ids and position ids are int32 row indices
// of their tables, range-checked by the caller (they live in device memory here).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// out[N,C] = wte[tokens[n], :] + wpe[positions[n], :]; without a position table (wpe null,
// positions unused) out[N,C] = wte[tokens[n], :]. Table is float or bf16 (a bf16 row copied to
// bf16 activations is copied exactly).
template <typename Act, typename Table>
void encoder_forward(Act* out, const int32_t* tokens, const Table* wte, const int32_t* positions,
                     const float* wpe, int N, int C, cudaStream_t stream);

// Scratch bytes encoder_backward needs for N rows, a token table of V rows and a position table of
// P rows (P = 0: none), 0 when N is 0: the sorted ids and row numbers plus CUB's radix-sort
// storage. Asks CUB for its size, so it needs the CUDA runtime and the current device that
// encoder_backward will run on.
size_t encoder_backward_workspace_bytes(int N, int V, int P);

// dwte[V,C] ACCUMULATES the scatter of dout[N,C] by token; with dwpe, dwpe[P,C] ACCUMULATES the
// scatter by position. Table is float, or bf16 (with bf16 dout) when dwte is an activation
// gradient: each row's sum is then formed in fp32 and rounded to bf16 once. Deterministic, and for
// fp32 bit-identical to the CPU kernel: each table's (id, row) pairs are sorted by id with
// cub::DeviceRadixSort over the bits that V (or P) needs (stable, so rows stay in order) in
// `workspace` (encoder_backward_workspace_bytes(N, V, P) bytes, P = 0 without dwpe; any
// alignment); one block per distinct id adds its rows of dout in row order onto the id's row of
// the table. With GPT-2's positions (n % T) that is the sum over
// the batch in order, as the CPU adds it.
template <typename Act, typename Table>
void encoder_backward(Table* dwte, int V, float* dwpe, int P, const Act* dout,
                      const int32_t* tokens, const int32_t* positions, int N, int C,
                      void* workspace, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
