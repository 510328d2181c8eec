// The activation memory a family's forward (and backward) pass takes: what a batch needs, and the
// two allocations (activations; the backward pass's scratch) planned once for the largest batch
// so far and re-cut into views for each batch.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "model/arena.h"
#include "model/batch_on_device.h"
#include "model/device_buffer.h"

namespace switchyard::model {

struct ActivationPlan {
  int rows = 0, logits = 0;
  bool per_layer = false;  // training: one set of activations per layer, and the scratch
  int64_t record = 0, attention_scratch = 0;  // the attention op's record and backward scratch

  bool covers(const ActivationPlan& need) const {
    return rows >= need.rows && logits >= need.logits && per_layer == need.per_layer &&
           record >= need.record && attention_scratch >= need.attention_scratch;
  }
  // What a pass over `batch` needs with attention of `spec` (records for training windows only).
  static ActivationPlan for_batch(const backend::Backend& backend, const BatchOnDevice& batch,
                                  const backend::ops::AttentionSpec& spec, bool for_training) {
    ActivationPlan need{.rows = batch.rows, .logits = batch.logits, .per_layer = for_training};
    if (batch.windows > 0) {
      need.record = static_cast<int64_t>(
          backend.attention_record_floats(spec, batch.windows, batch.window_length));
      if (for_training) {
        need.attention_scratch = static_cast<int64_t>(
            backend.attention_scratch_floats(spec, batch.windows, batch.window_length));
      }
    }
    return need;
  }
};

class ActivationStore {
 public:
  // The sizes the allocations hold (capacities for cut_views).
  const ActivationPlan& plan() const { return plan_; }

  // Makes the allocations cover `need` (growing them when they do not: cut(need, arena, scratch)
  // with counting arenas measures them), then cuts the views for `need` with cut.
  template <typename Cut>
  void prepare(backend::Backend& backend, const ActivationPlan& need, Cut&& cut) {
    if (!activations_.get() || !plan_.covers(need)) {
      plan_ = need;
      activations_ = DeviceBuffer();
      scratch_ = DeviceBuffer();
      Arena count_activations(nullptr), count_scratch(nullptr);
      cut(need, count_activations, count_scratch);
      activations_ = DeviceBuffer(backend, (count_activations.used() + 3) / 4);
      if (count_scratch.used() > 0) scratch_ = DeviceBuffer(backend, (count_scratch.used() + 3) / 4);
    }
    Arena activations(activations_.get()), scratch(scratch_.get());
    cut(need, activations, scratch);
  }

 private:
  ActivationPlan plan_;
  DeviceBuffer activations_, scratch_;
};

}  // namespace switchyard::model
