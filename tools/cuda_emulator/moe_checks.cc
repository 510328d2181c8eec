// Checks of moe_kernels.cu (routing, grouping, the clamped SwiGLU, combining, the load statistics)
// and of the row gather and scatter of encoder_kernels.cu over activations, against the CPU
// backend's kernels (moe_kernels.h) instantiated in double or plain loops.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"  // the CPU kernels' OpenMP flags
#include "backend/cpu/moe_kernels.h"
#pragma GCC diagnostic pop
#include "backend/cuda/encoder_kernels.h"
#include "backend/cuda/moe_kernels.h"
#include "check_support.h"
#include "sections.h"

namespace switchyard::backend::cpu {
SWITCHYARD_CPU_MOE_INSTANCES(, double)
}  // namespace switchyard::backend::cpu

namespace checks {
namespace {

// Router logits with ties (a row of equal logits, repeated values from a coarse grid), a NaN and
// an infinity, besides random ones.
std::vector<double> router_logits(int N, int E, uint32_t seed) {
  std::vector<double> l = random_values(static_cast<size_t>(N) * E, -4, 4, seed);
  for (int n = 0; n < N; ++n) {
    double* row = &l[static_cast<size_t>(n) * E];
    if (n % 5 == 1) {
      for (int e = 0; e < E; ++e) row[e] = std::round(row[e]);  // many ties
    } else if (n % 5 == 2) {
      for (int e = 0; e < E; ++e) row[e] = 0.5;  // all equal: the lowest experts win
    } else if (n % 5 == 3 && E > 2) {
      row[E / 2] = NAN;
    } else if (n % 5 == 4 && E > 2) {
      row[1] = INFINITY;
    }
  }
  return l;
}

template <typename Act>
void check_topk_routing(int N, int E, int k) {
  check(fmt::format("topk_routing {} N={} E={} k={} (the CPU's choices, ties and NaN)",
                    type_name<Act>(), N, E, k),
        [&](Verdict& v) {
          const std::vector<double> logits = rounded<Act>(router_logits(N, E, 111 + E + k));
          std::vector<int32_t> want_ids(static_cast<size_t>(N) * k);
          std::vector<double> want_w(want_ids.size());
          cpu::topk_routing<double>(want_ids.data(), want_w.data(), logits.data(), N, E, k);
          Buffer<Act> l(logits, 1);
          Buffer<int32_t> ids(want_ids.size(), 1);
          Buffer<float> w(want_w.size(), 0);
          cuda::topk_routing<Act>(ids.data(), w.data(), l.data(), N, E, k, nullptr);
          size_t wrong = 0;
          for (size_t i = 0; i < want_ids.size(); ++i) wrong += ids[i] != want_ids[i];
          v.require(wrong == 0, fmt::format("{} expert ids differ from the CPU's", wrong));
          // A softmax over k values: the exps (their arguments, up to 8 in size, rounded once,
          // which exp turns into a relative error of up to 8 ulps) and the sum.
          v.within(compare(w.values(), want_w, (24 + 2 * k) * kF32, 1e-30), "weights");
          v.require(ids.guard_intact() && w.guard_intact(), "wrote past the end");
        });
  check(fmt::format("topk_routing_backward {} N={} E={} k={} (accumulates)", type_name<Act>(), N, E,
                    k),
        [&](Verdict& v) {
          // Distinct ids per row, as the forward pass gives them, and one out of range (skipped).
          std::vector<int32_t> ids(static_cast<size_t>(N) * k);
          std::mt19937 rng(121 + E);
          std::vector<int32_t> experts(E);
          std::iota(experts.begin(), experts.end(), 0);
          for (int n = 0; n < N; ++n) {
            std::shuffle(experts.begin(), experts.end(), rng);
            std::copy_n(experts.begin(), k, ids.begin() + static_cast<size_t>(n) * k);
          }
          const std::vector<double> w = rounded<float>(random_values(ids.size(), 0, 1, 122 + E));
          const std::vector<double> dw = rounded<float>(random_values(ids.size(), -1, 1, 123 + E));
          const std::vector<double> d0 =
              rounded<Act>(random_values(static_cast<size_t>(N) * E, -1, 1, 124 + E));
          std::vector<double> want = d0;
          cpu::topk_routing_backward<double>(want.data(), dw.data(), w.data(), ids.data(), N, E, k);
          std::vector<int32_t> bad_ids = ids;
          if (N > 1) bad_ids[static_cast<size_t>(k)] = E;  // row 1's first choice: skipped
          if (N > 1) {
            // Without that choice's term, row 1 is the reference minus it.
            const double* wr = &w[static_cast<size_t>(k)];
            const double* dwr = &dw[static_cast<size_t>(k)];
            double weighted = 0;
            for (int j = 0; j < k; ++j) weighted += wr[j] * dwr[j];
            want[static_cast<size_t>(E) + ids[k]] -= wr[0] * (dwr[0] - weighted);
          }
          std::vector<double> tol(want.size());
          for (int n = 0; n < N; ++n) {
            double weighted = 0;
            for (int j = 0; j < k; ++j) weighted += std::fabs(w[n * k + j] * dw[n * k + j]);
            for (int e = 0; e < E; ++e) {
              tol[static_cast<size_t>(n) * E + e] =
                  (4 + k) * kF32 * (weighted + 1) +
                  storage_tolerance<Act>() * std::fabs(want[static_cast<size_t>(n) * E + e]);
            }
          }
          Buffer<Act> d(d0, 3);
          Buffer<float> wb(w, 0), dwb(dw, 1);
          Buffer<int32_t> ib(bad_ids, 0);
          cuda::topk_routing_backward<Act>(d.data(), dwb.data(), wb.data(), ib.data(), N, E, k,
                                           nullptr);
          v.within(compare(d.values(), want, [&](size_t i) { return tol[i]; }), "dlogits");
          v.require(d.guard_intact(), "wrote past the end");
        });
}

// ---- grouping ----

struct Grouping {
  std::vector<int32_t> order, rows, position, offsets;
};

// The stable grouping, by a plain loop: experts in order, each one's assignments ascending; ids
// outside [0, E) after all of them.
Grouping group_reference(const std::vector<int32_t>& ids, int k, int E) {
  const int A = static_cast<int>(ids.size());
  Grouping g;
  g.position.assign(A, -1);
  for (int e = 0; e <= E; ++e) {
    g.offsets.push_back(static_cast<int32_t>(g.order.size()));
    for (int a = 0; a < A; ++a) {
      const bool in = e < E ? ids[a] == e : (ids[a] < 0 || ids[a] >= E);
      if (!in) continue;
      g.position[a] = static_cast<int32_t>(g.order.size());
      g.order.push_back(a);
      g.rows.push_back(a / k);
    }
  }
  return g;
}

void check_group_by_expert(const std::string& what, const std::vector<int32_t>& ids, int k, int E) {
  const int A = static_cast<int>(ids.size());
  check(fmt::format("group_by_expert A={} k={} E={} ({})", A, k, E, what), [&](Verdict& v) {
    const Grouping want = group_reference(ids, k, E);
    Buffer<int32_t> in(ids, 1), order(A, 0), rows(A, 1), position(A, 2), offsets(E + 1, 3);
    Buffer<unsigned char> work(cuda::group_by_expert_workspace_bytes(A, E), 4);
    cuda::group_by_expert(order.data(), rows.data(), position.data(), offsets.data(), in.data(), A,
                          k, E, work.data(), nullptr);
    auto same = [](Buffer<int32_t>& got, const std::vector<int32_t>& w) {
      for (size_t i = 0; i < w.size(); ++i) {
        if (got[i] != w[i]) return false;
      }
      return true;
    };
    v.require(same(order, want.order), "order differs");
    v.require(same(rows, want.rows), "rows differ");
    v.require(same(position, want.position), "position differs");
    v.require(same(offsets, want.offsets), "offsets differ");
    v.require(order.guard_intact() && rows.guard_intact() && position.guard_intact() &&
                  offsets.guard_intact() && work.guard_intact(),
              "wrote past the end");
  });
}

std::vector<int32_t> random_ids(int A, int E, uint32_t seed) {
  std::vector<int32_t> ids(A);
  std::mt19937 rng(seed);
  for (auto& id : ids) id = std::uniform_int_distribution<int>(0, E - 1)(rng);
  return ids;
}

void check_grouping() {
  check_group_by_expert("one token, one choice", {0}, 1, 1);
  check_group_by_expert("random, several chunks", random_ids(1203, 32, 131), 4, 32);
  check_group_by_expert("random, one chunk, idle experts", random_ids(37, 128, 132), 1, 128);
  std::vector<int32_t> skewed = random_ids(600, 5, 133);
  for (size_t i = 0; i < skewed.size(); ++i) skewed[i] = i % 7 == 0 ? 1 : 3;  // two experts only
  check_group_by_expert("two experts take everything", skewed, 3, 5);
  std::vector<int32_t> bad = random_ids(300, 8, 134);
  bad[5] = 8;
  bad[270] = -1;
  check_group_by_expert("ids out of range go last", bad, 2, 8);
  check("group_by_expert with no assignments (offsets all zero)", [](Verdict& v) {
    Buffer<int32_t> offsets(5, 0);
    cuda::group_by_expert(nullptr, nullptr, nullptr, offsets.data(), nullptr, 0, 2, 4, nullptr,
                          nullptr);
    for (int e = 0; e < 5; ++e) v.require(offsets[e] == 0, "offset not zero");
    v.require(cuda::group_by_expert_workspace_bytes(0, 4) == 0, "workspace for A=0");
  });
}

// ---- clamped SwiGLU ----

// gate and up values across both clamps, on them, NaN, and far below (the sigmoid's tail).
std::vector<double> swiglu_inputs(size_t n, float limit, uint32_t seed) {
  std::vector<double> x = random_values(n, -10, 10, seed);
  const double special[] = {limit, -limit, limit, -limit, 50, -60, NAN, 0.25, -200, 3};
  for (size_t i = 0; i < n && i < std::size(special); ++i) x[i] = special[i];
  return x;
}

template <typename Act>
void check_clamped_swiglu(int A, int I, float alpha, float limit) {
  const size_t n = static_cast<size_t>(A) * I;
  const std::vector<double> x = rounded<Act>(swiglu_inputs(2 * n, limit, 141 + I));
  check(fmt::format("clamped_swiglu_forward {} A={} I={} alpha={} limit={} (clamps, NaN)",
                    type_name<Act>(), A, I, alpha, limit),
        [&](Verdict& v) {
          std::vector<double> want(n);
          cpu::clamped_swiglu_forward<double>(want.data(), x.data(), A, I, alpha, limit);
          auto tol = [&](size_t i) {
            const double g = std::min(x[2 * i], static_cast<double>(limit));
            return ((8 + 2 * std::fabs(alpha * g)) * kF32 + storage_tolerance<Act>()) *
                       std::fabs(want[i]) +
                   1e-30;
          };
          Buffer<Act> in(x, 1), out(n, 0);
          cuda::clamped_swiglu_forward<Act>(out.data(), in.data(), A, I, alpha, limit, nullptr);
          v.within(compare(out.values(), want, tol), "out");
          v.require(out.guard_intact(), "wrote past the end");
        });
  check(fmt::format("clamped_swiglu_backward {} A={} I={} (accumulates; bounds pass the gradient)",
                    type_name<Act>(), A, I),
        [&](Verdict& v) {
          const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 142 + I));
          const std::vector<double> d0 = rounded<Act>(random_values(2 * n, -1, 1, 143 + I));
          std::vector<double> want = d0;
          cpu::clamped_swiglu_backward<double>(want.data(), x.data(), dout.data(), A, I, alpha,
                                               limit);
          std::vector<double> tol(want.size());
          for (size_t i = 0; i < n; ++i) {
            const double g = std::min(x[2 * i], static_cast<double>(limit));
            const double u =
                std::clamp(x[2 * i + 1], -static_cast<double>(limit), static_cast<double>(limit));
            const double s = 1 / (1 + std::exp(std::min(-alpha * g, 700.0)));
            const double terms =
                std::fabs(dout[i]) *
                (std::fabs(u + 1) * (s + std::fabs(alpha * g) * s) + std::fabs(g) * s);
            const double rel = (16 + 4 * std::fabs(alpha * g)) * kF32;
            for (size_t e : {2 * i, 2 * i + 1}) {
              tol[e] = rel * terms + storage_tolerance<Act>() * std::fabs(want[e]) + 1e-30;
            }
          }
          Buffer<Act> in(x, 0), d(dout, 1), dx(d0, 2);
          cuda::clamped_swiglu_backward<Act>(dx.data(), in.data(), d.data(), A, I, alpha, limit,
                                             nullptr);
          v.within(compare(dx.values(), want, [&](size_t i) { return tol[i]; }), "dinp");
          v.require(dx.guard_intact(), "wrote past the end");
        });
}

