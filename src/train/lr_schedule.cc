#include "train/lr_schedule.h"

#include <cmath>

namespace switchyard::train {

float LrSchedule::at(int step) const {
  if (step < warmup_steps) return max_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  int decay_steps = total_steps - warmup_steps;
  if (decay_steps <= 1) return max_lr;
  double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps - 1);
  if (progress > 1.0) progress = 1.0;
  double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return static_cast<float>(min_lr + (max_lr - min_lr) * cosine);
}

}  // namespace switchyard::train
