// Global-norm gradient clipping: one rule for the host and every backend's kernels, so that a step
// clipped on a device scales its gradients by exactly the factor the host would have used.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SWITCHYARD_HOST_DEVICE __host__ __device__
#else
#define SWITCHYARD_HOST_DEVICE
#endif

namespace switchyard::backend {

// The L2 norm of all gradients from their sum of squares, in float (as it is reported).
SWITCHYARD_HOST_DEVICE inline float global_norm(double sum_of_squares) {
  return static_cast<float>(sqrt(sum_of_squares));
}

// The factor the gradients are multiplied by: clip / norm when clipping is on (clip > 0) and the
// norm exceeds it, otherwise 1. A NaN norm is not clipped, so a diverged step stays visible.
SWITCHYARD_HOST_DEVICE inline float clip_scale(float norm, float clip) {
  return clip > 0 && norm > clip ? clip / norm : 1.0f;
}

}  // namespace switchyard::backend