// ---- combining ----

template <typename Act>
void check_expert_combine(int N, int C, int k) {
  const int A = N * k;
  const int E = 7;
  const Grouping g = group_reference(random_ids(A, E, 151 + C), k, E);
  const std::vector<double> expert_out =
      rounded<Act>(random_values(static_cast<size_t>(A) * C, -2, 2, 152 + C));
  const std::vector<double> w = rounded<float>(random_values(A, 0, 1, 153 + C));
  check(fmt::format("expert_combine_forward {} N={} C={} k={} (a bad position gives a NaN row)",
                    type_name<Act>(), N, C, k),
        [&](Verdict& v) {
          std::vector<double> want(static_cast<size_t>(N) * C);
          cpu::expert_combine_forward<double>(want.data(), expert_out.data(), w.data(),
                                              g.position.data(), N, C, k);
          std::vector<int32_t> position = g.position;
          position[static_cast<size_t>(A) - 1] = A;  // the last row's last choice
          for (int c = 0; c < C; ++c) want[static_cast<size_t>(N - 1) * C + c] = NAN;
          auto tol = [&](size_t i) {
            const size_t n = i / C, c = i % C;
            double terms = 0;
            for (int j = 0; j < k; ++j) {
              const size_t a = n * k + j;
              terms += std::fabs(w[a] * expert_out[static_cast<size_t>(g.position[a]) * C + c]);
            }
            return (k + 2) * kF32 * terms + storage_tolerance<Act>() * std::fabs(want[i]);
          };
          Buffer<Act> x(expert_out, 1), out(want.size(), 2);
          Buffer<float> wb(w, 0);
          Buffer<int32_t> p(position, 1);
          cuda::expert_combine_forward<Act>(out.data(), x.data(), wb.data(), p.data(), N, C, k,
                                            nullptr);
          v.within(compare(out.values(), want, tol), "out");
          v.require(out.guard_intact(), "wrote past the end");
        });
  check(fmt::format("expert_combine_backward {} N={} C={} k={} (accumulates)", type_name<Act>(), N,
                    C, k),
        [&](Verdict& v) {
          const std::vector<double> dout =
              rounded<Act>(random_values(static_cast<size_t>(N) * C, -1, 1, 154 + C));
          const std::vector<double> dx0 =
              rounded<Act>(random_values(static_cast<size_t>(A) * C, -1, 1, 155 + C));
          const std::vector<double> dw0 = rounded<float>(random_values(A, -1, 1, 156 + C));
          std::vector<double> want_dx = dx0, want_dw = dw0;
          cpu::expert_combine_backward<double>(want_dx.data(), want_dw.data(), dout.data(),
                                               expert_out.data(), w.data(), g.position.data(), N, C,
                                               k);
          auto tol_dx = [&](size_t i) {
            return 4 * kF32 * (std::fabs(dx0[i]) + 1) +
                   storage_tolerance<Act>() * std::fabs(want_dx[i]);
          };
          std::vector<double> tol_dw(A);
          for (int a = 0; a < A; ++a) {
            double terms = 0;
            for (int c = 0; c < C; ++c) {
              terms += std::fabs(dout[static_cast<size_t>(a / k) * C + c] *
                                 expert_out[static_cast<size_t>(g.position[a]) * C + c]);
            }
            tol_dw[a] = (8 + C / 32.0 + 5) * kF32 * terms + 2 * kF32 * std::fabs(want_dw[a]);
          }
          Buffer<Act> d(dout, 0), x(expert_out, 1), dx(dx0, 3);
          Buffer<float> wb(w, 1), dw(dw0, 0);
          Buffer<int32_t> p(g.position, 0);
          cuda::expert_combine_backward<Act>(dx.data(), dw.data(), d.data(), x.data(), wb.data(),
                                             p.data(), N, C, k, nullptr);
          v.within(compare(dx.values(), want_dx, tol_dx), "dexpert_out");
          v.within(compare(dw.values(), want_dw, [&](size_t i) { return tol_dw[i]; }), "dweights");
          v.require(dx.guard_intact() && dw.guard_intact(), "wrote past the end");
        });
}

