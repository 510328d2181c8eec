// Learning rate: linear warmup from max_lr / warmup to max_lr, then cosine decay to min_lr at the
// last step.
#pragma once

namespace switchyard::train {

struct LrSchedule {
  float max_lr = 6e-4f;
  float min_lr = 6e-5f;
  int warmup_steps = 0;
  int total_steps = 1;

  // Learning rate for 0-based step `step`.
  float at(int step) const;
};

}  // namespace switchyard::train
