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

// std::max_element's answer (the first greatest value; a NaN only where it comes first), in two
// passes the compiler vectorises: the greatest value, then where it first is. The single pass's
// branch on every value cost 40 us over GPT-2's vocabulary, a token at a time.
int32_t first_greatest(std::span<const float> x) {
  if (x.empty() || std::isnan(x[0])) return 0;
  constexpr size_t kLanes = 16;  // independent running maxima: one vector's worth
  float lane[kLanes];
  std::fill(lane, lane + kLanes, x[0]);
  const size_t n = x.size(), whole = n - n % kLanes;
  for (size_t i = 0; i < whole; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
  }
  float greatest = x[0];  // NaNs compare false: skipped
  for (float v : lane) greatest = v > greatest ? v : greatest;
  for (size_t i = whole; i < n; ++i) greatest = x[i] > greatest ? x[i] : greatest;
  size_t i = 0;
  for (; i < whole; i += kLanes) {
    bool found = false;
    for (size_t l = 0; l < kLanes; ++l) found |= x[i + l] == greatest;
    if (found) break;
  }
  while (x[i] != greatest) ++i;
  return static_cast<int32_t>(i);
}

int32_t sample_token(std::span<const float> logits, const SamplingOptions& o, Rng& rng) {
  const int V = static_cast<int>(logits.size());
  if (o.temperature == 0.0f) return first_greatest(logits);
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
