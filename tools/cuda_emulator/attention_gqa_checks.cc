// Checks of attention_kernels.cu's attention over windows for any ops::AttentionSpec (the
// functions over AttentionViews): grouped-query heads, sliding windows shorter and longer than
// the window of tokens, sinks, strided views, against the CPU backend's attention kernels in
// double.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"  // the CPU kernels' OpenMP flags
#include "backend/cpu/attention_kernels.h"
#pragma GCC diagnostic pop
#include "backend/cuda/attention_kernels.h"
#include "check_support.h"
#include "sections.h"

namespace checks {
namespace {

struct GqaCase {
  int B, T, H, KV, hd, window;
  bool sinks;
  size_t offset;  // elements the projection and out lie past 16-byte alignment
  bool quick;     // also run under --quick
};

std::string case_name(const GqaCase& c) {
  return fmt::format("B={} T={} heads {}/{} hd {}{}{}{}", c.B, c.T, c.H, c.KV, c.hd,
                     c.window ? fmt::format(" window {}", c.window) : "", c.sinks ? " sinks" : "",
                     c.offset ? fmt::format(" offset {}", c.offset) : "");
}

// A case's tensors: q | k | v side by side in one projection row of P elements (a few spare
// columns at the end), out and dout with rows wider than heads * head_dim.
struct GqaLayout {
  int64_t N, P, q_col, k_col, v_col, ldo, ld_dout, width;
  explicit GqaLayout(const GqaCase& c)
      : N(int64_t{c.B} * c.T),
        P(int64_t{c.H + 2 * c.KV} * c.hd + 3),
        q_col(0),
        k_col(int64_t{c.H} * c.hd),
        v_col(int64_t{c.H + c.KV} * c.hd),
        ldo(int64_t{c.H} * c.hd + 5),
        ld_dout(int64_t{c.H} * c.hd + 2),
        width(int64_t{c.H} * c.hd) {}
};

// Columns [col, col + width) of every row of a [rows, ld] matrix.
std::vector<double> columns(const std::vector<double>& x, int64_t rows, int64_t ld, int64_t col,
                            int64_t width) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(rows * width));
  for (int64_t r = 0; r < rows; ++r) {
    out.insert(out.end(), x.begin() + r * ld + col, x.begin() + r * ld + col + width);
  }
  return out;
}

