#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace switchyard::model {

void validate(const SamplingOptions& o) {
  require(o.temperature >= 0 && std::isfinite(o.temperature), "temperature must be >= 0, got {}", o.temperature);
  require(o.top_k >= 0, "top-k must be >= 0, got {}", o.top_k);
  require(o.top_p > 0 && o.top_p <= 1, "top-p must be in (0, 1], got {}", o.top_p);
}

int32_t sample_token(std::span<const float> logits, const SamplingOptions& o, Rng& rng) {
  const int V = static_cast<int>(logits.size());
  if (o.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit, highest first; only the top k need ordering.
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  int k = (o.top_k > 0 && o.top_k < V) ? o.top_k : V;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k < V || o.top_p < 1.0f) {
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  }
  order.resize(k);
  float max_logit = logits[order[0]];
  if (k == V && o.top_p >= 1.0f) max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs(k);
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    probs[i] = std::exp((static_cast<double>(logits[order[i]]) - max_logit) / o.temperature);
    sum += probs[i];
  }
  if (o.top_p < 1.0f) {
    double cumulative = 0;
    int keep = k;
    for (int i = 0; i < k; ++i) {
      cumulative += probs[i] / sum;
      if (cumulative >= o.top_p) {
        keep = i + 1;
        break;
      }
    }
    probs.resize(keep);
    order.resize(keep);
    sum = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  double r = static_cast<double>(rng.uniform()) * sum;
  for (size_t i = 0; i < probs.size(); ++i) {
    r -= probs[i];
    if (r < 0) return order[i];
  }
  return order.back();
}

}  // namespace switchyard::model
