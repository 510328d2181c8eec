// Checks of norm_rope_kernels.cu (RMSNorm forward and backward, rotary embeddings) against the CPU
// backend's kernels (norm_rope_kernels.h) instantiated in double.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"  // the CPU kernels' OpenMP flags
#include "backend/cpu/norm_rope_kernels.h"
#pragma GCC diagnostic pop
#include "backend/cuda/norm_rope_kernels.h"
#include "check_support.h"
#include "sections.h"

namespace switchyard::backend::cpu {
SWITCHYARD_CPU_NORM_ROPE_INSTANCES(, double)
}  // namespace switchyard::backend::cpu

namespace checks {
namespace {

// Pointer offsets of an RMSNorm call: activations, outputs, weight and rstd.
struct NormOffsets {
  size_t in, out, weight, rstd;
};
const NormOffsets kNormOffsets[] = {{0, 0, 0, 0}, {1, 3, 2, 1}, {0, 5, 1, 0}};

// Rows of every kind: centred, offset (mean 30: the squares are large), tiny (1e-3: epsilon
// matters), and one of zeros (rstd = 1 / sqrt(epsilon)).
std::vector<double> norm_rows(int N, int C, uint32_t seed) {
  std::vector<double> x = random_values(static_cast<size_t>(N) * C, -2, 2, seed);
  for (int n = 0; n < N; ++n) {
    for (int c = 0; c < C; ++c) {
      double& e = x[static_cast<size_t>(n) * C + c];
      e = n % 4 == 1 ? 30 + e : n % 4 == 2 ? 1e-3 * e : n == 3 ? 0.0 : e;
    }
  }
  return x;
}

// A float sum of C terms of one sign: each lane adds about C / 32 terms in turn, then 5 levels of
// shuffles: that many roundings of the total, at most.
double positive_sum_error(int C) { return kF32 * (8 + C / 32.0 + 5); }

template <typename Act>
void check_rmsnorm_forward(int N, int C, float epsilon) {
  check(fmt::format("rmsnorm_forward {} N={} C={} eps={} (alignments, in place)", type_name<Act>(),
                    N, C, epsilon),
        [&](Verdict& v) {
          const size_t n = static_cast<size_t>(N) * C;
          const std::vector<double> x = rounded<Act>(norm_rows(N, C, 81 + C));
          const std::vector<double> w = rounded<float>(random_values(C, 0.5, 1.5, 82 + C));
          std::vector<double> out(n), rstd(N);
          cpu::rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), N, C,
                                       static_cast<double>(epsilon));
          // rstd: the sum's error, halved by the square root, and a few roundings; out: that plus
          // two products and the rounding to Act.
          const double rstd_error = positive_sum_error(C) / 2 + 4 * kF32;
          auto tol_out = [&](size_t i) {
            return (rstd_error + 4 * kF32 + storage_tolerance<Act>()) * std::fabs(out[i]);
          };
          auto tol_rstd = [&](size_t i) { return rstd_error * rstd[i]; };
          std::unique_ptr<Buffer<Act>> first;
          for (const auto& o : kNormOffsets) {
            const std::string at =
                fmt::format("offsets {}/{}/{}/{}", o.in, o.out, o.weight, o.rstd);
            Buffer<Act> in(x, o.in), y(n, o.out);
            Buffer<float> weight(w, o.weight), s(N, o.rstd);
            cuda::rmsnorm_forward<Act>(y.data(), s.data(), in.data(), weight.data(), N, C, epsilon,
                                       nullptr);
            v.within(compare(y.values(), out, tol_out), "out, " + at);
            v.within(compare(s.values(), rstd, tol_rstd), "rstd, " + at);
            v.require(y.guard_intact() && s.guard_intact(), "wrote past the end");
            if (!first) {
              first = std::make_unique<Buffer<Act>>(n);
              first->copy_from(y);
            }
            v.require(y.same_bits(*first), "results depend on alignment (" + at + ")");
            cuda::rmsnorm_forward<Act>(in.data(), s.data(), in.data(), weight.data(), N, C, epsilon,
                                       nullptr);
            v.require(in.same_bits(*first), "in place (out == inp) differs");
          }
        });
}