template <typename Act>
void check_gqa_attention(const GqaCase& c, uint32_t seed) {
  const GqaLayout l(c);
  const double scale = 1 / std::sqrt(static_cast<double>(c.hd));
  const int group = c.H / c.KV;
  const std::vector<double> proj =
      rounded<Act>(random_values(static_cast<size_t>(l.N * l.P), -1.7, 1.7, seed));
  const std::vector<double> sinks = rounded<float>(random_values(c.H, -1, 2, seed + 1));
  const std::vector<float> sinks_f(sinks.begin(), sinks.end());
  cpu::AttentionGeometry g;
  g.batch = c.B;
  g.seq = c.T;
  g.heads = c.H;
  g.kv_heads = c.KV;
  g.head_dim = c.hd;
  g.window = c.window;
  g.ldq = g.ldk = g.ldv = l.P;
  g.ldo = l.width;
  const size_t n_out = static_cast<size_t>(l.N * l.width);
  const size_t n_att = static_cast<size_t>(c.B) * c.H * c.T * c.T;
  std::vector<double> out(n_out), att(n_att);
  cpu::attention_forward<double>(out.data(), att.data(), proj.data() + l.q_col,
                                 proj.data() + l.k_col, proj.data() + l.v_col,
                                 c.sinks ? sinks_f.data() : nullptr, g, scale);
  auto q_at = [&](int b, int t, int h) {
    return &proj[(static_cast<size_t>(b) * c.T + t) * l.P + l.q_col + h * c.hd];
  };
  auto k_at = [&](int b, int t, int kv) {
    return &proj[(static_cast<size_t>(b) * c.T + t) * l.P + l.k_col + kv * c.hd];
  };
  auto v_at = [&](int b, int t, int kv) {
    return &proj[(static_cast<size_t>(b) * c.T + t) * l.P + l.v_col + kv * c.hd];
  };
  auto p_at = [&](int b, int h, int t, int j) {
    return att[((static_cast<size_t>(b) * c.H + h) * c.T + t) * c.T + j];
  };
  auto first = [&](int t) { return c.window > 0 ? std::max(0, t - c.window + 1) : 0; };
  // lse, the sink's probability, score magnitudes and each output's term magnitudes.
  std::vector<double> lse(static_cast<size_t>(c.B) * c.H * c.T), p_sink(lse.size(), 0.0);
  std::vector<double> magnitude(n_out, 0.0);
  double score_magnitude = 0;
  for (int b = 0; b < c.B; ++b) {
    for (int h = 0; h < c.H; ++h) {
      const int kv = h / group;
      for (int t = 0; t < c.T; ++t) {
        double max = c.sinks ? sinks[h] : -INFINITY;
        std::vector<double> s;
        for (int j = first(t); j <= t; ++j) {
          double dot = 0, dot_magnitude = 0;
          for (int i = 0; i < c.hd; ++i) {
            dot += q_at(b, t, h)[i] * k_at(b, j, kv)[i];
            dot_magnitude += std::fabs(q_at(b, t, h)[i] * k_at(b, j, kv)[i]);
          }
          s.push_back(dot * scale);
          max = std::max(max, dot * scale);
          score_magnitude = std::max(score_magnitude, dot_magnitude * scale);
        }
        double sum = c.sinks ? std::exp(sinks[h] - max) : 0;
        for (double x : s) sum += std::exp(x - max);
        const size_t row = (static_cast<size_t>(b) * c.H + h) * c.T + t;
        lse[row] = max + std::log(sum);
        if (c.sinks) p_sink[row] = std::exp(sinks[h] - lse[row]);
        double* mag = &magnitude[(static_cast<size_t>(b) * c.T + t) * l.width + h * c.hd];
        for (int j = first(t); j <= t; ++j) {
          for (int i = 0; i < c.hd; ++i) mag[i] += p_at(b, h, t, j) * std::fabs(v_at(b, j, kv)[i]);
        }
      }
    }
  }
  const AttentionTolerance tol = attention_tolerance<Act>(c.T, score_magnitude);
  cuda::AttentionViews views;
  views.batch = c.B;
  views.seq = c.T;
  views.heads = c.H;
  views.kv_heads = c.KV;
  views.head_dim = c.hd;
  views.window = c.window;
  views.ldq = views.ldk = views.ldv = l.P;
  views.ldo = l.ldo;
  views.ld_dout = l.ld_dout;
  views.scale = static_cast<float>(scale);

  // The forward pass, kept for the backward check (its stored out and lse are the backward's
  // inputs, as in the model).
  Buffer<Act> pb(proj, c.offset);
  Buffer<Act> ob(static_cast<size_t>(l.N * l.ldo), c.offset);
  Buffer<float> lb(lse.size(), 1);
  Buffer<float> sb(sinks, 0);
  const Act* q = pb.data() + l.q_col;
  const Act* k = pb.data() + l.k_col;
  const Act* v = pb.data() + l.v_col;
  check(fmt::format("attention_forward (views) {} {}", type_name<Act>(), case_name(c)),
        [&](Verdict& ver) {
          cuda::attention_forward<Act>(ob.data(), lb.data(), q, k, v, c.sinks ? sb.data() : nullptr,
                                       views, nullptr);
          const std::vector<double> got_all = ob.values();
          attention_close(ver, columns(got_all, l.N, l.ldo, 0, l.width), out, magnitude, tol,
                          "out");
          // The spare columns of each out row stay as they were (NaN bytes).
          size_t touched = 0;
          for (int64_t r = 0; r < l.N; ++r) {
            for (int64_t col = l.width; col < l.ldo; ++col) {
              touched += !std::isnan(got_all[r * l.ldo + col]);
            }
          }
          ver.require(touched == 0,
                      fmt::format("{} elements past heads * head_dim written", touched));
          ver.within(compare(lb.values(), lse,
                             [&](size_t i) { return tol.element * std::fabs(lse[i]) + tol.lse; }),
                     "lse");
          ver.require(ob.guard_intact() && lb.guard_intact(), "wrote past the end");
        });

  check(
      fmt::format("attention_backward (views) {} {} (accumulates; deterministic)", type_name<Act>(),
                  case_name(c)),
      [&](Verdict& ver) {
        const std::vector<double> stored_out = columns(ob.values(), l.N, l.ldo, 0, l.width);
        const std::vector<double> dout_all =
            rounded<Act>(random_values(static_cast<size_t>(l.N * l.ld_dout), -1, 1, seed + 2));
        const std::vector<double> dout = columns(dout_all, l.N, l.ld_dout, 0, l.width);
        const std::vector<double> dproj0 =
            rounded<Act>(random_values(proj.size(), -1, 1, seed + 3));
        const std::vector<double> dsinks0 = rounded<float>(random_values(c.H, -1, 1, seed + 4));
        std::vector<double> dproj = dproj0, scratch(n_att);
        std::vector<float> dsinks_ref(dsinks0.begin(), dsinks0.end());
        cpu::attention_backward<double>(
            dproj.data() + l.q_col, dproj.data() + l.k_col, dproj.data() + l.v_col,
            c.sinks ? dsinks_ref.data() : nullptr, scratch.data(), dout.data(), att.data(),
            proj.data() + l.q_col, proj.data() + l.k_col, proj.data() + l.v_col,
            c.sinks ? sinks_f.data() : nullptr, g, scale);
        std::vector<double> want_dsinks(dsinks_ref.begin(), dsinks_ref.end());
        // The kernels form D = rowsum(dout * out) from the stored out (see the GPT-2 checks'
        // attention_backward_reference): correct the exact gradient for dD = D_exact - D_stored,
        // and gather the magnitudes of every gradient's terms.
        std::vector<double> magnitude_d(proj.size(), 0.0), magnitude_sinks(c.H, 0.0);
        for (int b = 0; b < c.B; ++b) {
          for (int h = 0; h < c.H; ++h) {
            const int kv = h / group;
            for (int t = 0; t < c.T; ++t) {
              const size_t orow = (static_cast<size_t>(b) * c.T + t) * l.width + h * c.hd;
              const size_t qrow = (static_cast<size_t>(b) * c.T + t) * l.P + l.q_col + h * c.hd;
              // The magnitudes are those of the terms of D and of each dp (the kernels sum
              // them in different orders, so dp - D carries rounding errors of that size).
              double dd = 0, d_magnitude = 0;
              for (int i = 0; i < c.hd; ++i) {
                dd += dout[orow + i] * (out[orow + i] - stored_out[orow + i]);
                d_magnitude += std::fabs(dout[orow + i] * stored_out[orow + i]);
              }
              const size_t lrow = (static_cast<size_t>(b) * c.H + h) * c.T + t;
              if (c.sinks) {
                want_dsinks[h] += p_sink[lrow] * dd;
                magnitude_sinks[h] += p_sink[lrow] * d_magnitude;
              }
              for (int j = first(t); j <= t; ++j) {
                const double p = p_at(b, h, t, j);
                const size_t krow = (static_cast<size_t>(b) * c.T + j) * l.P + l.k_col + kv * c.hd;
                const size_t vrow = (static_cast<size_t>(b) * c.T + j) * l.P + l.v_col + kv * c.hd;
                double dp_magnitude = 0;
                for (int i = 0; i < c.hd; ++i) {
                  dp_magnitude += std::fabs(dout[orow + i] * proj[vrow + i]);
                }
                const double w = scale * dd * p;
                const double ds_magnitude = scale * p * (dp_magnitude + d_magnitude);
                for (int i = 0; i < c.hd; ++i) {
                  dproj[qrow + i] += w * proj[krow + i];
                  dproj[krow + i] += w * proj[qrow + i];
                  magnitude_d[qrow + i] += ds_magnitude * std::fabs(proj[krow + i]);
                  magnitude_d[krow + i] += ds_magnitude * std::fabs(proj[qrow + i]);
                  magnitude_d[vrow + i] += p * std::fabs(dout[orow + i]);
                }
              }
            }
          }
        }
        // Every element is compared: the spare columns of the projection must keep dproj0.
        const size_t ws = cuda::attention_backward_workspace_bytes(c.B, c.T, c.H);
        std::unique_ptr<Buffer<Act>> first_run;
        for (int run = 0; run < 2; ++run) {
          Buffer<Act> db(dproj0, c.offset), dob(dout_all, 1);
          Buffer<float> dsb(dsinks0, 1);
          Buffer<unsigned char> work(ws, 4);
          cuda::attention_backward<Act>(db.data() + l.q_col, db.data() + l.k_col,
                                        db.data() + l.v_col, c.sinks ? dsb.data() : nullptr,
                                        work.data(), dob.data(), ob.data(), q, k, v,
                                        c.sinks ? sb.data() : nullptr, lb.data(), views, nullptr);
          if (run == 0) {
            // Accumulated onto dproj0: one rounding of Act each, within `element` of the result.
            attention_close(ver, db.values(), dproj, magnitude_d, tol, "dq|dk|dv");
            if (c.sinks) {
              ver.within(compare(dsb.values(), want_dsinks,
                                 [&](size_t h) {
                                   return tol.magnitude * magnitude_sinks[h] +
                                          4 * kF32 * std::fabs(dsinks0[h]) + 1e-7;
                                 }),
                         "dsinks");
            } else {
              ver.within(compare(dsb.values(), dsinks0, 0, 0), "dsinks untouched");
            }
            first_run = std::make_unique<Buffer<Act>>(proj.size());
            first_run->copy_from(db);
          } else {
            ver.require(db.same_bits(*first_run), "a second run differs");
          }
          ver.require(db.guard_intact() && dsb.guard_intact() && work.guard_intact(),
                      "wrote past the end");
        }
      });
}

}  // namespace