// ---- the load statistics ----

template <typename Act>
void check_router_load(int N, int E, int k) {
  const std::vector<double> logits =
      rounded<Act>(random_values(static_cast<size_t>(N) * E, -5, 5, 161 + E));
  const std::vector<int32_t> ids = random_ids(N * k, E, 162 + E);
  // Softmax of a float row: the max, E exps summed, a reciprocal: relative errors of a few ulps
  // plus the sum's.
  const double p_error = (16 + E / 32.0) * kF32;
  check(fmt::format("router_load_stats {} N={} E={} k={} (accumulates in fp64)", type_name<Act>(),
                    N, E, k),
        [&](Verdict& v) {
          std::vector<double> totals0 = random_values(2 * static_cast<size_t>(E), 0, 3, 163);
          for (int e = 0; e < E; ++e) totals0[e] = std::round(totals0[e]);
          std::vector<double> want = totals0;
          cpu::router_load_stats<double>(want.data(), logits.data(), ids.data(), N, E, k);
          Buffer<double> totals(totals0, 1);
          Buffer<Act> l(logits, 0);
          Buffer<int32_t> ib(ids, 1);
          Buffer<unsigned char> work(cuda::router_load_workspace_bytes(N), 4);
          cuda::router_load_stats<Act>(totals.data(), l.data(), ib.data(), N, E, k, work.data(),
                                       nullptr);
          const std::vector<double> got = totals.values();
          v.within(compare(std::vector<double>(got.begin(), got.begin() + E),
                           std::vector<double>(want.begin(), want.begin() + E), 0, 0),
                   "counts (exact)");
          v.within(
              compare(std::vector<double>(got.begin() + E, got.end()),
                      std::vector<double>(want.begin() + E, want.end()),
                      [&](size_t e) { return p_error * (want[E + e] - totals0[E + e]) + 1e-12; }),
              "probability sums");
          v.require(totals.guard_intact() && work.guard_intact(), "wrote past the end");
        });
  check(fmt::format("router_load_backward {} N={} E={} (accumulates)", type_name<Act>(), N, E),
        [&](Verdict& v) {
          std::vector<double> totals(2 * static_cast<size_t>(E), 0.0);
          for (int32_t id : ids) totals[id] += 1;
          const double scale = 0.37;
          const std::vector<double> d0 =
              rounded<Act>(random_values(static_cast<size_t>(N) * E, -0.1, 0.1, 164 + E));
          std::vector<double> want = d0;
          cpu::router_load_backward<double>(want.data(), logits.data(), totals.data(), scale, N, E);
          // Per element: the float p carries p_error, and so does the expected count.
          std::vector<double> tol(want.size());
          for (int n = 0; n < N; ++n) {
            const double* l = &logits[static_cast<size_t>(n) * E];
            const double max = *std::max_element(l, l + E);
            double sum = 0, expected = 0;
            for (int e = 0; e < E; ++e) sum += std::exp(l[e] - max);
            for (int e = 0; e < E; ++e) expected += totals[e] * std::exp(l[e] - max) / sum;
            for (int e = 0; e < E; ++e) {
              const size_t i = static_cast<size_t>(n) * E + e;
              const double p = std::exp(l[e] - max) / sum;
              tol[i] = scale * 3 * p_error * p * (totals[e] + expected) +
                       2 * kF32 * std::fabs(d0[i]) + storage_tolerance<Act>() * std::fabs(want[i]);
            }
          }
          Buffer<Act> d(d0, 1), l(logits, 3);
          Buffer<double> tb(totals, 0);
          cuda::router_load_backward<Act>(d.data(), l.data(), tb.data(), static_cast<float>(scale),
                                          N, E, nullptr);
          v.within(compare(d.values(), want, [&](size_t i) { return tol[i]; }), "dlogits");
          v.require(d.guard_intact(), "wrote past the end");
        });
}

