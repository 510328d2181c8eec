#include "model/sampler.h"

#include <algorithm>
#include <bit>
#include <cstdint>
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
// branch on every value cost 37 us over GPT-2's vocabulary, a token at a time.
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

// The candidates of a top-p draw without top-k, most likely first (ties: lower id first): as many
// of them as hold the nucleus (`nucleus` of the `total` weight), found by selection and then
// sorted, 256 at first and 4x more until they hold it. A trained model's nucleus is a few hundred
// tokens; sorting all 50,257 of GPT-2's vocabulary for every token (what a near-uniform
// distribution still needs) took 7 ms as a heap's partial sort.
template <typename ByLogit>
std::vector<int32_t> nucleus_candidates(const std::vector<double>& weights, double nucleus,
                                        ByLogit by_logit) {
  std::vector<int32_t> order(weights.size());
  std::iota(order.begin(), order.end(), 0);
  for (size_t c = 256;; c *= 4) {
    if (c >= order.size()) {
      std::sort(order.begin(), order.end(), by_logit);
      return order;
    }
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(c), order.end(), by_logit);
    double held = 0;
    for (size_t i = 0; i < c; ++i) held += weights[order[i]];
    // A margin for the walk's own rounding (it adds shares in another order).
    if (held >= nucleus * (1 + 1e-9)) {
      order.resize(c);
      std::sort(order.begin(), order.end(), by_logit);
      return order;
    }
  }
}

namespace {

// exp(x) for x <= 0 (a softmax weight), in arithmetic a loop of them vectorises: glibc's exp is a
// call per value, and a temperature draw over GPT-2's 50,257 logits spent most of its time there.
// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts, so that n ln2_hi
// is exact), exp(r) by its Taylor series to r^13 (|r| <= ln 2 / 2: the next term is below 1e-17 of
// the sum). Within a few ulp of std::exp; 0 below -708 (where 2^n leaves the normal range), NaN
// for NaN.
[[gnu::always_inline]] inline double exp_of_nonpositive(double x) {
  constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 0.693147180369123816490,
                   kLn2Lo = 1.90821492927058770002e-10, kRoundingShift = 6755399441055744.0;  // 1.5 * 2^52
  const double clamped = x < -708.0 ? -708.0 : (x > 0.0 ? 0.0 : x);  // NaN passes through
  const double n = (clamped * kLog2e + kRoundingShift) - kRoundingShift;  // round to nearest
  const double r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1 / 13!, then Horner's rule down to 1 / 0!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t scaled = std::bit_cast<int64_t>(p) + (static_cast<int64_t>(n) << 52);  // p * 2^n
  const double y = std::bit_cast<double>(scaled);
  return x < -708.0 ? 0.0 : (x != x ? x : y);
}

// The first i at which the running sum of weights[0 .. i] passes r (the last one if none does).
// Whole blocks are passed by their sums first: one chain of dependent subtractions over a whole
// vocabulary (a draw without top-k or top-p) took as long as computing its weights.
size_t first_past(const std::vector<double>& weights, double r) {
  constexpr size_t kBlock = 64;
  size_t i = 0;
  for (; i + kBlock <= weights.size(); i += kBlock) {
    double block = 0;
#pragma omp simd reduction(+ : block)
    for (size_t k = i; k < i + kBlock; ++k) block += weights[k];
    if (!(r - block >= 0)) break;  // passed inside this block (or a NaN weight)
    r -= block;
  }
  for (; i < weights.size(); ++i) {
    r -= weights[i];
    if (r < 0) return i;
  }
  return weights.size() - 1;
}

}  // namespace

// Built for three x86-64 levels and picked at load time: the model library is compiled for the
// baseline (two doubles a vector), and AVX-512's eight make a temperature draw several times faster.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
double softmax_weights(std::span<const float> logits, double max_logit, double temperature,
                       std::span<double> weights) {
  const float* x = logits.data();
  double* w = weights.data();
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (size_t i = 0; i < logits.size(); ++i) {
    w[i] = exp_of_nonpositive((static_cast<double>(x[i]) - max_logit) / temperature);
    total += w[i];
  }
  return total;
}

int32_t sample_token(std::span<const float> logits, const SamplingOptions& o, Rng& rng) {
  const int V = static_cast<int>(logits.size());
  if (o.temperature == 0.0f) return first_greatest(logits);
  const double max_logit = logits[first_greatest(logits)];
  auto weight = [&](int32_t i) {
    return exp_of_nonpositive((static_cast<double>(logits[i]) - max_logit) / o.temperature);
  };
  // Most likely first, ties by id; a NaN (a broken model's) ranks last, so that the order stays a
  // strict weak one, which sorting and selection need not to run off the array.
  auto rank = [&](int32_t i) { return std::isnan(logits[i]) ? -HUGE_VALF : logits[i]; };
  auto by_logit = [&](int32_t a, int32_t b) { return rank(a) > rank(b) || (rank(a) == rank(b) && a < b); };
  // The candidates in the order the draw walks them: the top k most likely first; without top-k,
  // the nucleus's most likely first for top-p; otherwise every token in id order.
  std::vector<int32_t> order;
  std::vector<double> probs;  // the candidates' weights, in that order
  double total = 0;           // the weight of every candidate, the softmax's normaliser
  if (o.top_k > 0 && o.top_k < V) {
    order.resize(V);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + o.top_k, order.end(), by_logit);
    order.resize(o.top_k);
    for (int32_t i : order) total += probs.emplace_back(weight(i));
  } else {
    std::vector<double> weights(V);
    total = softmax_weights(logits, max_logit, o.temperature, weights);
    if (o.top_p < 1.0f) {
      order = nucleus_candidates(weights, o.top_p * total, by_logit);
      for (int32_t i : order) probs.push_back(weights[i]);
    } else {
      order.resize(V);
      std::iota(order.begin(), order.end(), 0);
      probs = std::move(weights);
    }
  }
  double sum = total;
  if (o.top_p < 1.0f) {
    // The smallest most-likely-first set whose share reaches top_p.
    double cumulative = 0;
    size_t keep = order.size();
    for (size_t i = 0; i < order.size(); ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= o.top_p) {
        keep = i + 1;
        break;
      }
    }
    probs.resize(keep);
    order.resize(keep);
    sum = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  return order[first_past(probs, static_cast<double>(rng.uniform()) * sum)];
}

}  // namespace switchyard::model
