// Checks of expert_linear_kernels.cu (the grouped expert products, forward over fp32, bf16 and
// MXFP4 weights, and backward) against plain loops in double over the decoded weights (MXFP4
// decoded by core/dtype's decode_mxfp4_block).
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/expert_linear_kernels.h"
#include "check_support.h"
#include "core/dtype.h"
#include "sections.h"

namespace checks {
namespace {

using cuda::WeightFormat;

const char* format_name(WeightFormat f) {
  return f == WeightFormat::kF32 ? "f32" : f == WeightFormat::kBF16 ? "bf16" : "mxfp4";
}

// Weights [E, OC, C] in one format: their bytes as the kernel reads them, and their values.
struct StoredWeights {
  WeightFormat format;
  std::vector<double> values;   // decoded, [E, OC, C]
  std::vector<double> dense;    // fp32 / bf16 values to put in a Buffer
  std::vector<uint8_t> codes;   // MXFP4: [E, OC, C / 2]
  std::vector<uint8_t> scales;  // MXFP4: [E, OC, C / 32]
};

StoredWeights make_weights(WeightFormat format, int E, int OC, int C, uint32_t seed) {
  StoredWeights w{format, {}, {}, {}, {}};
  const size_t n = static_cast<size_t>(E) * OC * C;
  if (format != WeightFormat::kMXFP4) {
    w.values = random_values(n, -1, 1, seed);
    w.values = format == WeightFormat::kF32 ? rounded<float>(w.values) : rounded<bf16>(w.values);
    w.dense = w.values;
    return w;
  }
  // Random codes; scales around 2^-3, and the extremes 0 (2^-127, subnormal products) and 254.
  std::mt19937 rng(seed);
  w.codes.resize(n / 2);
  w.scales.resize(n / 32);
  for (auto& b : w.codes) b = static_cast<uint8_t>(rng());
  for (auto& s : w.scales) s = static_cast<uint8_t>(120 + rng() % 8);
  w.scales[0] = 0;
  if (w.scales.size() > 3) w.scales[3] = 131;
  w.values.resize(n);
  for (size_t block = 0; block < n / 32; ++block) {
    float decoded[32];
    switchyard::decode_mxfp4_block(&w.codes[16 * block], w.scales[block], decoded);
    for (int i = 0; i < 32; ++i) w.values[32 * block + i] = decoded[i];
  }
  return w;
}

// The weights in the kernel's memory: one Buffer of the right element type.
struct WeightBuffers {
  std::unique_ptr<Buffer<float>> f32;
  std::unique_ptr<Buffer<bf16>> b16;
  std::unique_ptr<Buffer<uint8_t>> codes, scales;
  cuda::ExpertWeights view;
};

WeightBuffers place(const StoredWeights& w, size_t offset) {
  WeightBuffers b;
  b.view.format = w.format;
  if (w.format == WeightFormat::kF32) {
    b.f32 = std::make_unique<Buffer<float>>(w.dense, offset);
    b.view.data = b.f32->data();
  } else if (w.format == WeightFormat::kBF16) {
    b.b16 = std::make_unique<Buffer<bf16>>(w.dense, offset);
    b.view.data = b.b16->data();
  } else {
    b.codes = std::make_unique<Buffer<uint8_t>>(w.codes, offset);
    b.scales = std::make_unique<Buffer<uint8_t>>(w.scales, 3);
    b.view.data = b.codes->data();
    b.view.scales = b.scales->data();
  }
  return b;
}

std::vector<int32_t> offsets_of(const std::vector<int>& rows) {
  std::vector<int32_t> offsets = {0};
  for (int r : rows) offsets.push_back(offsets.back() + r);
  return offsets;
}

std::string rows_name(const std::vector<int>& rows) {
  std::string s;
  for (size_t e = 0; e < rows.size() && e < 8; ++e) s += fmt::format("{}{}", e ? "/" : "", rows[e]);
  return rows.size() > 8 ? s + fmt::format("/... ({} experts)", rows.size()) : s;
}

template <typename Act>
void check_forward(WeightFormat format, const std::vector<int>& rows, int C, int OC, bool bias,
                   uint32_t seed) {
  const int E = static_cast<int>(rows.size());
  const std::vector<int32_t> offsets = offsets_of(rows);
  const int A = offsets.back();
  check(fmt::format("expert_linear_forward {} weights {} rows {} C={} OC={}{} (row alone: same "
                    "bits)",
                    type_name<Act>(), format_name(format), rows_name(rows), C, OC,
                    bias ? " bias" : ""),
        [&](Verdict& v) {
          const StoredWeights w = make_weights(format, E, OC, C, seed);
          const std::vector<double> x =
              rounded<Act>(random_values(static_cast<size_t>(A) * C, -2, 2, seed + 1));
          const std::vector<double> b =
              rounded<float>(random_values(static_cast<size_t>(E) * OC, -1, 1, seed + 2));
          std::vector<double> want(static_cast<size_t>(A) * OC), tol(want.size());
          for (int e = 0; e < E; ++e) {
            for (int g = offsets[e]; g < offsets[e + 1]; ++g) {
              for (int o = 0; o < OC; ++o) {
                double sum = 0, terms = 0;
                const double* wr = &w.values[(static_cast<size_t>(e) * OC + o) * C];
                for (int c = 0; c < C; ++c) {
                  sum += x[static_cast<size_t>(g) * C + c] * wr[c];
                  terms += std::fabs(x[static_cast<size_t>(g) * C + c] * wr[c]);
                }
                const double bo = bias ? b[static_cast<size_t>(e) * OC + o] : 0.0;
                const size_t i = static_cast<size_t>(g) * OC + o;
                want[i] = sum + bo;
                // A float chain of C fused multiply-adds, then the bias and the rounding to Act.
                tol[i] = (C + 2) * kF32 * terms + 2 * kF32 * std::fabs(bo) +
                         storage_tolerance<Act>() * std::fabs(want[i]);
              }
            }
          }
          const WeightBuffers wb = place(w, 1);
          Buffer<Act> in(x, 1), out(want.size(), 0);
          Buffer<float> bb(b, 2);
          Buffer<int32_t> off(offsets, 0);
          cuda::expert_linear_forward<Act>(out.data(), in.data(), wb.view,
                                           bias ? bb.data() : nullptr, off.data(), A, E, C, OC,
                                           nullptr);
          v.within(compare(out.values(), want, [&](size_t i) { return tol[i]; }), "out");
          v.require(out.guard_intact(), "wrote past the end");
          // Batch invariance: the last expert with rows, given only its last row, gives that row
          // the same bits.
          int e = E - 1;
          while (rows[e] == 0) --e;
          const int g = offsets[e + 1] - 1;
          std::vector<int32_t> alone(E + 1, 0);
          for (int i = e + 1; i <= E; ++i) alone[i] = 1;
          const std::vector<double> row(x.begin() + static_cast<size_t>(g) * C,
                                        x.begin() + static_cast<size_t>(g + 1) * C);
          Buffer<Act> in1(row, 0), out1(OC, 0);
          Buffer<int32_t> off1(alone, 0);
          cuda::expert_linear_forward<Act>(out1.data(), in1.data(), wb.view,
                                           bias ? bb.data() : nullptr, off1.data(), 1, E, C, OC,
                                           nullptr);
          bool same = true;
          for (int o = 0; o < OC; ++o) {
            same = same &&
                   std::memcmp(&out1[o], &out[static_cast<size_t>(g) * OC + o], sizeof(Act)) == 0;
          }
          v.require(same, "a row alone differs from the same row among others");
        });
}

template <typename Act>
void check_backward(WeightFormat format, const std::vector<int>& rows, int C, int OC, bool dinp,
                    bool dbias, uint32_t seed) {
  const int E = static_cast<int>(rows.size());
  const std::vector<int32_t> offsets = offsets_of(rows);
  const int A = offsets.back();
  check(fmt::format("expert_linear_backward {} weights {} rows {} C={} OC={}{}{} (accumulates; "
                    "idle experts untouched)",
                    type_name<Act>(), format_name(format), rows_name(rows), C, OC,
                    dinp ? " dinp" : "", dbias ? " dbias" : ""),
        [&](Verdict& v) {
          const StoredWeights w = make_weights(format, E, OC, C, seed);
          const size_t nx = static_cast<size_t>(A) * C, nd = static_cast<size_t>(A) * OC;
          const size_t nw = static_cast<size_t>(E) * OC * C, nb = static_cast<size_t>(E) * OC;
          const std::vector<double> x = rounded<Act>(random_values(nx, -2, 2, seed + 1));
          const std::vector<double> d = rounded<Act>(random_values(nd, -1, 1, seed + 2));
          const std::vector<double> dx0 = rounded<Act>(random_values(nx, -1, 1, seed + 3));
          const std::vector<double> dw0 = rounded<float>(random_values(nw, -1, 1, seed + 4));
          const std::vector<double> db0 = rounded<float>(random_values(nb, -1, 1, seed + 5));
          std::vector<double> want_dx = dx0, want_dw = dw0, want_db = db0;
          std::vector<double> tol_dx(nx), tol_dw(nw), tol_db(nb);
          for (int e = 0; e < E; ++e) {
            const int first = offsets[e], end = offsets[e + 1], n = end - first;
            for (int g = first; g < end; ++g) {
              for (int c = 0; c < C; ++c) {
                double sum = 0, terms = 0;
                for (int o = 0; o < OC; ++o) {
                  const double t = d[static_cast<size_t>(g) * OC + o] *
                                   w.values[(static_cast<size_t>(e) * OC + o) * C + c];
                  sum += t;
                  terms += std::fabs(t);
                }
                const size_t i = static_cast<size_t>(g) * C + c;
                want_dx[i] += sum;
                tol_dx[i] = (OC + 2) * kF32 * terms + 2 * kF32 * std::fabs(dx0[i]) +
                            storage_tolerance<Act>() * std::fabs(want_dx[i]);
              }
            }
            for (int o = 0; o < OC; ++o) {
              const size_t bi = static_cast<size_t>(e) * OC + o;
              double bsum = 0, bterms = 0;
              for (int g = first; g < end; ++g) {
                bsum += d[static_cast<size_t>(g) * OC + o];
                bterms += std::fabs(d[static_cast<size_t>(g) * OC + o]);
              }
              want_db[bi] += bsum;
              tol_db[bi] = (n + 2) * kF32 * bterms + 2 * kF32 * std::fabs(db0[bi]);
              for (int c = 0; c < C; ++c) {
                double sum = 0, terms = 0;
                for (int g = first; g < end; ++g) {
                  const double t =
                      d[static_cast<size_t>(g) * OC + o] * x[static_cast<size_t>(g) * C + c];
                  sum += t;
                  terms += std::fabs(t);
                }
                const size_t i = bi * C + c;
                want_dw[i] += sum;
                tol_dw[i] = (n + 2) * kF32 * terms + 2 * kF32 * std::fabs(dw0[i]);
              }
            }
          }
          const WeightBuffers wb = place(w, 2);
          Buffer<Act> in(x, 0), dout(d, 1), dx(dx0, 1);
          Buffer<float> dw(dw0, 1), db(db0, 0);
          Buffer<int32_t> off(offsets, 1);
          cuda::expert_linear_backward<Act>(dinp ? dx.data() : nullptr, dw.data(),
                                            dbias ? db.data() : nullptr, dout.data(), in.data(),
                                            wb.view, off.data(), A, E, C, OC, nullptr);
          if (!dinp) want_dx = dx0;
          if (!dbias) want_db = db0;
          auto within = [](const std::vector<double>& t) {
            return [&t](size_t i) { return t[i]; };
          };
          v.within(compare(dx.values(), want_dx, within(tol_dx)), dinp ? "dinp" : "dinp untouched");
          v.within(compare(dw.values(), want_dw, within(tol_dw)), "dweight");
          v.within(compare(db.values(), want_db, within(tol_db)),
                   dbias ? "dbias" : "dbias untouched");
          // An expert without rows keeps its gradients bit for bit.
          bool idle_kept = true;
          for (int e = 0; e < E; ++e) {
            if (rows[e] != 0) continue;
            for (size_t i = static_cast<size_t>(e) * OC * C;
                 i < static_cast<size_t>(e + 1) * OC * C; ++i) {
              idle_kept = idle_kept && static_cast<double>(dw[i]) == dw0[i];
            }
          }
          v.require(idle_kept, "an expert without rows got a weight gradient");
          v.require(dx.guard_intact() && dw.guard_intact() && db.guard_intact(),
                    "wrote past the end");
        });
}

// Offsets out of order and beyond A: the kernels stay inside their operands.
void check_bad_offsets() {
  check("expert_linear with offsets beyond the rows (writes stay inside)", [](Verdict& v) {
    const int E = 3, A = 10, C = 32, OC = 9;
    const StoredWeights w = make_weights(WeightFormat::kMXFP4, E, OC, C, 191);
    const std::vector<int32_t> offsets = {0, 25, -4, 40};
    const std::vector<double> x = random_values(static_cast<size_t>(A) * C, -1, 1, 192);
    const WeightBuffers wb = place(w, 0);
    Buffer<float> in(x, 0), out(static_cast<size_t>(A) * OC, 0);
    Buffer<float> dx(static_cast<size_t>(A) * C, 0), dw(static_cast<size_t>(E) * OC * C, 0);
    Buffer<float> dout(std::vector<double>(static_cast<size_t>(A) * OC, 1.0), 0);
    Buffer<int32_t> off(offsets, 0);
    cuda::expert_linear_forward<float>(out.data(), in.data(), wb.view, nullptr, off.data(), A, E, C,
                                       OC, nullptr);
    const StoredWeights w32 = make_weights(WeightFormat::kF32, E, OC, C, 193);
    const WeightBuffers wb32 = place(w32, 0);
    cuda::expert_linear_backward<float>(dx.data(), dw.data(), nullptr, dout.data(), in.data(),
                                        wb32.view, off.data(), A, E, C, OC, nullptr);
    v.require(out.guard_intact() && dx.guard_intact() && dw.guard_intact(), "wrote past the end");
  });
}

}  // namespace

void check_expert_linear() {
  uint32_t seed = 4000;
  const WeightFormat formats[] = {WeightFormat::kF32, WeightFormat::kBF16, WeightFormat::kMXFP4};
  // An idle expert, one with more than a 64-row tile, single rows; outputs past one 64-wide tile.
  const std::vector<int> mixed = {3, 0, 70, 1};
  for (WeightFormat f : formats) {
    seed += 10;
    check_forward<float>(f, mixed, 96, 70, true, seed);
    check_forward<bf16>(f, mixed, 96, 70, true, seed);
    if (!g_quick) check_forward<bf16>(f, {1}, 64, 5, false, seed + 1);  // a single token
  }
  // Sizes that are multiples of nothing (fp32 and bf16 weights only: MXFP4 needs C % 32 == 0).
  check_forward<float>(WeightFormat::kF32, {5, 2, 0}, 37, 65, false, seed + 2);
  check_forward<bf16>(WeightFormat::kBF16, {0, 9, 1}, 33, 3, true, seed + 3);
  if (!g_quick) {
    // Many experts, most idle or with one row, as in decoding.
    std::vector<int> many(32, 0);
    for (int e = 0; e < 32; e += 3) many[e] = 1 + e % 4;
    check_forward<bf16>(WeightFormat::kMXFP4, many, 64, 40, true, seed + 4);
  }
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kBF16}) {
    seed += 10;
    check_backward<float>(f, mixed, 45, 70, true, true, seed);
    check_backward<bf16>(f, mixed, 45, 70, true, true, seed);
  }
  check_backward<float>(WeightFormat::kF32, {0, 1}, 8, 3, false, false, seed + 5);
  if (!g_quick) check_backward<bf16>(WeightFormat::kBF16, {130, 2}, 70, 66, true, false, seed + 6);
  check_bad_offsets();
  check("expert_linear with no rows (no launch)", [](Verdict& v) {
    const long long before = emu::counters().launches;
    cuda::expert_linear_forward<float>(nullptr, nullptr, {}, nullptr, nullptr, 0, 4, 8, 8, nullptr);
    cuda::expert_linear_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, {}, nullptr, 0,
                                        4, 8, 8, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

}  // namespace checks