// ---- the row gather and its scatter (encoder_kernels.cu over activation rows) ----

void check_row_gather_and_scatter(int A, int N, int C) {
  check(fmt::format("row gather bf16 A={} N={} C={} (encoder_forward over bf16 rows; bit-exact)", A,
                    N, C),
        [&](Verdict& v) {
          const std::vector<double> table =
              rounded<bf16>(random_values(static_cast<size_t>(N) * C, -3, 3, 171 + C));
          const std::vector<int32_t> rows = random_ids(A, N, 172 + C);
          std::vector<double> want(static_cast<size_t>(A) * C);
          for (int a = 0; a < A; ++a) {
            std::copy_n(table.begin() + static_cast<size_t>(rows[a]) * C, C,
                        want.begin() + static_cast<size_t>(a) * C);
          }
          for (size_t offset : {0, 1}) {
            Buffer<bf16> t(table, offset), out(want.size(), 1 - offset);
            Buffer<int32_t> r(rows, 0);
            cuda::encoder_forward<bf16>(out.data(), r.data(), t.data(), nullptr,
                                        static_cast<const float*>(nullptr), A, C, nullptr);
            v.within(compare(out.values(), want, 0, 0), fmt::format("offset {}", offset));
            v.require(out.guard_intact(), "wrote past the end");
          }
        });
  check(fmt::format("row scatter bf16 A={} N={} C={} (encoder_backward onto bf16 rows: fp32 sums "
                    "in row order, one rounding; bit-exact)",
                    A, N, C),
        [&](Verdict& v) {
          const std::vector<double> dout =
              rounded<bf16>(random_values(static_cast<size_t>(A) * C, -1, 1, 173 + C));
          const std::vector<double> d0 =
              rounded<bf16>(random_values(static_cast<size_t>(N) * C, -1, 1, 174 + C));
          const std::vector<int32_t> rows = random_ids(A, N, 175 + C);
          std::vector<float> sums(d0.begin(), d0.end());
          for (int a = 0; a < A; ++a) {
            for (int c = 0; c < C; ++c) {
              sums[static_cast<size_t>(rows[a]) * C + c] +=
                  static_cast<float>(dout[static_cast<size_t>(a) * C + c]);
            }
          }
          std::vector<double> want(sums.begin(), sums.end());
          for (auto& x : want) x = stored<bf16>(x);
          const size_t ws = cuda::encoder_backward_workspace_bytes(A, N, 0);
          for (size_t offset : {0, 1}) {
            Buffer<bf16> d(dout, offset), dt(d0, 1 - offset);
            Buffer<int32_t> r(rows, 0);
            Buffer<unsigned char> work(ws, 3 * offset);
            cuda::encoder_backward<bf16>(dt.data(), N, nullptr, 0, d.data(), r.data(), nullptr, A,
                                         C, work.data(), nullptr);
            v.within(compare(dt.values(), want, 0, 0), fmt::format("offset {}", offset));
            v.require(dt.guard_intact() && work.guard_intact(), "wrote past the end");
          }
        });
}

}  // namespace

