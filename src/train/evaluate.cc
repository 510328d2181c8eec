#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "data/batch_loader.h"

namespace switchyard::train {

EvalResult evaluate(model::Model& model, std::span<const uint32_t> tokens, int T, size_t max_windows,
                    int batch) {
  require(T > 0, "evaluation sequence length must be positive, got {}", T);
  require(batch > 0, "evaluation batch must be positive, got {}", batch);
  size_t windows = data::count_eval_windows(tokens.size(), T);
  require(windows > 0, "evaluation data holds {} tokens, fewer than one window of {} + 1", tokens.size(), T);
  if (max_windows > 0) windows = std::min(windows, max_windows);

  EvalResult result;
  double loss_sum = 0;
  std::vector<int32_t> inputs, targets;
  for (size_t first = 0; first < windows; first += batch) {
    int B = static_cast<int>(std::min<size_t>(batch, windows - first));
    inputs.resize(static_cast<size_t>(B) * T);
    targets.resize(inputs.size());
    for (int b = 0; b < B; ++b) {
      size_t start = (first + b) * static_cast<size_t>(T);
      for (int t = 0; t < T; ++t) {
        inputs[b * T + t] = tokens[start + t];
        targets[b * T + t] = tokens[start + t + 1];
      }
    }
    // Inference: no activations kept for a backward pass.
    model.forward(model::Batch::windows(inputs.data(), targets.data(), B, T));
    for (float loss : model.losses_to_host()) loss_sum += loss;
  }
  result.windows = windows;
  result.tokens = windows * static_cast<size_t>(T);
  result.loss = loss_sum / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.loss);
  return result;
}

}  // namespace switchyard::train
