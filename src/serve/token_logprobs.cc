#include "serve/token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace switchyard::serve {
namespace {

// log(sum(exp(logits))), in double and shifted by the maximum so that nothing overflows.
double log_sum_exp(std::span<const float> logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  return max + std::log(sum);
}

}  // namespace

GeneratedToken token_with_logprobs(std::span<const float> logits, int32_t token, int top) {
  const double lse = log_sum_exp(logits);
  auto logprob = [&](int32_t t) {
    return TokenLogprob{t, static_cast<float>(static_cast<double>(logits[t]) - lse)};
  };
  GeneratedToken out{.token = token, .chosen = logprob(token), .top = {}};
  const int k = std::min<int>(top, static_cast<int>(logits.size()));
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < k; ++i) out.top.push_back(logprob(order[i]));
  return out;
}

}  // namespace switchyard::serve