template <typename Act>
void check_rmsnorm_backward(int N, int C) {
  check(
      fmt::format("rmsnorm_backward {} N={} C={} (accumulates; alignment-independent, "
                  "repeatable)",
                  type_name<Act>(), N, C),
      [&](Verdict& v) {
        const size_t n = static_cast<size_t>(N) * C;
        const std::vector<double> x = rounded<Act>(norm_rows(N, C, 91 + C));
        const std::vector<double> w = rounded<float>(random_values(C, 0.5, 1.5, 92 + C));
        const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 93 + C));
        const std::vector<double> dinp0 = rounded<Act>(random_values(n, -1, 1, 94 + C));
        const std::vector<double> dw0 = rounded<float>(random_values(C, -1, 1, 95 + C));
        // The saved rstd is an input: the double reference's, rounded to float.
        std::vector<double> out(n), rstd(N);
        cpu::rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
        rstd = rounded<float>(rstd);
        std::vector<double> dinp = dinp0, dw = dw0;
        cpu::rmsnorm_backward<double>(dinp.data(), dw.data(), dout.data(), x.data(), w.data(),
                                      rstd.data(), N, C);
        // dinp: s (w d - x s^2 proj / C): a float sum of C terms (proj) of any sign, so its
        // error is relative to the sum of their magnitudes; then one rounding to Act.
        // dweight: float sums of N terms.
        const double sum_error = kF32 * (8 + 2 * std::sqrt(static_cast<double>(C)) + C / 32.0);
        std::vector<double> tol_dinp(n), tol_dw(C);
        for (int c = 0; c < C; ++c) tol_dw[c] = std::fabs(dw0[c]);
        for (int r = 0; r < N; ++r) {
          const double s = rstd[r];
          double projection = 0;
          for (int c = 0; c < C; ++c) {
            const size_t i = static_cast<size_t>(r) * C + c;
            projection += std::fabs(w[c] * dout[i] * x[i]);
            tol_dw[c] += std::fabs(x[i] * s * dout[i]);
          }
          for (int c = 0; c < C; ++c) {
            const size_t i = static_cast<size_t>(r) * C + c;
            tol_dinp[i] = s * (8 * kF32 * std::fabs(w[c] * dout[i]) +
                               std::fabs(x[i]) * s * s * projection / C * sum_error) +
                          (4 * kF32 + storage_tolerance<Act>()) * std::fabs(dinp[i]);
          }
        }
        const double rows_error = kF32 * (8 + N / 4.0);
        for (int c = 0; c < C; ++c) tol_dw[c] *= rows_error;
        auto within = [](const std::vector<double>& t) { return [&t](size_t i) { return t[i]; }; };
        const size_t ws = cuda::rmsnorm_backward_workspace_bytes(N, C);
        std::unique_ptr<Buffer<Act>> first;
        std::unique_ptr<Buffer<float>> first_dw;
        const NormOffsets runs[] = {kNormOffsets[0], kNormOffsets[1], kNormOffsets[2],
                                    kNormOffsets[0]};
        for (const auto& o : runs) {
          const std::string at = fmt::format("offsets {}/{}/{}/{}", o.in, o.out, o.weight, o.rstd);
          Buffer<Act> in(x, o.in), d(dout, o.in), dx(dinp0, o.out);
          Buffer<float> weight(w, o.weight), s(rstd, o.rstd), dweight(dw0, o.weight);
          Buffer<unsigned char> work(ws, 4 * o.out);
          cuda::rmsnorm_backward<Act>(dx.data(), dweight.data(), d.data(), in.data(), weight.data(),
                                      s.data(), N, C, work.data(), nullptr);
          v.within(compare(dx.values(), dinp, within(tol_dinp)), "dinp, " + at);
          v.within(compare(dweight.values(), dw, within(tol_dw)), "dweight, " + at);
          v.require(dx.guard_intact() && dweight.guard_intact() && work.guard_intact(),
                    "wrote past the end");
          if (!first) {
            first = std::make_unique<Buffer<Act>>(n);
            first_dw = std::make_unique<Buffer<float>>(C);
            first->copy_from(dx);
            first_dw->copy_from(dweight);
          }
          v.require(dx.same_bits(*first) && dweight.same_bits(*first_dw),
                    "results depend on alignment or run (" + at + ")");
        }
        v.note(fmt::format("chunks: {}", ws / sizeof(float) / C));
      });
}

// Tables of `rows` positions: the rotation angles p / 10000^(2i / head_dim) times a YaRN-like
// attention factor, so that the map is a scaled rotation.
struct RopeTables {
  std::vector<double> cos, sin;
};

RopeTables rope_tables(int rows, int half) {
  RopeTables t;
  const double factor = 1.1875;
  for (int p = 0; p < rows; ++p) {
    for (int i = 0; i < half; ++i) {
      const double angle = p / std::pow(10000.0, static_cast<double>(i) / half);
      t.cos.push_back(static_cast<float>(factor * std::cos(angle)));
      t.sin.push_back(static_cast<float>(factor * std::sin(angle)));
    }
  }
  return t;
}