void check_moe() {
  for (const auto& [N, E, k] : cases<std::tuple<int, int, int>>(
           {{1, 1, 1}, {37, 8, 2}, {300, 32, 4}, {13, 128, 4}, {9, 5, 5}, {5, 40, 32}},
           {{1, 1, 1}, {37, 8, 2}, {13, 128, 4}})) {
    check_topk_routing<float>(N, E, k);
    check_topk_routing<bf16>(N, E, k);
  }
  check_grouping();
  for (const auto& [A, I] : cases<std::tuple<int, int>>({{1, 1}, {7, 33}, {64, 200}}, {{7, 33}})) {
    check_clamped_swiglu<float>(A, I, 1.702f, 7.0f);
    check_clamped_swiglu<bf16>(A, I, 1.702f, 7.0f);
  }
  check_clamped_swiglu<float>(5, 16, 0.5f, 2.0f);  // other constants
  for (const auto& [N, C, k] :
       cases<std::tuple<int, int, int>>({{1, 1, 1}, {9, 70, 2}, {20, 300, 4}}, {{9, 70, 2}})) {
    check_expert_combine<float>(N, C, k);
    check_expert_combine<bf16>(N, C, k);
  }
  for (const auto& [N, E, k] :
       cases<std::tuple<int, int, int>>({{1, 4, 1}, {45, 32, 4}, {300, 8, 2}}, {{45, 32, 4}})) {
    check_router_load<float>(N, E, k);
    check_router_load<bf16>(N, E, k);
  }
  check_row_gather_and_scatter(1, 1, 5);
  check_row_gather_and_scatter(90, 23, 130);
  check("moe kernels with no rows (no launch)", [](Verdict& v) {
    const long long before = emu::counters().launches;
    cuda::topk_routing<float>(nullptr, nullptr, nullptr, 0, 4, 2, nullptr);
    cuda::topk_routing_backward<float>(nullptr, nullptr, nullptr, nullptr, 0, 4, 2, nullptr);
    cuda::clamped_swiglu_forward<float>(nullptr, nullptr, 0, 4, 1, 1, nullptr);
    cuda::clamped_swiglu_backward<float>(nullptr, nullptr, nullptr, 0, 4, 1, 1, nullptr);
    cuda::expert_combine_forward<float>(nullptr, nullptr, nullptr, nullptr, 0, 4, 2, nullptr);
    cuda::expert_combine_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4,
                                         2, nullptr);
    cuda::router_load_stats<float>(nullptr, nullptr, nullptr, 0, 4, 2, nullptr, nullptr);
    cuda::router_load_backward<float>(nullptr, nullptr, nullptr, 1, 0, 4, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

}  // namespace checks