void check_attention_gqa() {
  // Grouped-query, multi-query and multi-head; windows shorter than the tokens (several key tiles
  // with a window, key tiles no row of a block can see), as long, and longer (full attention);
  // sinks; head sizes in every bucket; a single token; misaligned projections.
  const GqaCase all[] = {
      {2, 13, 4, 2, 18, 0, true, 0, true},     {1, 70, 6, 2, 64, 16, true, 0, true},
      {2, 37, 4, 1, 32, 100, false, 1, false}, {1, 1, 2, 1, 40, 4, true, 0, true},
      {1, 70, 2, 2, 128, 0, false, 0, false},  {1, 90, 4, 4, 64, 7, true, 3, false},
      {3, 9, 3, 3, 1, 2, false, 0, false},     {1, 100, 4, 2, 32, 64, true, 0, false},
  };
  uint32_t seed = 5000;
  for (const GqaCase& c : all) {
    seed += 10;
    if (!c.quick && g_quick) continue;
    check_gqa_attention<float>(c, seed);
    check_gqa_attention<bf16>(c, seed);
  }
  check("attention over views with no rows (no launch)", [](Verdict& v) {
    const long long before = emu::counters().launches;
    cuda::AttentionViews views;
    views.heads = views.kv_heads = 1;
    views.head_dim = 8;
    cuda::attention_forward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, views,
                                   nullptr);
    cuda::attention_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, nullptr, nullptr, views, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

}  // namespace checks
