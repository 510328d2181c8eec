// The element types of the CUDA backend's device tensors.
//
// Parameters, parameter gradients, AdamW moments, LayerNorm statistics and losses are always fp32.
// Activations, activation gradients, logits and the KV cache are stored in the backend's
// activation type: fp32 in the exact-checking mode ("cuda-fp32"), bf16 in the default mixed-
// precision mode ("cuda"). Kernels over activations are templates on that type (`Act`), built for
// both; arithmetic is fp32 in registers either way.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

namespace switchyard::backend::cuda {

using bf16 = __nv_bfloat16;

}  // namespace switchyard::backend::cuda
