// Mean next-token cross-entropy of a model over a token sequence.
#pragma once

#include <cstdint>
#include <span>

#include "model/model.h"

namespace switchyard::train {

struct EvalResult {
  double loss = 0;        // mean cross-entropy in nats per predicted token
  double perplexity = 0;  // exp(loss)
  size_t tokens = 0;      // tokens predicted
  size_t windows = 0;
};

// Consecutive non-overlapping windows of T tokens: window i feeds tokens [iT, (i+1)T) and predicts
// [iT+1, (i+1)T+1); a trailing partial window is dropped. At most max_windows windows (0 = all),
// `batch` windows per forward pass. Throws Error when the data holds no full window.
EvalResult evaluate(model::Model& model, std::span<const uint32_t> tokens, int T, size_t max_windows,
                    int batch);

}  // namespace switchyard::train
