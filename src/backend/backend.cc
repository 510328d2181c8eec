#include "backend/backend.h"

#include <vector>

#include "backend/gradient_clipping.h"
#include "core/error.h"

namespace switchyard::backend {

void Backend::start_trace() {
  fail("device '{}' is not a simulator: --trace needs trn1-sim or trn2-sim", name());
}

void Backend::finish_trace(const std::string& path) {
  fail("device '{}' is not a simulator: --trace needs trn1-sim or trn2-sim", name());
}

// The defaults below read the device values to the host and write them back: right where device
// memory is host memory, and correct (if not round-trip free) everywhere else.

void Backend::accumulate_sum(double* total, const float* x, size_t N, double scale) {
  std::vector<float> values(N);
  if (N > 0) copy_to_host(values.data(), x, N * sizeof(float));
  double sum = 0;
  for (float value : values) sum += value;
  double current = 0;
  copy_to_host(&current, total, sizeof(double));
  current += scale * sum;
  copy_to_device(total, &current, sizeof(double));
}

void Backend::sum_of_squares_to(double* total, const float* x, size_t N) {
  const double sum = sum_of_squares(x, N);
  copy_to_device(total, &sum, sizeof(double));
}

void Backend::adamw_update_clipped(float* params, const float* grads, float* m, float* v, size_t N,
                                   const AdamWStep& step, const double* grad_sum_of_squares,
                                   float clip) {
  double sum = 0;
  copy_to_host(&sum, grad_sum_of_squares, sizeof(double));
  AdamWStep clipped = step;
  clipped.grad_scale = step.grad_scale * clip_scale(global_norm(sum), clip);
  adamw_update(params, grads, m, v, N, clipped);
}

}  // namespace switchyard::backend
