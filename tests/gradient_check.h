// What the kernel tests share for checking numbers in double precision: random vectors, a
// relative error that does not blow up on tiny entries, central finite differences, and the check
// that a backward pass accumulates onto gradients already there.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.h"

namespace switchyard {

using Vec = std::vector<double>;

// n values uniform in [-scale, scale), deterministic per seed.
inline Vec random_vec(size_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(n);
  for (double& x : v) x = scale * (2.0 * rng.uniform() - 1.0);
  return v;
}

inline std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// max |a - b| / max(max |b|, floor): a relative error that does not blow up on tiny entries.
inline double rel_error(const Vec& a, const Vec& b, double floor = 1e-3) {
  double diff = 0, scale = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / scale;
}

inline double rel_error(const std::vector<float>& a, const Vec& b, double floor = 1e-3) {
  return rel_error(Vec(a.begin(), a.end()), b, floor);
}

// Central differences of loss() with respect to every element of x (restored afterwards).
inline Vec numeric_grad(Vec& x, const std::function<double()>& loss, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = loss();
    x[i] = saved - h;
    const double minus = loss();
    x[i] = saved;
    g[i] = (plus - minus) / (2 * h);
  }
  return g;
}

// The analytic gradient accumulated on top of `prior` must equal prior + numeric.
inline void expect_grad(const Vec& accumulated, const Vec& prior, const Vec& numeric,
                        const char* what, double tolerance = 1e-6) {
  Vec analytic(accumulated.size());
  for (size_t i = 0; i < analytic.size(); ++i) analytic[i] = accumulated[i] - prior[i];
  EXPECT_LT(rel_error(analytic, numeric), tolerance) << what;
}

}  // namespace switchyard