template <typename Act>
void check_rope(int N, int heads, int head_dim, int extra, size_t offset, bool transpose) {
  check(fmt::format("rope {} N={} heads={} head_dim={} row stride +{} offset {}{} (positions out "
                    "of the table give NaN)",
                    type_name<Act>(), N, heads, head_dim, extra, offset,
                    transpose ? " transposed" : ""),
        [&](Verdict& v) {
          const int half = head_dim / 2, table_rows = 40;
          const int64_t ldx = int64_t{heads} * head_dim + extra;
          const RopeTables t = rope_tables(table_rows, half);
          std::vector<double> x =
              rounded<Act>(random_values(static_cast<size_t>(N) * ldx, -3, 3, 101 + N + head_dim));
          std::vector<int32_t> positions(N);
          std::mt19937 rng(102 + N);
          for (int n = 0; n < N; ++n) {
            positions[n] = std::uniform_int_distribution<int>(0, table_rows - 1)(rng);
          }
          positions[0] = table_rows - 1;
          if (N > 2) positions[N - 2] = table_rows;  // outside the table
          if (N > 3) positions[1] = -1;
          std::vector<double> want = x;
          std::vector<int32_t> valid = positions;
          for (auto& p : valid) p = std::clamp(p, 0, table_rows - 1);
          cpu::rope<double>(want.data(), ldx, t.cos.data(), t.sin.data(), valid.data(), N, heads,
                            head_dim, transpose);
          std::vector<double> tol(want.size(), 0.0);
          for (int n = 0; n < N; ++n) {
            const bool bad = positions[n] < 0 || positions[n] >= table_rows;
            for (int h = 0; h < heads; ++h) {
              for (int i = 0; i < half; ++i) {
                const size_t lo =
                    static_cast<size_t>(n) * ldx + static_cast<size_t>(h) * head_dim + i;
                const size_t hi = lo + half;
                const size_t at = static_cast<size_t>(valid[n]) * half + i;
                const double terms = std::fabs(x[lo] * t.cos[at]) + std::fabs(x[hi] * t.sin[at]);
                for (size_t e : {lo, hi}) {
                  tol[e] = 3 * kF32 * terms + storage_tolerance<Act>() * std::fabs(want[e]);
                  if (bad) want[e] = NAN;
                }
              }
            }
          }
          Buffer<Act> xb(x, offset);
          Buffer<float> cb(t.cos, 1), sb(t.sin, 0);
          Buffer<int32_t> pb(positions, 0);
          cuda::rope<Act>(xb.data(), ldx, cb.data(), sb.data(), pb.data(), table_rows, N, heads,
                          head_dim, transpose, nullptr);
          // The columns past heads * head_dim keep their values exactly (tolerance 0).
          v.within(compare(xb.values(), want, [&](size_t i) { return tol[i]; }), "x");
          v.require(xb.guard_intact(), "wrote past the end");
        });
}

}  // namespace

void check_norm_rope() {
  // One warp's packs once (C <= 256), several times, and partial packs; 13 rows fill one block of
  // 8 rows and part of another.
  for (int C : cases({1, 7, 64, 255, 256, 1000, 2880}, {7, 1000})) {
    check_rmsnorm_forward<float>(13, C, 1e-5f);
    check_rmsnorm_forward<bf16>(13, C, 1e-5f);
    check_rmsnorm_backward<float>(13, C);
    check_rmsnorm_backward<bf16>(13, C);
  }
  check_rmsnorm_forward<float>(5, 300, 0.25f);  // an epsilon that matters for the tiny rows
  check_rmsnorm_forward<bf16>(1, 64, 1e-6f);    // a single row
  if (!g_quick) check_rmsnorm_backward<float>(200, 54);  // several chunks of rows
  for (bool transpose : {false, true}) {
    check_rope<float>(9, 3, 64, 5, 0, transpose);
    check_rope<bf16>(9, 3, 64, 5, 1, transpose);
    check_rope<float>(1, 1, 2, 0, 0, transpose);                  // a single row, one pair
    if (!g_quick) check_rope<bf16>(17, 6, 30, 96, 3, transpose);  // q and k in a wider projection
  }
  check("rmsnorm and rope with no rows (no launch, no workspace)", [](Verdict& v) {
    v.require(cuda::rmsnorm_backward_workspace_bytes(0, 5) == 0, "workspace for N=0");
    const long long before = emu::counters().launches;
    cuda::rmsnorm_forward<float>(nullptr, nullptr, nullptr, nullptr, 0, 5, 1e-5f, nullptr);
    cuda::rmsnorm_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 5,
                                  nullptr, nullptr);
    cuda::rope<float>(nullptr, 8, nullptr, nullptr, nullptr, 4, 0, 2, 4, false, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

}  // namespace checks
