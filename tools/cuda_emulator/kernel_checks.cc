// Checks every kernel of the CUDA backend (src/backend/cuda/*_kernels.cu) on the host, through the
// CUDA emulator (README.md): each kernel against an independent reference (the CPU backend's
// kernels instantiated in double, or a plain loop), on awkward sizes and alignments, and the
// properties the kernel headers promise (accumulation, in-place forms, bit-exact or
// alignment-independent results, determinism, which attention path runs). Prints one line per
// check and exits 1 if any fails. The checks of gpt-oss's kernels are in files of their own
// (sections.h); what all check files share is in check_support.h.
//
// Usage: kernel_checks [--quick] [section...]
//   sections: emulator elementwise layernorm cross_entropy encoder optimizer attention paged
//   norm_rope moe expert_linear attention_gqa (default all), or attention's parts attention_f32,
//   attention_bf16, attention_decode; --quick
//   runs fewer sizes, still every kernel, instantiation and path (for the slow ThreadSanitizer
//   build).
#include <cuda_bf16.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

// Built without OpenMP, the CPU kernels leave their `parallel` flags unused.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_kernels.h"
#pragma GCC diagnostic pop
#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/cross_entropy_kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/encoder_kernels.h"
#include "backend/cuda/layernorm_kernels.h"
#include "backend/cuda/optimizer_kernels.h"
#include "backend/cuda/paged_attention_kernels.h"
#include "backend/gradient_clipping.h"
#include "check_support.h"
#include "core/dtype.h"
#include "core/error.h"
#include "emulator.h"
#include "sections.h"

// The double instances of the CPU kernels, the references below. cpu_kernels.h and
// attention_kernels.h declare all their instances extern (the CPU backend's .cc files hold them,
// and need oneDNN for the float ones); instantiating the double ones here needs nothing but the
// headers.
namespace switchyard::backend::cpu {
SWITCHYARD_CPU_KERNEL_INSTANCES(, double)
SWITCHYARD_CPU_ATTENTION_INSTANCES(, double)
}  // namespace switchyard::backend::cpu

// The emulated cudaGetLastError behind the backend's error checks (cuda_check.cc needs the CUDA
// runtime library, which the emulator replaces).
namespace switchyard::backend::cuda {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA {} failed: error {}", what, static_cast<int>(status));
}

void check_launch(const char* kernel) {
  const std::string error = emu::take_launch_error();
  if (!error.empty()) fail("CUDA kernel {} could not run: {}", kernel, error);
}

}  // namespace switchyard::backend::cuda

namespace {

using namespace checks;

// ---- the emulator itself ----

void check_emulator() {
  check("emulator: shuffles (xor, down, up, idx; widths 32 and 8)", [](Verdict& v) {
    constexpr int kThreads = 64, kKinds = 8;
    std::vector<double> got(kThreads * kKinds);
    run_kernel(
        "shuffles", 1, kThreads, 0,
        [](double* out) {
          const int t = threadIdx.x;
          const float f = 100.0f + t;
          const double d = 1000.0 + t;
          double* o = out + t * kKinds;
          o[0] = __shfl_xor_sync(emu::kFullMask, f, 5);
          o[1] = __shfl_xor_sync(emu::kFullMask, d, 16, 8);  // later group: own value
          o[2] = __shfl_down_sync(emu::kFullMask, f, 3);
          o[3] = __shfl_down_sync(emu::kFullMask, d, 3, 8);
          o[4] = __shfl_up_sync(emu::kFullMask, f, 2);
          o[5] = __shfl_up_sync(emu::kFullMask, d, 2, 8);
          o[6] = __shfl_sync(emu::kFullMask, f, 7);
          o[7] = __shfl_sync(emu::kFullMask, d, 13, 8);
        },
        got.data());
    v.require(emu::take_launch_error().empty(), "launch error");
    for (int t = 0; t < kThreads; ++t) {
      const int warp = t / 32 * 32, lane = t % 32, group = lane / 8 * 8;
      auto f = [&](int l) { return 100.0 + warp + l; };
      auto d = [&](int l) { return 1000.0 + warp + l; };
      const double want[kKinds] = {f(lane ^ 5),
                                   d((lane ^ 16) < group + 8 ? lane ^ 16 : lane),
                                   f(lane + 3 < 32 ? lane + 3 : lane),
                                   d(lane % 8 + 3 < 8 ? lane + 3 : lane),
                                   f(lane >= 2 ? lane - 2 : lane),
                                   d(lane % 8 >= 2 ? lane - 2 : lane),
                                   f(7),
                                   d(group + 13 % 8)};
      for (int k = 0; k < kKinds; ++k) {
        v.require(got[t * kKinds + k] == want[k], fmt::format("thread {} kind {}", t, k));
      }
    }
  });

  check("emulator: __syncthreads orders shared memory", [](Verdict& v) {
    constexpr int kThreads = 256;
    std::vector<int> got(kThreads);
    run_kernel(
        "barrier", 1, kThreads, kThreads * sizeof(int),
        [](int* out) {
          int* s = emu::dynamic_shared<int>();
          const int t = threadIdx.x;
          int sum = 0;
          for (int round = 0; round < 4; ++round) {
            s[t] = t * (round + 1);
            __syncthreads();
            sum += s[(t + 1 + round) % kThreads];
            __syncthreads();
          }
          out[t] = sum;
        },
        got.data());
    v.require(emu::take_launch_error().empty(), "launch error");
    for (int t = 0; t < kThreads; ++t) {
      int want = 0;
      for (int round = 0; round < 4; ++round) want += (t + 1 + round) % kThreads * (round + 1);
      v.require(got[t] == want, fmt::format("thread {}", t));
    }
  });

  check("emulator: shared memory is poisoned before every block", [](Verdict& v) {
    std::vector<uint32_t> got(2 * 64 * 2);
    run_kernel(
        "poison", 2, 64, 64 * sizeof(uint32_t),
        [](uint32_t* out) {
          static uint32_t tile[64];
          emu::touch_static_shared(&tile, sizeof(tile));
          uint32_t* dynamic = emu::dynamic_shared<uint32_t>();
          const int t = threadIdx.x;
          uint32_t* o = out + (blockIdx.x * 64 + t) * 2;
          o[0] = tile[t];  // read before any thread of this block writes
          o[1] = dynamic[t];
          __syncthreads();
          tile[t] = 7;
          dynamic[t] = 7;
        },
        got.data());
    v.require(emu::take_launch_error().empty(), "launch error");
    v.require(std::all_of(got.begin(), got.end(), [](uint32_t x) { return x == 0xffffffffu; }),
              "a read before any write did not see 0xff bytes");
  });

  // Provokes each error the emulator reports; none may pass silently.
  emu::error_state().quiet = true;
  auto refused = [](const char* what, const std::function<void()>& launch) {
    check(fmt::format("emulator: reports {}", what), [&](Verdict& v) {
      launch();
      v.require(!emu::take_launch_error().empty(), "not reported");
    });
  };
  auto nothing = [](int*) {};
  refused("a block of 2048 threads",
          [&] { run_kernel("big block", 1, 2048, 0, nothing, nullptr); });
  refused("a grid with y = 70000",
          [&] { run_kernel("big grid", dim3(1, 70000), 32, 0, nothing, nullptr); });
  refused("48 KiB + 1 of dynamic shared memory",
          [&] { run_kernel("big smem", 1, 32, 48 * 1024 + 1, nothing, nullptr); });
  refused("static + dynamic shared memory over 48 KiB", [&] {
    run_kernel(
        "big static", 1, 32, 16 * 1024,
        [](int*) {
          static float tile[10 * 1024];
          emu::touch_static_shared(&tile, sizeof(tile));
        },
        nullptr);
  });
  refused("a block larger than __launch_bounds__", [&] {
    run_kernel(
        "bounds", 1, 128, 0, [](int*) { emu::check_launch_bounds(64, "bounds"); }, nullptr);
  });
  refused("a shuffle that a returned lane misses", [&] {
    run_kernel(
        "early return", 1, 32, 0,
        [](int* out) {
          if (threadIdx.x == 5) return;
          out[threadIdx.x] = __shfl_xor_sync(emu::kFullMask, static_cast<int>(threadIdx.x), 1);
        },
        std::vector<int>(32).data());
  });
  refused("lanes in different warp operations", [&] {
    run_kernel(
        "divergent", 1, 32, 0,
        [](int* out) {
          if (threadIdx.x < 16) {
            out[threadIdx.x] = __shfl_xor_sync(emu::kFullMask, 1, 1);
          } else {
            __syncwarp();
          }
        },
        std::vector<int>(32).data());
  });
  emu::error_state().quiet = false;
}

// ---- elementwise_kernels.cu ----

// Special inputs first (huge, zero, tiny, NaN), then random ones in [-6, 6].
std::vector<double> gelu_inputs(size_t n, uint32_t seed) {
  std::vector<double> x = random_values(n, -6, 6, seed);
  const double special[] = {-100, 100, 0, -9, 9, -1e-3, NAN, -0.75};
  for (size_t i = 0; i < n && i < std::size(special); ++i) x[i] = special[i];
  return x;
}

// Pointer offsets (in elements) of an elementwise call: all 16-byte aligned (the vector path),
// all misaligned, and mixed (the scalar path, with aligned pointers among them).
struct Offsets {
  size_t out, a, b;
};
const Offsets kElementwiseOffsets[] = {{0, 0, 0}, {1, 1, 1}, {0, 3, 0}, {2, 0, 1}};

std::string offsets_name() {
  std::string s;
  for (const auto& o : kElementwiseOffsets) {
    s += fmt::format("{}{}/{}/{}", s.empty() ? "" : " ", o.out, o.a, o.b);
  }
  return s;
}

template <typename Act>
void check_gelu(size_t n) {
  const double u = storage_tolerance<Act>();
  const std::vector<double> x = rounded<Act>(gelu_inputs(n, 11 + n));
  std::vector<double> want(n), dgelu(n, 0.0), ones(n, 1.0);
  cpu::gelu_forward<double>(want.data(), x.data(), n);
  cpu::gelu_backward<double>(dgelu.data(), x.data(), ones.data(), n);
  check(fmt::format("gelu_forward {} N={} offsets {} + in place", type_name<Act>(), n,
                    offsets_name()),
        [&](Verdict& v) {
          // float evaluation of a function with condition number k = |x g'(x) / g(x)| loses
          // about k ulps; the result is then rounded to Act.
          auto tol = [&](size_t i) {
            const double k = want[i] != 0 ? std::fabs(x[i] * dgelu[i] / want[i]) : 1;
            return (u + 8 * kF32 * (1 + k)) * std::fabs(want[i]) + 1e-30;
          };
          std::unique_ptr<Buffer<Act>> first;
          for (const auto& o : kElementwiseOffsets) {
            Buffer<Act> in(x, o.a), out(n, o.out);
            cuda::gelu_forward<Act>(out.data(), in.data(), n, nullptr);
            v.within(compare(out.values(), want, tol), fmt::format("offsets {}/{}", o.out, o.a));
            v.require(out.guard_intact(), "wrote past the end");
            if (!first) {
              first = std::make_unique<Buffer<Act>>(n);
              first->copy_from(out);
            }
            v.require(out.same_bits(*first), "vector and scalar paths differ");
            Buffer<Act> io(x, o.a);
            cuda::gelu_forward<Act>(io.data(), io.data(), n, nullptr);
            v.require(io.same_bits(*first), "in place differs");
          }
        });
  check(fmt::format("gelu_backward {} N={} (accumulates; dinp == dout too)", type_name<Act>(), n),
        [&](Verdict& v) {
          const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 12 + n));
          const std::vector<double> dinp0 = rounded<Act>(random_values(n, -1, 1, 13 + n));
          std::vector<double> want_d = dinp0, want_alias = dout;
          cpu::gelu_backward<double>(want_d.data(), x.data(), dout.data(), n);
          cpu::gelu_backward<double>(want_alias.data(), x.data(), dout.data(), n);
          // The terms of g'(x) are O(1): a few float roundings of |dout|, then one of Act.
          auto tol_for = [&](const std::vector<double>& w) {
            return [&](size_t i) { return u * std::fabs(w[i]) + 1e-6 * std::fabs(dout[i]); };
          };
          std::unique_ptr<Buffer<Act>> first;
          for (const auto& o : kElementwiseOffsets) {
            Buffer<Act> in(x, o.a), d(dout, o.b), dinp(dinp0, o.out);
            cuda::gelu_backward<Act>(dinp.data(), in.data(), d.data(), n, nullptr);
            v.within(compare(dinp.values(), want_d, tol_for(want_d)),
                     fmt::format("offsets {}/{}/{}", o.out, o.a, o.b));
            v.require(dinp.guard_intact(), "wrote past the end");
            if (!first) {
              first = std::make_unique<Buffer<Act>>(n);
              first->copy_from(dinp);
            }
            v.require(dinp.same_bits(*first), "vector and scalar paths differ");
            Buffer<Act> alias(dout, o.b);
            cuda::gelu_backward<Act>(alias.data(), in.data(), alias.data(), n, nullptr);
            v.within(compare(alias.values(), want_alias, tol_for(want_alias)), "dinp == dout");
          }
        });
}

// residual_forward and accumulate add in float and round once to Act: bit-exact.
template <typename Act>
void check_adds(size_t n) {
  const std::vector<double> a = rounded<Act>(random_values(n, -6, 6, 21 + n));
  const std::vector<double> b = rounded<Act>(random_values(n, -6, 6, 22 + n));
  std::vector<double> sum(n);
  cpu::residual_forward<double>(sum.data(), a.data(), b.data(), n);
  for (auto& s : sum) s = stored<Act>(s);
  check(
      fmt::format("residual_forward {} N={} (bit-exact; out == a, out == b)", type_name<Act>(), n),
      [&](Verdict& v) {
        for (const auto& o : kElementwiseOffsets) {
          Buffer<Act> x(a, o.a), y(b, o.b), out(n, o.out);
          cuda::residual_forward<Act>(out.data(), x.data(), y.data(), n, nullptr);
          v.within(compare(out.values(), sum, 0, 0),
                   fmt::format("offsets {}/{}/{}", o.out, o.a, o.b));
          v.require(out.guard_intact(), "wrote past the end");
          cuda::residual_forward<Act>(x.data(), x.data(), y.data(), n, nullptr);
          v.within(compare(x.values(), sum, 0, 0), "out == a");
          Buffer<Act> x2(a, o.a);
          cuda::residual_forward<Act>(y.data(), x2.data(), y.data(), n, nullptr);
          v.within(compare(y.values(), sum, 0, 0), "out == b");
        }
      });
  check(fmt::format("accumulate {} N={} (bit-exact)", type_name<Act>(), n), [&](Verdict& v) {
    for (const auto& o : kElementwiseOffsets) {
      Buffer<Act> dst(a, o.out), src(b, o.a);
      cuda::accumulate<Act>(dst.data(), src.data(), n, nullptr);
      v.within(compare(dst.values(), sum, 0, 0), fmt::format("offsets {}/{}", o.out, o.a));
      v.require(dst.guard_intact(), "wrote past the end");
    }
  });
}

template <typename Act>
void check_bias_backward(int N, int OC) {
  check(fmt::format("bias_backward {} N={} OC={} (accumulates; alignment-independent, "
                    "repeatable)",
                    type_name<Act>(), N, OC),
        [&](Verdict& v) {
          const size_t n = static_cast<size_t>(N) * OC;
          const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 31 + N + OC));
          const std::vector<double> dbias0 = rounded<float>(random_values(OC, -1, 1, 32 + OC));
          std::vector<double> want = dbias0, magnitude(OC);
          for (int c = 0; c < OC; ++c) magnitude[c] = std::fabs(dbias0[c]);
          for (int r = 0; r < N; ++r) {
            for (int c = 0; c < OC; ++c) {
              want[c] += dout[static_cast<size_t>(r) * OC + c];
              magnitude[c] += std::fabs(dout[static_cast<size_t>(r) * OC + c]);
            }
          }
          // A float sum of N terms: at most about log2(N) roundings of the running magnitude in
          // the kernel's tree of partial sums; N of them would be the sequential worst case.
          auto tol = [&](size_t c) { return 4 * kF32 * (2 + std::log2(N + 1.0)) * magnitude[c]; };
          const size_t ws = cuda::bias_backward_workspace_bytes(N, OC);
          std::unique_ptr<Buffer<float>> first;
          for (size_t offset : {0, 1, 0}) {  // the second aligned run checks repeatability
            Buffer<Act> d(dout, offset);
            Buffer<float> dbias(dbias0, offset);
            Buffer<unsigned char> work(ws, 4 * offset);  // any alignment of 4
            cuda::bias_backward<Act>(dbias.data(), d.data(), N, OC, work.data(), nullptr);
            v.within(compare(dbias.values(), want, tol), fmt::format("offset {}", offset));
            v.require(dbias.guard_intact() && work.guard_intact(), "wrote past the end");
            if (!first) {
              first = std::make_unique<Buffer<float>>(OC);
              first->copy_from(dbias);
            }
            v.require(dbias.same_bits(*first), "results depend on alignment or run");
          }
          v.note(fmt::format("chunks: {}", ws / sizeof(float) / OC));
        });
}

void check_convert_to_bf16(size_t n) {
  check(fmt::format("convert_to_bf16 N={} (bit-exact vs core/dtype; ties, inf, NaN, subnormal)", n),
        [&](Verdict& v) {
          std::vector<double> x = random_values(n, -3, 3, 41 + n);
          for (size_t i = 0; i < n; ++i) x[i] = std::ldexp(x[i], static_cast<int>(i % 61) - 30);
          const double special[] = {1 + 0x1p-8,   1 + 3 * 0x1p-8, -(1 + 0x1p-8), 0x1p-130,
                                    -0.0,         INFINITY,       -INFINITY,     NAN,
                                    3.4028235e38, 3.3961776e38};
          for (size_t i = 0; i < n && i < std::size(special); ++i) x[i] = special[i];
          for (const auto& o : kElementwiseOffsets) {
            Buffer<float> src(x, o.a);
            Buffer<bf16> dst(n, o.out);
            cuda::convert_to_bf16(dst.data(), src.data(), n, nullptr);
            v.require(dst.guard_intact(), "wrote past the end");
            size_t wrong = 0, first_wrong = 0;
            for (size_t i = 0; i < n; ++i) {
              const float f = src[i];
              const bool ok = std::isnan(f) ? std::isnan(to_double(dst[i]))
                                            : bits_of(dst[i]) == switchyard::float_to_bf16(f);
              if (!ok && wrong++ == 0) first_wrong = i;
            }
            v.require(wrong == 0, fmt::format("offsets {}/{}: {} elements differ, first [{}] {}",
                                              o.out, o.a, wrong, first_wrong, x[first_wrong]));
          }
        });
}

void check_convert_to_f32() {
  check("convert_to_f32 (every bf16 bit pattern, exact)", [&](Verdict& v) {
    const size_t n = 65536;
    for (const auto& o : kElementwiseOffsets) {
      Buffer<bf16> src(n, o.a);
      for (size_t i = 0; i < n; ++i) src[i] = bf16_from_bits(static_cast<uint16_t>(i));
      Buffer<float> dst(n, o.out);
      cuda::convert_to_f32(dst.data(), src.data(), n, nullptr);
      v.require(dst.guard_intact(), "wrote past the end");
      size_t wrong = 0, first_wrong = 0;
      for (size_t i = 0; i < n; ++i) {
        const float want = switchyard::bf16_to_float(static_cast<uint16_t>(i));
        const bool ok = std::isnan(want) ? std::isnan(dst[i])
                                         : std::memcmp(&dst[i], &want, sizeof(float)) == 0;
        if (!ok && wrong++ == 0) first_wrong = i;
      }
      v.require(wrong == 0, fmt::format("offsets {}/{}: {} patterns differ, first {:#06x}", o.out,
                                        o.a, wrong, first_wrong));
    }
  });
}

void check_elementwise() {
  check_convert_to_f32();
  for (size_t n : cases<size_t>({1, 7, 8, 9, 1000, 4099}, {9, 4099})) {
    check_gelu<float>(n);
    check_gelu<bf16>(n);
    check_adds<float>(n);
    check_adds<bf16>(n);
    check_convert_to_bf16(n);
  }
  for (int N : cases({1, 3, 65, 200, 1100}, {3, 200})) {
    for (int OC : cases({1, 7, 54, 300, 768}, {7, 300})) {
      check_bias_backward<float>(N, OC);
      check_bias_backward<bf16>(N, OC);
    }
  }
  if (!g_quick) check_bias_backward<float>(65600, 9);  // the most chunks (1010) and grid rows
  check("bias_backward N=0 / OC=0 (no launch, no workspace)", [](Verdict& v) {
    v.require(cuda::bias_backward_workspace_bytes(0, 5) == 0, "workspace for N=0");
    v.require(cuda::bias_backward_workspace_bytes(5, 0) == 0, "workspace for OC=0");
    const long long before = emu::counters().launches;
    cuda::bias_backward<float>(nullptr, nullptr, 0, 5, nullptr, nullptr);
    cuda::bias_backward<float>(nullptr, nullptr, 5, 0, nullptr, nullptr);
    cuda::gelu_forward<float>(nullptr, nullptr, 0, nullptr);
    cuda::convert_to_f32(nullptr, nullptr, 0, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

// ---- layernorm_kernels.cu ----

// Rows of three kinds (n % 3): centred, far from zero (mean 1000, so the mean's rounding matters),
// and offset (-50); every other row has a spread of 0.01 instead of 1 (ill-conditioned).
std::vector<double> layernorm_rows(int N, int C, uint32_t seed, double spread) {
  std::vector<double> x = random_values(static_cast<size_t>(N) * C, -spread, spread, seed);
  for (int n = 0; n < N; ++n) {
    const double offset = n % 3 == 1 ? 1000 : n % 3 == 2 ? -50 : 0;
    const double scale = n % 2 ? 0.01 : 1;
    for (int c = 0; c < C; ++c) {
      double& e = x[static_cast<size_t>(n) * C + c];
      e = offset + scale * e;
    }
  }
  return x;
}

// Pointer offsets of a layernorm call: (activations, outputs, weight, bias).
struct LayernormOffsets {
  size_t in, out, weight, bias;
};
const LayernormOffsets kLayernormOffsets[] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 3, 0, 2}};

// Tolerances of layernorm_forward's results against the double reference: the float mean is off
// by about an ulp of itself, which moves every output by s |w| ulp(m); rstd comes from a float sum
// of C squares; the last operations round a few times more.
struct LayernormTolerance {
  std::vector<double> out, mean, rstd;
};

template <typename Act>
LayernormTolerance layernorm_tolerance(const std::vector<double>& x, const std::vector<double>& w,
                                       const std::vector<double>& b, const std::vector<double>& out,
                                       const std::vector<double>& mean,
                                       const std::vector<double>& rstd, int N, int C) {
  LayernormTolerance t{std::vector<double>(out.size()), std::vector<double>(N),
                       std::vector<double>(N)};
  const double sum_error = kF32 * (8 + 2 * std::sqrt(static_cast<double>(C)));
  for (int n = 0; n < N; ++n) {
    const double m = mean[n], s = rstd[n];
    t.mean[n] = 2 * ulp_f32(m) + sum_error / s;
    t.rstd[n] = sum_error * s;
    for (int c = 0; c < C; ++c) {
      const size_t i = static_cast<size_t>(n) * C + c;
      const double norm_w = std::fabs((x[i] - m) * s * w[c]);
      t.out[i] = s * std::fabs(w[c]) * t.mean[n] + norm_w * sum_error +
                 4 * kF32 * (std::fabs(b[c]) + std::fabs(out[i])) +
                 storage_tolerance<Act>() * std::fabs(out[i]);
    }
  }
  return t;
}

template <typename Act>
void check_layernorm_forward(int N, int C, float epsilon = 1e-5f) {
  const size_t n = static_cast<size_t>(N) * C;
  const std::vector<double> x = rounded<Act>(layernorm_rows(N, C, 51 + C, 2));
  const std::vector<double> w = rounded<float>(random_values(C, 0.5, 1.5, 52 + C));
  const std::vector<double> b = rounded<float>(random_values(C, -1, 1, 53 + C));
  std::vector<double> out(n), mean(N), rstd(N);
  cpu::layernorm_forward<double>(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                                 N, C, epsilon);
  const LayernormTolerance tol = layernorm_tolerance<Act>(x, w, b, out, mean, rstd, N, C);
  auto within = [](const std::vector<double>& t) { return [&t](size_t i) { return t[i]; }; };

  check(
      fmt::format("layernorm_forward {} N={} C={} eps={} (alignments, null stats, in place)",
                  type_name<Act>(), N, C, epsilon),
      [&](Verdict& v) {
        std::unique_ptr<Buffer<Act>> first;
        std::unique_ptr<Buffer<float>> first_mean, first_rstd;
        for (const auto& o : kLayernormOffsets) {
          Buffer<Act> in(x, o.in), y(n, o.out);
          Buffer<float> weight(w, o.weight), bias(b, o.bias), m(N, o.out), s(N, o.out);
          cuda::layernorm_forward<Act>(y.data(), m.data(), s.data(), in.data(), weight.data(),
                                       bias.data(), N, C, epsilon, nullptr);
          const std::string at = fmt::format("offsets {}/{}/{}/{}", o.in, o.out, o.weight, o.bias);
          v.within(compare(y.values(), out, within(tol.out)), "out, " + at);
          v.within(compare(m.values(), mean, within(tol.mean)), "mean, " + at);
          v.within(compare(s.values(), rstd, within(tol.rstd)), "rstd, " + at);
          v.require(y.guard_intact() && m.guard_intact() && s.guard_intact(), "wrote past the end");
          if (!first) {
            first = std::make_unique<Buffer<Act>>(n);
            first_mean = std::make_unique<Buffer<float>>(N);
            first_rstd = std::make_unique<Buffer<float>>(N);
            first->copy_from(y);
            first_mean->copy_from(m);
            first_rstd->copy_from(s);
          }
          v.require(y.same_bits(*first) && m.same_bits(*first_mean) && s.same_bits(*first_rstd),
                    "results depend on alignment (" + at + ")");
          Buffer<Act> y2(n, o.out);
          cuda::layernorm_forward<Act>(y2.data(), nullptr, nullptr, in.data(), weight.data(),
                                       bias.data(), N, C, epsilon, nullptr);
          v.require(y2.same_bits(*first), "null mean and rstd change out");
          cuda::layernorm_forward<Act>(in.data(), nullptr, nullptr, in.data(), weight.data(),
                                       bias.data(), N, C, epsilon, nullptr);
          v.require(in.same_bits(*first), "in place (out == inp) differs");
        }
      });

  check(
      fmt::format("residual_layernorm_forward {} N={} C={} (== add + layernorm, bit for bit)",
                  type_name<Act>(), N, C),
      [&](Verdict& v) {
        const std::vector<double> a = rounded<Act>(random_values(n, -2, 2, 54 + C));
        std::vector<double> bb(n), sum(n);
        for (size_t i = 0; i < n; ++i) bb[i] = to_double(from_double<Act>(x[i] - a[i]));
        cpu::residual_forward<double>(sum.data(), a.data(), bb.data(), n);
        for (auto& e : sum) e = stored<Act>(e);
        Buffer<float> weight(w, 0), bias(b, 0);
        // The plain layernorm of the stored sum: what the fused kernel must equal.
        Buffer<Act> res_plain(sum, 0), y_plain(n, 0);
        Buffer<float> m_plain(N), s_plain(N);
        cuda::layernorm_forward<Act>(y_plain.data(), m_plain.data(), s_plain.data(),
                                     res_plain.data(), weight.data(), bias.data(), N, C, epsilon,
                                     nullptr);
        for (const auto& o : kLayernormOffsets) {
          const std::string at = fmt::format("offsets {}/{}", o.in, o.out);
          Buffer<Act> ba(a, o.in), bb_(bb, o.in), res(n, o.out), y(n, o.out);
          Buffer<float> m(N, o.out), s(N, o.out);
          Buffer<float> wo(w, o.weight), bo(b, o.bias);
          cuda::residual_layernorm_forward<Act>(res.data(), y.data(), m.data(), s.data(), ba.data(),
                                                bb_.data(), wo.data(), bo.data(), N, C, epsilon,
                                                nullptr);
          v.within(compare(res.values(), sum, 0, 0), "residual, " + at);
          v.require(y.same_bits(y_plain) && m.same_bits(m_plain) && s.same_bits(s_plain),
                    "out, mean or rstd differ from layernorm_forward of the residual, " + at);
          v.require(res.guard_intact() && y.guard_intact(), "wrote past the end");
          // In place: the residual stream is a or b.
          Buffer<Act> y2(n, o.out), y3(n, o.out);
          cuda::residual_layernorm_forward<Act>(ba.data(), y2.data(), nullptr, nullptr, ba.data(),
                                                bb_.data(), wo.data(), bo.data(), N, C, epsilon,
                                                nullptr);
          v.require(ba.same_bits(res) && y2.same_bits(y_plain), "residual == a differs, " + at);
          Buffer<Act> ba2(a, o.in);
          cuda::residual_layernorm_forward<Act>(bb_.data(), y3.data(), nullptr, nullptr, ba2.data(),
                                                bb_.data(), wo.data(), bo.data(), N, C, epsilon,
                                                nullptr);
          v.require(bb_.same_bits(res) && y3.same_bits(y_plain), "residual == b differs, " + at);
        }
      });
}

template <typename Act>
void check_layernorm_backward(int N, int C) {
  check(
      fmt::format("layernorm_backward {} N={} C={} (accumulates; alignment-independent, "
                  "repeatable)",
                  type_name<Act>(), N, C),
      [&](Verdict& v) {
        const size_t n = static_cast<size_t>(N) * C;
        const std::vector<double> x = rounded<Act>(layernorm_rows(N, C, 61 + C, 2));
        const std::vector<double> w = rounded<float>(random_values(C, 0.5, 1.5, 62 + C));
        const std::vector<double> b = rounded<float>(random_values(C, -1, 1, 63 + C));
        const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 64 + C));
        const std::vector<double> dinp0 = rounded<Act>(random_values(n, -1, 1, 65 + C));
        const std::vector<double> dw0 = rounded<float>(random_values(C, -1, 1, 66 + C));
        const std::vector<double> db0 = rounded<float>(random_values(C, -1, 1, 67 + C));
        // The saved statistics are inputs: those of the kernel's own forward pass.
        Buffer<Act> in0(x, 0), y0(n, 0);
        Buffer<float> weight0(w, 0), bias0(b, 0), m0(N), s0(N);
        cuda::layernorm_forward<Act>(y0.data(), m0.data(), s0.data(), in0.data(), weight0.data(),
                                     bias0.data(), N, C, 1e-5f, nullptr);
        const std::vector<double> mean = m0.values(), rstd = s0.values();
        std::vector<double> dinp = dinp0, dw = dw0, db = db0;
        cpu::layernorm_backward<double>(dinp.data(), dw.data(), db.data(), dout.data(), x.data(),
                                        w.data(), mean.data(), rstd.data(), N, C);
        // dinp: float sums of C terms (the two row means) scaled by rstd, then one rounding to
        // Act. dweight, dbias: float sums of N terms.
        const double sum_error = kF32 * (8 + 2 * std::sqrt(static_cast<double>(C)));
        std::vector<double> tol_dinp(n), tol_dw(C), tol_db(C);
        for (int c = 0; c < C; ++c) {
          tol_dw[c] = std::fabs(dw0[c]);
          tol_db[c] = std::fabs(db0[c]);
        }
        for (int r = 0; r < N; ++r) {
          double m1 = 0, m2 = 0;
          for (int c = 0; c < C; ++c) {
            const size_t i = static_cast<size_t>(r) * C + c;
            const double norm = (x[i] - mean[r]) * rstd[r];
            m1 += std::fabs(w[c] * dout[i]) / C;
            m2 += std::fabs(w[c] * dout[i] * norm) / C;
            tol_dw[c] += std::fabs(norm * dout[i]);
            tol_db[c] += std::fabs(dout[i]);
          }
          for (int c = 0; c < C; ++c) {
            const size_t i = static_cast<size_t>(r) * C + c;
            const double norm = (x[i] - mean[r]) * rstd[r];
            tol_dinp[i] =
                rstd[r] * sum_error * (std::fabs(w[c] * dout[i]) + m1 + std::fabs(norm) * m2) +
                (4 * kF32 + storage_tolerance<Act>()) * std::fabs(dinp[i]);
          }
        }
        const double rows_error = kF32 * (8 + N / 4.0);
        for (int c = 0; c < C; ++c) {
          tol_dw[c] *= rows_error;
          tol_db[c] *= rows_error;
        }
        auto within = [](const std::vector<double>& t) { return [&t](size_t i) { return t[i]; }; };
        const size_t ws = cuda::layernorm_backward_workspace_bytes(N, C);
        std::unique_ptr<Buffer<Act>> first;
        std::unique_ptr<Buffer<float>> first_dw, first_db;
        const LayernormOffsets runs[] = {kLayernormOffsets[0], kLayernormOffsets[1],
                                         kLayernormOffsets[2], kLayernormOffsets[0]};
        for (const auto& o : runs) {
          const std::string at = fmt::format("offsets {}/{}/{}/{}", o.in, o.out, o.weight, o.bias);
          Buffer<Act> in(x, o.in), d(dout, o.in), dx(dinp0, o.out);
          Buffer<float> weight(w, o.weight), m(mean, o.bias), s(rstd, o.bias);
          Buffer<float> dweight(dw0, o.weight), dbias(db0, o.bias);
          Buffer<unsigned char> work(ws, 4 * o.out);
          cuda::layernorm_backward<Act>(dx.data(), dweight.data(), dbias.data(), d.data(),
                                        in.data(), weight.data(), m.data(), s.data(), N, C,
                                        work.data(), nullptr);
          v.within(compare(dx.values(), dinp, within(tol_dinp)), "dinp, " + at);
          v.within(compare(dweight.values(), dw, within(tol_dw)), "dweight, " + at);
          v.within(compare(dbias.values(), db, within(tol_db)), "dbias, " + at);
          v.require(dx.guard_intact() && dweight.guard_intact() && dbias.guard_intact() &&
                        work.guard_intact(),
                    "wrote past the end");
          if (!first) {
            first = std::make_unique<Buffer<Act>>(n);
            first_dw = std::make_unique<Buffer<float>>(C);
            first_db = std::make_unique<Buffer<float>>(C);
            first->copy_from(dx);
            first_dw->copy_from(dweight);
            first_db->copy_from(dbias);
          }
          v.require(
              dx.same_bits(*first) && dweight.same_bits(*first_dw) && dbias.same_bits(*first_db),
              "results depend on alignment or run (" + at + ")");
        }
      });
}

void check_layernorm() {
  // One of every register-cache size (C up to 2048 in packs of 256: 1, 2, 3, 4, 6, 8) and the
  // uncached path (C > 2048); 17 rows fill two blocks of 8 and one row of a third.
  for (int C : cases({1, 7, 54, 255, 256, 768, 1600, 2048, 2056, 3000}, {7, 768, 1600, 3000})) {
    const int N = 17;
    check_layernorm_forward<float>(N, C);
    check_layernorm_forward<bf16>(N, C);
    check_layernorm_backward<float>(N, C);
    check_layernorm_backward<bf16>(N, C);
  }
  if (!g_quick) check_layernorm_backward<float>(200, 54);  // several chunks of rows
  // Another model's epsilon (large enough to matter for the rows of spread 0.01).
  check_layernorm_forward<float>(17, 54, 0.25f);
  check_layernorm_forward<bf16>(17, 300, 0.25f);
}

// ---- cross_entropy_kernels.cu ----

template <typename Act>
void check_cross_entropy(int N, int V, double spread, bool poisoned) {
  const std::string name = fmt::format("cross_entropy {} N={} V={}{}", type_name<Act>(), N, V,
                                       poisoned       ? " (NaN, +inf, -inf rows)"
                                       : spread > 100 ? " (logits near 1e4)"
                                                      : "");
  const size_t n = static_cast<size_t>(N) * V;
  std::vector<double> logits = random_values(n, -8, 8, 71 + V);
  for (size_t i = 0; i < n; ++i) logits[i] += i % 97 == 0 ? 20 : spread > 100 ? spread : 0;
  if (poisoned) {  // rows 0, 1, 2 each hold one non-finite logit, away from their target
    logits[V / 2] = NAN;
    logits[V + V / 3] = INFINITY;
    logits[2 * static_cast<size_t>(V) + V / 4] = -INFINITY;
  }
  logits = rounded<Act>(logits);
  std::vector<int32_t> targets(N);
  std::mt19937 rng(72 + V);
  for (int r = 0; r < N; ++r) targets[r] = std::uniform_int_distribution<int>(0, V - 1)(rng);
  targets[0] = V - 1;
  if (poisoned) {
    targets[0] = V / 2 == 0 ? 1 : 0;
    targets[1] = V - 1;
    targets[2] = 0;
  }
  const double dloss = static_cast<float>(1.0 / 7);
  std::vector<double> loss(N), dlogits(n);
  cpu::cross_entropy_forward<double>(loss.data(), logits.data(), targets.data(), N, V);
  cpu::cross_entropy_backward<double>(dlogits.data(), logits.data(), targets.data(), dloss, N, V);
  // Float sums of V exponentials (each within a few ulps), a log, and additions of values as
  // large as the row's maximum and target logit.
  const double sum_error = kF32 * (16 + 2 * std::log2(V + 1.0));
  std::vector<double> tol_loss(N), tol_d(n);
  for (int r = 0; r < N; ++r) {
    double max = -INFINITY;
    for (int c = 0; c < V; ++c) max = std::max(max, logits[static_cast<size_t>(r) * V + c]);
    tol_loss[r] = sum_error * (1 + std::fabs(max) + std::fabs(loss[r]) +
                               std::fabs(logits[static_cast<size_t>(r) * V + targets[r]]));
    for (int c = 0; c < V; ++c) {
      const size_t i = static_cast<size_t>(r) * V + c;
      const double p = dlogits[i] + (c == targets[r] ? dloss : 0);  // softmax * dloss
      tol_d[i] = sum_error * std::fabs(p) + 4 * kF32 * dloss +
                 storage_tolerance<Act>() * std::fabs(dlogits[i]);
    }
  }
  auto within = [](const std::vector<double>& t) { return [&t](size_t i) { return t[i]; }; };
  check(name + " forward", [&](Verdict& v) {
    Buffer<int32_t> t(targets, 0);
    for (size_t offset : {0, 1, 3}) {
      Buffer<Act> x(logits, offset);
      Buffer<float> losses(N, offset);
      cuda::cross_entropy_forward<Act>(losses.data(), x.data(), t.data(), N, V, nullptr);
      v.within(compare(losses.values(), loss, within(tol_loss)), fmt::format("offset {}", offset));
      v.require(losses.guard_intact(), "wrote past the end");
    }
  });
  check(name + " backward (in place == out of place)", [&](Verdict& v) {
    Buffer<int32_t> t(targets, 0);
    for (size_t offset : {0, 1, 3}) {
      Buffer<Act> x(logits, offset);
      for (size_t out_offset : {offset, offset + 2}) {  // same alignment (packs), or not
        Buffer<Act> d(n, out_offset);
        cuda::cross_entropy_backward<Act>(d.data(), x.data(), t.data(), static_cast<float>(dloss),
                                          N, V, nullptr);
        v.within(compare(d.values(), dlogits, within(tol_d)),
                 fmt::format("offsets {}/{}", out_offset, offset));
        v.require(d.guard_intact(), "wrote past the end");
        if (out_offset == offset) {
          Buffer<Act> io(logits, offset);
          cuda::cross_entropy_backward<Act>(io.data(), io.data(), t.data(),
                                            static_cast<float>(dloss), N, V, nullptr);
          v.require(io.same_bits(d), fmt::format("in place differs, offset {}", offset));
        }
      }
    }
  });
}

// ---- encoder_kernels.cu ----

// The position ids of an encoder check: GPT-2's (row n of B windows of T tokens is at position
// n % T), ids scattered over a table of T + 3 rows (a flat batch's positions: repeats, any
// order), or no position table at all (a plain row gather).
enum class Positions { kGpt2, kScattered, kNone };

template <typename Act>
void check_encoder(int B, int T, int C, int V, bool one_token, Positions kind) {
  const int count = B * T;
  const size_t n = static_cast<size_t>(count) * C;
  std::vector<int32_t> tokens(count);
  std::mt19937 rng(81 + C);
  for (auto& t : tokens) t = one_token ? V - 1 : std::uniform_int_distribution<int>(0, V - 1)(rng);
  const bool with_positions = kind != Positions::kNone;
  const int P = kind == Positions::kScattered ? T + 3 : T;  // rows of the position table
  std::vector<int32_t> positions(count);
  for (int i = 0; i < count; ++i) {
    positions[i] = kind == Positions::kScattered
                       ? std::uniform_int_distribution<int>(0, P - 1)(rng)
                       : i % T;
  }
  const std::vector<double> wte =
      rounded<float>(random_values(static_cast<size_t>(V) * C, -1, 1, 82 + C));
  const std::vector<double> wpe =
      rounded<float>(random_values(static_cast<size_t>(P) * C, -1, 1, 83 + C));
  const char* kind_name = kind == Positions::kGpt2        ? ""
                          : kind == Positions::kScattered ? " (scattered positions)"
                                                          : " (no positions)";
  const std::string name = fmt::format("encoder {} B={} T={} C={} V={}{}{}", type_name<Act>(), B,
                                       T, C, V, one_token ? " (one token)" : "", kind_name);
  check(name + " forward (bit-exact)", [&](Verdict& v) {
    std::vector<double> want(n);
    cpu::embedding_forward<double>(want.data(), tokens.data(), wte.data(),
                                   with_positions ? positions.data() : nullptr,
                                   with_positions ? wpe.data() : nullptr, count, C);
    for (auto& e : want) e = stored<Act>(e);
    Buffer<int32_t> tok(tokens, 0), pos(positions, 0);
    for (size_t offset : {0, 1}) {
      Buffer<float> e(wte, offset), p(wpe, 1 - offset);
      Buffer<Act> out(n, offset);
      cuda::encoder_forward<Act>(out.data(), tok.data(), e.data(),
                                 with_positions ? pos.data() : nullptr,
                                 with_positions ? p.data() : nullptr, count, C, nullptr);
      v.within(compare(out.values(), want, 0, 0), fmt::format("offset {}", offset));
      v.require(out.guard_intact(), "wrote past the end");
    }
  });
  check(name + " backward (accumulates; bit-exact in the CPU's order)", [&](Verdict& v) {
    const std::vector<double> dout = rounded<Act>(random_values(n, -1, 1, 84 + C));
    const std::vector<double> dwte0 = rounded<float>(random_values(wte.size(), -1, 1, 85 + C));
    const std::vector<double> dwpe0 = rounded<float>(random_values(wpe.size(), -1, 1, 86 + C));
    std::vector<double> dwte = dwte0, dwpe = dwpe0;
    cpu::embedding_backward<double>(dwte.data(), with_positions ? dwpe.data() : nullptr,
                                    dout.data(), tokens.data(), positions.data(), count, C);
    // The contract: float sums in row order, as the CPU kernel adds them.
    std::vector<float> exact_wte(dwte0.begin(), dwte0.end()), exact_wpe(dwpe0.begin(), dwpe0.end());
    for (int row = 0; row < count; ++row) {
      for (int c = 0; c < C; ++c) {
        const float d = static_cast<float>(dout[static_cast<size_t>(row) * C + c]);
        exact_wte[static_cast<size_t>(tokens[row]) * C + c] += d;
        if (with_positions) exact_wpe[static_cast<size_t>(positions[row]) * C + c] += d;
      }
    }
    const std::vector<double> want_wte(exact_wte.begin(), exact_wte.end());
    const std::vector<double> want_wpe(exact_wpe.begin(), exact_wpe.end());
    const double sum_error = kF32 * (2 + count);
    Buffer<int32_t> tok(tokens, 0), pos(positions, 0);
    const size_t ws = cuda::encoder_backward_workspace_bytes(count, V, with_positions ? P : 0);
    for (size_t offset : {0, 1}) {
      Buffer<Act> d(dout, offset);
      Buffer<float> gw(dwte0, offset), gp(dwpe0, offset);
      Buffer<unsigned char> work(ws, 3 * offset);  // any alignment
      cuda::encoder_backward<Act>(gw.data(), V, with_positions ? gp.data() : nullptr, P, d.data(),
                                  tok.data(), pos.data(), count, C, work.data(), nullptr);
      const std::string at = fmt::format("offset {}", offset);
      v.within(compare(gw.values(), want_wte, 0, 0), "dwte, " + at);
      v.within(compare(gp.values(), want_wpe, 0, 0),
               (with_positions ? "dwpe, " : "dwpe untouched, ") + at);
      v.within(compare(gw.values(), dwte, sum_error, sum_error), "dwte vs double, " + at);
      v.within(compare(gp.values(), dwpe, sum_error, sum_error), "dwpe vs double, " + at);
      v.require(gw.guard_intact() && gp.guard_intact() && work.guard_intact(),
                "wrote past the end");
    }
  });
}

// ---- optimizer_kernels.cu ----

struct AdamWSettings {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.7f;
};

// The documented formula in float, one rounding per operation (this file is built with
// -ffp-contract=off), factors from double as the kernel's host code computes them.
void adamw_reference_float(std::vector<float>& p, const std::vector<float>& g,
                           std::vector<float>& m, std::vector<float>& v, int step,
                           const AdamWSettings& s) {
  const double lr = s.lr, wd = s.wd;
  const float decay = static_cast<float>(1.0 - lr * wd);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(double(s.beta1), step)));
  const float inv_sqrt_bc2 =
      static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(double(s.beta2), step)));
  const float one_minus_b1 = 1.0f - s.beta1, one_minus_b2 = 1.0f - s.beta2;
  for (size_t i = 0; i < p.size(); ++i) {
    const float gi = g[i] * s.grad_scale;
    const float first = s.beta1 * m[i];
    const float mi = first + one_minus_b1 * gi;
    const float scaled = one_minus_b2 * gi;
    const float vi = s.beta2 * v[i] + scaled * gi;
    const float denom = std::sqrt(vi) * inv_sqrt_bc2 + s.eps;
    const float decayed = p[i] * decay;
    p[i] = decayed - step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

void check_adamw(size_t n) {
  check(fmt::format("adamw_update N={} x3 steps (bit-exact unfused; bf16 copy; alignments)", n),
        [&](Verdict& verdict) {
          const AdamWSettings s;
          std::vector<double> g = random_values(n, -1, 1, 91 + n);
          for (size_t i = 0; i < n; i += 5) g[i] *= 1e-6;  // tiny gradients: v near zero
          g = rounded<float>(g);
          const std::vector<double> p0 = rounded<float>(random_values(n, -1, 1, 92 + n));
          const std::vector<double> m0 = rounded<float>(random_values(n, -0.1, 0.1, 93 + n));
          const std::vector<double> v0 = rounded<float>(random_values(n, 0, 0.01, 94 + n));
          std::vector<float> fp(p0.begin(), p0.end()), fm(m0.begin(), m0.end()),
              fv(v0.begin(), v0.end());
          const std::vector<float> fg(g.begin(), g.end());
          std::vector<double> dp = p0, dm = m0, dv = v0;
          // Against double, each element is allowed a few roundings of the terms it is made of
          // per step (m and v cancel: the result can be far smaller than its terms).
          std::vector<double> tol_p(n), tol_m(n), tol_v(n);
          for (int step = 1; step <= 3; ++step) {
            adamw_reference_float(fp, fg, fm, fv, step, s);
            const std::vector<double> before = dp;
            for (size_t i = 0; i < n; ++i) {
              const double gs = std::fabs(g[i]) * s.grad_scale;
              tol_m[i] += 8 * kF32 * (std::fabs(dm[i]) + gs);
              tol_v[i] += 8 * kF32 * (std::fabs(dv[i]) + gs * gs);
            }
            cpu::adamw_update<double>(dp.data(), g.data(), dm.data(), dv.data(), n, s.lr, s.beta1,
                                      s.beta2, s.eps, s.wd, step, s.grad_scale);
            for (size_t i = 0; i < n; ++i) {
              tol_p[i] += 8 * kF32 * (std::fabs(before[i]) + std::fabs(dp[i] - before[i]));
            }
          }
          auto within = [](const std::vector<double>& t) {
            return [&t](size_t i) { return t[i]; };
          };
          const std::vector<double> want_p(fp.begin(), fp.end()), want_m(fm.begin(), fm.end()),
              want_v(fv.begin(), fv.end());
          // (params, grads, m, v) offsets, and the bf16 copy's: null, aligned, 2 and 8 bytes past.
          struct Run {
            size_t p, g, m, v;
            int copy;  // -1: no copy
          };
          const Run runs[] = {{0, 0, 0, 0, -1}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1},
                              {0, 0, 0, 2, 0},  {0, 0, 0, 0, 4}, {0, 0, 0, 0, 1}};
          for (const Run& r : runs) {
            const std::string at =
                fmt::format("offsets {}/{}/{}/{} copy {}", r.p, r.g, r.m, r.v, r.copy);
            Buffer<float> p(p0, r.p), gr(g, r.g), m(m0, r.m), v(v0, r.v);
            Buffer<bf16> copy(n, r.copy < 0 ? 0 : r.copy);
            for (int step = 1; step <= 3; ++step) {
              cuda::adamw_update(p.data(), gr.data(), m.data(), v.data(),
                                 r.copy < 0 ? nullptr : copy.data(), n, s.lr, s.beta1, s.beta2,
                                 s.eps, s.wd, step, s.grad_scale, nullptr, 0.0f, nullptr);
            }
            verdict.within(compare(p.values(), want_p, 0, 0), "params, " + at);
            verdict.within(compare(m.values(), want_m, 0, 0), "m, " + at);
            verdict.within(compare(v.values(), want_v, 0, 0), "v, " + at);
            verdict.within(compare(p.values(), dp, within(tol_p)), "params vs double, " + at);
            verdict.within(compare(m.values(), dm, within(tol_m)), "m vs double, " + at);
            verdict.within(compare(v.values(), dv, within(tol_v)), "v vs double, " + at);
            if (r.copy >= 0) {
              size_t wrong = 0;
              for (size_t i = 0; i < n; ++i) {
                wrong += bits_of(copy[i]) != switchyard::float_to_bf16(p[i]);
              }
              verdict.require(wrong == 0, fmt::format("{} copy elements are not params "
                                                      "rounded to bf16, {}",
                                                      wrong, at));
            }
            verdict.require(
                p.guard_intact() && m.guard_intact() && v.guard_intact() && copy.guard_intact(),
                "wrote past the end");
          }
        });
}

// The clipping factor from a device-resident sum of squares must be exactly the one the host
// works out from the same sum (gradient_clipping.h), so the update is the host-scaled one, bit
// for bit: clipped, not clipped, clipping off, and a NaN norm (not clipped).
void check_adamw_clipped(size_t n) {
  check(fmt::format("adamw_update N={} clipped by a device norm (bit-identical to host scale)", n),
        [&](Verdict& verdict) {
          const AdamWSettings s;
          const std::vector<double> g = rounded<float>(random_values(n, -1, 1, 95 + n));
          const std::vector<double> p0 = rounded<float>(random_values(n, -1, 1, 96 + n));
          struct Case {
            double sum_of_squares;
            float clip;
          };
          const Case cases_[] = {{9.0, 1.0f}, {0.25, 1.0f}, {1e6, 0.0f}, {2.0, 1.3f},
                                 {std::numeric_limits<double>::quiet_NaN(), 1.0f}};
          for (const Case& c : cases_) {
            const float scale =
                s.grad_scale *
                switchyard::backend::clip_scale(switchyard::backend::global_norm(c.sum_of_squares),
                                                c.clip);
            const std::string at = fmt::format("sum {} clip {} (scale {})", c.sum_of_squares,
                                               c.clip, scale);
            const std::vector<double> zeros(n, 0.0);
            Buffer<float> want_p(p0, 0), want_m(zeros, 0), want_v(zeros, 0), gr(g, 1);
            cuda::adamw_update(want_p.data(), gr.data(), want_m.data(), want_v.data(), nullptr, n,
                               s.lr, s.beta1, s.beta2, s.eps, s.wd, 1, scale, nullptr, 0.0f,
                               nullptr);
            Buffer<float> p(p0, 0), m(zeros, 0), v(zeros, 0);
            Buffer<double> norm_sq(std::vector<double>{c.sum_of_squares}, 0);
            cuda::adamw_update(p.data(), gr.data(), m.data(), v.data(), nullptr, n, s.lr, s.beta1,
                               s.beta2, s.eps, s.wd, 1, s.grad_scale, norm_sq.data(), c.clip,
                               nullptr);
            verdict.require(p.same_bits(want_p) && m.same_bits(want_m) && v.same_bits(want_v),
                            "update differs from the host-scaled one, " + at);
            verdict.require(p.guard_intact() && m.guard_intact() && v.guard_intact(),
                            "wrote past the end");
          }
        });
}

// *total += scale * sum(x): the same two-phase tree as sum_of_squares, added to what is there.
void check_accumulate_sum(size_t n) {
  check(fmt::format("accumulate_sum N={} (double accumulation; adds; repeatable)", n),
        [&](Verdict& v) {
          const std::vector<double> x = rounded<float>(random_values(n, -2, 3, 103 + n));
          const double start = 0.25, scale = 0.5;
          long double sum = 0, magnitude = 0;
          for (double e : x) {
            sum += e;
            magnitude += std::fabs(e);
          }
          const double want = static_cast<double>(start + scale * sum);
          // As sum_of_squares, with the rounding bound of a sum of mixed signs taken on the sum
          // of magnitudes, then the scale and the addition of `start`.
          const double tol =
              0x1p-53 * ((64 + 4 * std::log2(n + 1.0)) * scale * static_cast<double>(magnitude) +
                         4 * std::fabs(want));
          const size_t ws = cuda::sum_workspace_bytes(n);
          std::unique_ptr<Buffer<double>> first;
          for (size_t offset : {0, 1, 0}) {
            Buffer<float> in(x, offset);
            Buffer<double> total(std::vector<double>{start}, 0), work(ws / sizeof(double));
            cuda::accumulate_sum(total.data(), in.data(), n, scale, ws ? work.data() : nullptr,
                                 nullptr);
            v.within(compare(total.values(), {want}, 0, tol), fmt::format("offset {}", offset));
            v.require(total.guard_intact() && work.guard_intact(), "wrote past the end");
            if (offset == 0) {
              if (first) v.require(total.same_bits(*first), "not repeatable");
              first = std::make_unique<Buffer<double>>(1);
              first->copy_from(total);
            }
          }
        });
}

void check_sum_of_squares(size_t n) {
  check(fmt::format("sum_of_squares N={} (double accumulation; repeatable)", n), [&](Verdict& v) {
    const std::vector<double> x = rounded<float>(random_values(n, -2, 2, 101 + n));
    // A plain sequential loop in long double: the double kernels' own sequential sum would be
    // less accurate (N roundings) than the kernel's tree of partial sums it is checked against.
    long double sum = 0;
    for (double e : x) sum += static_cast<long double>(e) * e;
    const double want = static_cast<double>(sum);
    // Squares of floats are exact in double; a positive sum through a chain of k additions is
    // within k roundings: a few dozen per thread, then the warp, block and partials trees.
    const double tol = 0x1p-53 * (64 + 4 * std::log2(n + 1.0)) * want;
    const size_t ws = cuda::sum_workspace_bytes(n);
    v.require(n > 0 || ws == 0, "workspace for N=0");
    std::unique_ptr<Buffer<double>> first;
    for (size_t offset : {0, 1, 0}) {
      Buffer<float> in(x, offset);
      Buffer<double> result(1), work(ws / sizeof(double));
      cuda::sum_of_squares(result.data(), in.data(), n, ws ? work.data() : nullptr, nullptr);
      v.within(compare(result.values(), {want}, 0, tol), fmt::format("offset {}", offset));
      v.require(result.guard_intact() && work.guard_intact(), "wrote past the end");
      if (offset == 0) {
        if (first) v.require(result.same_bits(*first), "not repeatable");
        first = std::make_unique<Buffer<double>>(1);
        first->copy_from(result);
      }
    }
    v.note(fmt::format("partial sums: {}", ws / sizeof(double)));
  });
}

void check_cross_entropy_all() {
  for (int V : cases({1, 2, 13, 211, 1000, 50257}, {13, 1000})) {
    check_cross_entropy<float>(3, V, 0, false);
    check_cross_entropy<bf16>(3, V, 0, false);
  }
  check_cross_entropy<float>(4, 50, 0, true);
  check_cross_entropy<bf16>(4, 50, 0, true);
  check_cross_entropy<float>(2, 300, 1e4, false);
}

void check_encoder_all() {
  struct Case {
    int B, T, C, V;
    bool one_token;
    Positions positions;
  };
  const Case cases[] = {{3, 5, 1, 11, false, Positions::kGpt2},
                        {3, 5, 54, 11, false, Positions::kGpt2},
                        {2, 7, 768, 5, false, Positions::kGpt2},
                        {4, 25, 20, 1000, true, Positions::kGpt2},
                        {2, 3, 1100, 3, false, Positions::kGpt2},
                        {1, 1, 8, 2, false, Positions::kGpt2},
                        {4, 64, 72, 50, false, Positions::kGpt2},
                        {3, 9, 20, 50257, false, Positions::kGpt2},  // 16 key bits
                        {4, 25, 20, 1000, false, Positions::kScattered},
                        {2, 7, 54, 11, true, Positions::kScattered},
                        {3, 5, 54, 11, false, Positions::kNone},
                        {4, 25, 20, 1000, true, Positions::kNone}};
  for (const Case& c : cases) {
    check_encoder<float>(c.B, c.T, c.C, c.V, c.one_token, c.positions);
    check_encoder<bf16>(c.B, c.T, c.C, c.V, c.one_token, c.positions);
  }
  check("encoder B*T=0 (no launch, no workspace)", [](Verdict& v) {
    v.require(cuda::encoder_backward_workspace_bytes(0, 5, 5) == 0, "workspace for N=0");
    const long long before = emu::counters().launches;
    cuda::encoder_forward<float, float>(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, nullptr);
    cuda::encoder_backward<float, float>(nullptr, 5, nullptr, 5, nullptr, nullptr, nullptr, 0, 8,
                                         nullptr, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

void check_optimizer() {
  for (size_t n : cases<size_t>({1, 5, 8, 1000, 4097}, {5, 1000})) check_adamw(n);
  for (size_t n : cases<size_t>({7, 4097}, {7})) check_adamw_clipped(n);
  for (size_t n : cases<size_t>({0, 1, 5, 1000, 100003, 1200007}, {0, 5, 100003})) {
    check_sum_of_squares(n);
    check_accumulate_sum(n);
  }
  if (!g_quick) check_sum_of_squares(4194311);  // the most blocks (1024), several quads a thread
}

// ---- attention_kernels.cu ----

// The CPU kernels in double on GPT-2's packed qkv [B*T, 3C] (q | k | v per row, each [NH, hs]),
// the layout the CUDA kernels read.
cpu::AttentionGeometry packed_geometry(int B, int T, int C, int NH) {
  cpu::AttentionGeometry g;
  g.batch = B;
  g.seq = T;
  g.heads = g.kv_heads = NH;
  g.head_dim = C / NH;
  g.ldq = g.ldk = g.ldv = 3 * static_cast<int64_t>(C);
  g.ldo = C;
  return g;
}

double default_scale(int C, int NH) { return 1 / std::sqrt(static_cast<double>(C / NH)); }

void cpu_attention_forward(double* out, double* att, const double* qkv, int B, int T, int C,
                           int NH) {
  cpu::attention_forward<double>(out, att, qkv, qkv + C, qkv + 2 * C, nullptr,
                                 packed_geometry(B, T, C, NH), default_scale(C, NH));
}

void cpu_attention_backward(double* dqkv, double* scratch, const double* dout, const double* qkv,
                            const double* att, int B, int T, int C, int NH) {
  cpu::attention_backward<double>(dqkv, dqkv + C, dqkv + 2 * C, nullptr, scratch, dout, att, qkv,
                                  qkv + C, qkv + 2 * C, nullptr, packed_geometry(B, T, C, NH),
                                  default_scale(C, NH));
}

// The causal attention of qkv[B,T,3C] in double: out and the probabilities from the CPU kernel;
// from a plain loop, lse = log sum exp of each row's scaled scores, the largest score magnitude
// scale sum_i |q_i k_i| (the size of a score's rounding error, in ulps), and for every output
// element the sum of the magnitudes of the terms it adds up (sum_j P_tj |v_j|), the scale of its
// rounding errors.
struct AttentionForward {
  std::vector<double> out, att, lse, magnitude;
  double score_magnitude = 0;
};

AttentionForward attention_forward_reference(const std::vector<double>& qkv, int B, int T, int C,
                                             int NH) {
  const int hs = C / NH;
  const size_t C3 = 3 * static_cast<size_t>(C);
  AttentionForward r;
  r.out.resize(static_cast<size_t>(B) * T * C);
  r.magnitude.assign(r.out.size(), 0.0);
  r.att.resize(static_cast<size_t>(B) * NH * T * T);
  r.lse.resize(static_cast<size_t>(B) * NH * T);
  cpu_attention_forward(r.out.data(), r.att.data(), qkv.data(), B, T, C, NH);
  const double scale = 1 / std::sqrt(static_cast<double>(hs));
  std::vector<double> scores(T);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const double* P = &r.att[(static_cast<size_t>(b) * NH + h) * T * T];
      for (int t = 0; t < T; ++t) {
        const double* q = &qkv[(static_cast<size_t>(b) * T + t) * C3 + h * hs];
        double* mag = &r.magnitude[(static_cast<size_t>(b) * T + t) * C + h * hs];
        double max = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          const double* k = &qkv[(static_cast<size_t>(b) * T + j) * C3 + C + h * hs];
          const double* v = k + C;
          double dot = 0, dot_magnitude = 0;
          for (int i = 0; i < hs; ++i) {
            dot += q[i] * k[i];
            dot_magnitude += std::fabs(q[i] * k[i]);
            mag[i] += P[static_cast<size_t>(t) * T + j] * std::fabs(v[i]);
          }
          scores[j] = dot * scale;
          max = std::max(max, scores[j]);
          r.score_magnitude = std::max(r.score_magnitude, dot_magnitude * scale);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += std::exp(scores[j] - max);
        r.lse[(static_cast<size_t>(b) * NH + h) * T + t] = max + std::log(sum);
      }
    }
  }
  return r;
}

// The gradient of the forward pass for dout as attention_backward must compute it from the
// forward output it is given, and the magnitudes of its terms. The CPU kernel gives the exact
// gradient; it is corrected for the row dot products D = rowsum(dout * out) being formed from the
// stored (rounded) out rather than the exact one: with P the probabilities and dD = D_exact -
// D_stored, the kernel's dS = P (dP - D_stored) adds P dD to the exact dS, so dq_t gains
// scale dD_t sum_j P_tj k_j and dk_j gains scale sum_t P_tj dD_t q_t. Magnitudes: dS_tj is made
// of P_tj (|dP_tj| + |D_t|); dq_t of scale sum_j |dS_tj| |k_j|, dk_j of scale sum_t |dS_tj| |q_t|,
// dv_j of sum_t P_tj |dout_t|.
struct AttentionBackward {
  std::vector<double> dqkv, magnitude;
};

AttentionBackward attention_backward_reference(const std::vector<double>& qkv,
                                               const std::vector<double>& dout,
                                               const AttentionForward& fwd,
                                               const std::vector<double>& stored_out, int B, int T,
                                               int C, int NH) {
  const int hs = C / NH;
  const size_t C3 = 3 * static_cast<size_t>(C);
  AttentionBackward r;
  r.dqkv.assign(qkv.size(), 0.0);
  r.magnitude.assign(qkv.size(), 0.0);
  std::vector<double> scratch(fwd.att.size());
  cpu_attention_backward(r.dqkv.data(), scratch.data(), dout.data(), qkv.data(), fwd.att.data(), B,
                         T, C, NH);
  const double scale = 1 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const double* P = &fwd.att[(static_cast<size_t>(b) * NH + h) * T * T];
      for (int t = 0; t < T; ++t) {
        const size_t row = (static_cast<size_t>(b) * T + t) * C + h * hs;
        const size_t qt = (static_cast<size_t>(b) * T + t) * C3 + h * hs;
        double dd = 0, d_stored = 0;
        for (int i = 0; i < hs; ++i) {
          dd += dout[row + i] * (fwd.out[row + i] - stored_out[row + i]);
          d_stored += dout[row + i] * stored_out[row + i];
        }
        for (int j = 0; j <= t; ++j) {
          const double p = P[static_cast<size_t>(t) * T + j];
          const size_t kj = (static_cast<size_t>(b) * T + j) * C3 + C + h * hs;
          double dp = 0;
          for (int i = 0; i < hs; ++i) dp += dout[row + i] * qkv[kj + C + i];
          const double w = scale * dd * p;
          const double ds_magnitude = scale * p * (std::fabs(dp) + std::fabs(d_stored));
          for (int i = 0; i < hs; ++i) {
            r.dqkv[qt + i] += w * qkv[kj + i];
            r.dqkv[kj + i] += w * qkv[qt + i];
            r.magnitude[qt + i] += ds_magnitude * std::fabs(qkv[kj + i]);
            r.magnitude[kj + i] += ds_magnitude * std::fabs(qkv[qt + i]);
            r.magnitude[kj + C + i] += p * std::fabs(dout[row + i]);
          }
        }
      }
    }
  }
  return r;
}

// Columns [part * C, part * C + C) of every row of a [rows, 3C] tensor: q, k or v.
std::vector<double> qkv_part(const std::vector<double>& x, int C, int part) {
  const size_t rows = x.size() / (3 * static_cast<size_t>(C));
  std::vector<double> out;
  out.reserve(rows * C);
  for (size_t r = 0; r < rows; ++r) {
    out.insert(out.end(), x.begin() + r * 3 * C + part * C, x.begin() + r * 3 * C + part * C + C);
  }
  return out;
}


template <typename Act>
void check_attention(int B, int T, int C, int NH, double qscale, size_t offset, uint32_t seed) {
  const int hs = C / NH;
  const size_t nqkv = static_cast<size_t>(B) * T * 3 * C, nout = static_cast<size_t>(B) * T * C;
  const bool bf = std::is_same_v<Act, bf16>;
  // The dispatch attention_kernels.h documents: tensor cores for bf16, hs % 16 == 0 and 16-byte
  // aligned tensors, up to hs 128 forward and 64 backward.
  const bool mma_forward = bf && hs % 16 == 0 && hs <= 128 && offset % 8 == 0;
  const bool mma_backward = bf && hs % 16 == 0 && hs <= 64 && offset % 8 == 0;
  std::vector<double> qkv = random_values(nqkv, -1.7, 1.7, seed);
  for (auto& x : qkv) x *= qscale;
  qkv = rounded<Act>(qkv);
  const std::vector<double> dout = rounded<Act>(random_values(nout, -1, 1, seed + 1));
  const AttentionForward ref = attention_forward_reference(qkv, B, T, C, NH);
  const AttentionTolerance tol = attention_tolerance<Act>(T, ref.score_magnitude);
  const std::string shape =
      fmt::format("{} B={} T={} C={} NH={} (hs {}{}{})", type_name<Act>(), B, T, C, NH, hs,
                  qscale > 1 ? ", peaky" : "", offset ? ", misaligned" : "");
  Buffer<Act> in(qkv, offset), d(dout, offset), out(nout, offset);
  Buffer<float> lse(static_cast<size_t>(B) * NH * T);
  bool forward_ok = false;
  check(fmt::format("attention_forward {} [{}]", shape, mma_forward ? "mma" : "simt"),
        [&](Verdict& v) {
          const long long mma_before = emu::counters().mma_calls;
          cuda::attention_forward<Act>(out.data(), lse.data(), in.data(), B, T, C, NH, nullptr);
          const bool used_mma = emu::counters().mma_calls > mma_before;
          v.require(used_mma == mma_forward,
                    fmt::format("ran the {} path", used_mma ? "tensor-core" : "SIMT"));
          attention_close(v, out.values(), ref.out, ref.magnitude, tol, "out");
          v.within(compare(lse.values(), ref.lse, 4 * kF32, tol.lse), "lse");
          v.require(out.guard_intact() && lse.guard_intact(), "wrote past the end");
          forward_ok = v.ok();
        });
  check(fmt::format("attention_backward {} [{}] (accumulates; deterministic)", shape,
                    mma_backward ? "mma" : "simt"),
        [&](Verdict& v) {
          if (!forward_ok) {
            v.require(false, "skipped: the forward pass failed");
            return;
          }
          const AttentionBackward want =
              attention_backward_reference(qkv, dout, ref, out.values(), B, T, C, NH);
          const size_t ws = cuda::attention_backward_workspace_bytes(B, T, NH);
          const std::vector<double> zero(nqkv, 0.0);
          Buffer<Act> g(zero, offset), g2(zero, offset);
          Buffer<unsigned char> work(ws);
          const long long mma_before = emu::counters().mma_calls;
          cuda::attention_backward<Act>(g.data(), work.data(), d.data(), out.data(), in.data(),
                                        lse.data(), B, T, C, NH, nullptr);
          const bool used_mma = emu::counters().mma_calls > mma_before;
          v.require(used_mma == mma_backward,
                    fmt::format("ran the {} path", used_mma ? "tensor-core" : "SIMT"));
          const std::vector<double> got = g.values();
          const char* names[] = {"dq", "dk", "dv"};
          for (int part = 0; part < 3; ++part) {
            attention_close(v, qkv_part(got, C, part), qkv_part(want.dqkv, C, part),
                            qkv_part(want.magnitude, C, part), tol, names[part]);
          }
          v.require(g.guard_intact() && work.guard_intact(), "wrote past the end");
          cuda::attention_backward<Act>(g2.data(), work.data(), d.data(), out.data(), in.data(),
                                        lse.data(), B, T, C, NH, nullptr);
          v.require(g2.same_bits(g), "a second run gives different bits");
          // Accumulation: onto a nonzero dqkv, the same increments, rounded once more.
          const std::vector<double> init = rounded<Act>(random_values(nqkv, -1, 1, seed + 2));
          Buffer<Act> acc(init, offset);
          cuda::attention_backward<Act>(acc.data(), work.data(), d.data(), out.data(), in.data(),
                                        lse.data(), B, T, C, NH, nullptr);
          std::vector<double> sum(nqkv);
          for (size_t i = 0; i < nqkv; ++i) sum[i] = init[i] + got[i];
          const Worst accumulated = compare(acc.values(), sum, [&](size_t i) {
            return storage_tolerance<Act>() * (std::fabs(init[i]) + std::fabs(got[i]));
          });
          v.require(accumulated.ratio <= 1,
                    fmt::format("accumulating onto a nonzero dqkv is off by {:.3g}x at [{}]",
                                accumulated.ratio, accumulated.index));
        });
}

template <typename Act>
void check_attention_decode(int B, int pos, int max_T, int C, int NH, uint32_t seed) {
  check(fmt::format("attention_decode {} B={} pos={} max_T={} C={} NH={} (hs {})", type_name<Act>(),
                    B, pos, max_T, C, NH, C / NH),
        [&](Verdict& v) {
          const size_t ncache = static_cast<size_t>(B) * max_T * C;
          const std::vector<double> k0 = rounded<Act>(random_values(ncache, -1.7, 1.7, seed));
          const std::vector<double> v0 = rounded<Act>(random_values(ncache, -1.7, 1.7, seed + 1));
          const std::vector<double> qkv =
              rounded<Act>(random_values(static_cast<size_t>(B) * 3 * C, -1.7, 1.7, seed + 2));
          std::vector<double> want(static_cast<size_t>(B) * C), want_k = k0, want_v = v0;
          cpu::attention_decode<double>(want.data(), C, qkv.data(), 3 * C, qkv.data() + C, 3 * C,
                                        qkv.data() + 2 * C, 3 * C, want_k.data(), want_v.data(),
                                        B, pos, max_T, NH, C / NH);
          // The largest score magnitude and, per output, the magnitudes of its terms, as above.
          const int hs = C / NH;
          double score_magnitude = 0;
          std::vector<double> magnitude(want.size(), 0.0), scores(pos + 1);
          for (int b = 0; b < B; ++b) {
            for (int h = 0; h < NH; ++h) {
              const size_t cache = (static_cast<size_t>(b) * NH + h) * max_T * hs;
              const double* q = &qkv[static_cast<size_t>(b) * 3 * C + h * hs];
              double max = -INFINITY, sum = 0;
              for (int t = 0; t <= pos; ++t) {
                double dot = 0, dot_magnitude = 0;
                for (int i = 0; i < hs; ++i) {
                  dot += q[i] * want_k[cache + t * hs + i];
                  dot_magnitude += std::fabs(q[i] * want_k[cache + t * hs + i]);
                }
                scores[t] = dot / std::sqrt(static_cast<double>(hs));
                max = std::max(max, scores[t]);
                score_magnitude =
                    std::max(score_magnitude, dot_magnitude / std::sqrt(static_cast<double>(hs)));
              }
              for (int t = 0; t <= pos; ++t) sum += std::exp(scores[t] - max);
              for (int t = 0; t <= pos; ++t) {
                const double p = std::exp(scores[t] - max) / sum;
                for (int i = 0; i < hs; ++i) {
                  magnitude[static_cast<size_t>(b) * C + h * hs + i] +=
                      p * std::fabs(want_v[cache + t * hs + i]);
                }
              }
            }
          }
          Buffer<Act> kc(k0, 0), vc(v0, 0), in(qkv, 0), out(want.size(), 0);
          cuda::attention_decode<Act>(out.data(), in.data(), kc.data(), vc.data(), B, pos, max_T, C,
                                      NH, nullptr);
          v.within(compare(kc.values(), want_k, 0, 0), "k_cache (only row pos written)");
          v.within(compare(vc.values(), want_v, 0, 0), "v_cache (only row pos written)");
          attention_close(v, out.values(), want, magnitude,
                          attention_tolerance<Act>(pos + 1, score_magnitude), "out");
          v.require(out.guard_intact() && kc.guard_intact() && vc.guard_intact(),
                    "wrote past the end");
        });
}

// Which attention cases to run: the training kernels in fp32 or bf16, and decoding (split so that
// ctest can run the long sections side by side). Seeds follow the case's place in the whole list,
// so each case sees the same data whichever part runs.
struct AttentionParts {
  bool f32, bf16, decode;
};

void check_attention_parts(AttentionParts parts) {
  struct Case {
    int B, T, C, NH;
    double qscale;
    size_t offset;
    bool quick;  // also run under --quick
  };
  // Every head-size bucket of the SIMT kernels (32, 64, 128), head sizes that are and are not
  // multiples of 16, T of 1, below a tile, a few tiles with a ragged last one; peaky softmaxes
  // (large scores) test the online rescaling; an offset of one element forces the SIMT path.
  const Case f32_cases[] = {
      {2, 13, 54, 3, 1, 0, true},    {1, 131, 36, 2, 1, 0, false}, {1, 1, 54, 3, 1, 0, true},
      {2, 70, 128, 2, 1, 0, true},   {1, 67, 256, 2, 1, 0, true},  {1, 40, 3, 3, 1, 0, false},
      {1, 33, 66, 2, 1, 0, false},   {1, 29, 200, 2, 1, 0, false}, {1, 45, 54, 3, 4, 0, false},
      {1, 131, 128, 2, 1, 1, false}, {1, 1024, 64, 1, 1, 0, false}};
  const Case bf16_cases[] = {
      {2, 13, 128, 2, 1, 0, true},   {1, 131, 128, 2, 1, 0, true}, {1, 70, 256, 2, 1, 0, true},
      {2, 67, 48, 3, 1, 0, false},   {1, 1, 160, 2, 1, 0, false},  {1, 64, 96, 1, 3, 0, false},
      {2, 13, 54, 3, 1, 0, true},    {1, 131, 36, 2, 1, 0, false}, {1, 131, 128, 2, 1, 1, true},
      {2, 200, 128, 2, 2, 0, false}, {1, 1024, 64, 1, 1, 0, false}};
  uint32_t seed = 1000;
  for (const Case& c : f32_cases) {
    seed += 10;
    if (parts.f32 && (c.quick || !g_quick))
      check_attention<float>(c.B, c.T, c.C, c.NH, c.qscale, c.offset, seed);
  }
  for (const Case& c : bf16_cases) {
    seed += 10;
    if (parts.bf16 && (c.quick || !g_quick))
      check_attention<bf16>(c.B, c.T, c.C, c.NH, c.qscale, c.offset, seed);
  }
  struct Decode {
    int B, pos, max_T, C, NH;
    bool quick;
  };
  const Decode f32_decode[] = {{2, 0, 8, 54, 3, false},       {2, 5, 8, 54, 3, true},
                               {1, 37, 40, 128, 2, true},     {1, 100, 101, 256, 2, true},
                               {1, 1023, 1024, 64, 1, false}, {2, 70, 90, 3, 3, false}};
  const Decode bf16_decode[] = {
      {2, 37, 64, 128, 2, true}, {1, 1023, 1024, 128, 1, false}, {2, 5, 8, 54, 3, false}};
  for (const Decode& c : f32_decode) {
    seed += 10;
    if (parts.decode && (c.quick || !g_quick))
      check_attention_decode<float>(c.B, c.pos, c.max_T, c.C, c.NH, seed);
  }
  for (const Decode& c : bf16_decode) {
    seed += 10;
    if (parts.decode && (c.quick || !g_quick))
      check_attention_decode<bf16>(c.B, c.pos, c.max_T, c.C, c.NH, seed);
  }
}

// ---- paged_attention_kernels.cu ----

template <typename Act>
void check_kv_cache_write(int N, int KV, int hd, int bs, int blocks, size_t offset,
                          uint32_t seed) {
  check(fmt::format("kv_cache_write {} N={} kv_heads={} head_dim={} block_size={} offset {} "
                    "(strided rows, skipped slots; bit-exact)",
                    type_name<Act>(), N, KV, hd, bs, offset),
        [&](Verdict& v) {
          const int64_t width = int64_t{KV} * hd, ld = width + 3;  // rows of a wider projection
          const int64_t capacity = int64_t{blocks} * bs;
          const size_t cache = static_cast<size_t>(capacity * width);
          const std::vector<double> k0 = rounded<Act>(random_values(cache, -1, 1, seed));
          const std::vector<double> v0 = rounded<Act>(random_values(cache, -1, 1, seed + 1));
          const size_t rows = static_cast<size_t>(N) * ld;
          const std::vector<double> k = rounded<Act>(random_values(rows, -2, 2, seed + 2));
          const std::vector<double> vv = rounded<Act>(random_values(rows, -2, 2, seed + 3));
          // Distinct slots in random order; one negative and one past the cache, both skipped.
          std::vector<int32_t> slots(capacity);
          std::iota(slots.begin(), slots.end(), 0);
          std::shuffle(slots.begin(), slots.end(), std::mt19937(seed + 4));
          slots.resize(N);
          std::vector<int32_t> reference_slots = slots;
          if (N > 2) {
            slots[N / 2] = reference_slots[N / 2] = -1;
            slots[N - 1] = static_cast<int32_t>(capacity);
            reference_slots[N - 1] = -1;
          }
          std::vector<double> want_k = k0, want_v = v0;
          cpu::kv_cache_write<double>(want_k.data(), want_v.data(), k.data(), ld, vv.data(), ld,
                                      reference_slots.data(), N, KV, hd);
          Buffer<Act> kc(k0, offset), vc(v0, 0), kin(k, offset), vin(vv, 1);
          Buffer<int32_t> sl(slots, 0);
          cuda::kv_cache_write<Act>(kc.data(), vc.data(), kin.data(), ld, vin.data(), ld,
                                    sl.data(), N, capacity, KV, hd, nullptr);
          v.within(compare(kc.values(), want_k, 0, 0), "k_cache");
          v.within(compare(vc.values(), want_v, 0, 0), "v_cache");
          v.require(kc.guard_intact() && vc.guard_intact(), "wrote past the end");
        });
}

struct PagedCase {
  int H, KV, hd, bs;
  std::vector<int> context, rows;  // per sequence
  int window;
  bool sinks;
  size_t offset;  // elements q and out lie past 16-byte alignment
  bool quick;     // also run under --quick
};

// A paged layout for the sequences of a case: each sequence's blocks drawn without repeats from
// a shuffled pool (two more blocks than needed, never used), block tables with -1 past each
// context and, with a window, for blocks no row of the sequence can see.
struct PagedLayout {
  int sequences = 0, max_blocks = 0, blocks = 0, rows = 0, max_context = 0;
  std::vector<int32_t> tables, query_start, context;
};

PagedLayout paged_layout(const PagedCase& c, uint32_t seed) {
  PagedLayout l;
  l.sequences = static_cast<int>(c.context.size());
  for (int ctx : c.context) {
    l.max_blocks = std::max(l.max_blocks, (ctx + c.bs - 1) / c.bs);
    l.blocks += (ctx + c.bs - 1) / c.bs;
    l.max_context = std::max(l.max_context, ctx);
  }
  l.max_blocks += 1;
  l.blocks += 2;
  std::vector<int32_t> pool(l.blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(seed));
  l.tables.assign(static_cast<size_t>(l.sequences) * l.max_blocks, -1);
  l.query_start = {0};
  size_t next = 0;
  for (int s = 0; s < l.sequences; ++s) {
    const int ctx = c.context[s], first = ctx - c.rows[s];
    const int lo = c.window > 0 ? std::max(0, first - c.window + 1) : 0;
    for (int blk = 0; blk * c.bs < ctx; ++blk) {
      const int32_t id = pool[next++];
      if ((blk + 1) * c.bs > lo) l.tables[static_cast<size_t>(s) * l.max_blocks + blk] = id;
    }
    l.query_start.push_back(l.query_start.back() + c.rows[s]);
    l.context.push_back(ctx);
  }
  l.rows = l.query_start.back();
  return l;
}

template <typename Act>
void check_paged_attention(const PagedCase& c, uint32_t seed) {
  const PagedLayout l = paged_layout(c, seed);
  std::string shape;
  for (size_t s = 0; s < c.context.size(); ++s) {
    shape += fmt::format("{}{}/{}", s ? " " : "", c.rows[s], c.context[s]);
  }
  check(fmt::format("paged_attention {} heads {}/{} hd {} block {} rows/context {}{}{}{}",
                    type_name<Act>(), c.H, c.KV, c.hd, c.bs, shape,
                    c.window ? fmt::format(" window {}", c.window) : "", c.sinks ? " sinks" : "",
                    c.offset ? fmt::format(" offset {}", c.offset) : ""),
        [&](Verdict& v) {
          const int64_t width = int64_t{c.KV} * c.hd, ldq = int64_t{c.H} * c.hd + 5,
                        ldo = int64_t{c.H} * c.hd;
          const size_t cache = static_cast<size_t>(l.blocks) * c.bs * width;
          const std::vector<double> kc = rounded<Act>(random_values(cache, -1.7, 1.7, seed + 1));
          const std::vector<double> vc = rounded<Act>(random_values(cache, -1.7, 1.7, seed + 2));
          const std::vector<double> q =
              rounded<Act>(random_values(static_cast<size_t>(l.rows) * ldq, -1.7, 1.7, seed + 3));
          const std::vector<double> sinks = rounded<float>(random_values(c.H, -1, 2, seed + 4));
          const double scale = 1 / std::sqrt(static_cast<double>(c.hd));
          std::vector<double> want(static_cast<size_t>(l.rows) * ldo);
          cpu::PagedGeometry g;
          g.heads = c.H;
          g.kv_heads = c.KV;
          g.head_dim = c.hd;
          g.window = c.window;
          g.block_size = c.bs;
          g.sequences = l.sequences;
          g.max_blocks = l.max_blocks;
          g.ldq = ldq;
          g.ldo = ldo;
          cpu::paged_attention<double>(want.data(), q.data(), kc.data(), vc.data(),
                                       l.tables.data(), l.query_start.data(), l.context.data(),
                                       c.sinks ? std::vector<float>(sinks.begin(), sinks.end()).data()
                                               : nullptr,
                                       g, scale);
          // The largest score magnitude and, per output, the magnitudes of its terms (see
          // attention_tolerance).
          double score_magnitude = 0;
          std::vector<double> magnitude(want.size(), 0.0);
          for (int s = 0; s < l.sequences; ++s) {
            for (int r = 0; r < c.rows[s]; ++r) {
              const int row = l.query_start[s] + r, pos = c.context[s] - c.rows[s] + r;
              const int lo = c.window > 0 ? std::max(0, pos - c.window + 1) : 0;
              for (int h = 0; h < c.H; ++h) {
                const int kvh = h / (c.H / c.KV);
                auto key = [&](const std::vector<double>& cache_values, int j) {
                  const int32_t block = l.tables[static_cast<size_t>(s) * l.max_blocks + j / c.bs];
                  return &cache_values[(static_cast<size_t>(block) * c.bs + j % c.bs) * width +
                                       static_cast<size_t>(kvh) * c.hd];
                };
                const double* qr = &q[static_cast<size_t>(row) * ldq + static_cast<size_t>(h) * c.hd];
                std::vector<double> scores;
                double max = c.sinks ? sinks[h] : -INFINITY;
                for (int j = lo; j <= pos; ++j) {
                  double dot = 0, dot_magnitude = 0;
                  for (int i = 0; i < c.hd; ++i) {
                    dot += qr[i] * key(kc, j)[i];
                    dot_magnitude += std::fabs(qr[i] * key(kc, j)[i]);
                  }
                  scores.push_back(dot * scale);
                  max = std::max(max, dot * scale);
                  score_magnitude = std::max(score_magnitude, dot_magnitude * scale);
                }
                double sum = c.sinks ? std::exp(sinks[h] - max) : 0;
                for (double x : scores) sum += std::exp(x - max);
                double* mag = &magnitude[static_cast<size_t>(row) * ldo +
                                         static_cast<size_t>(h) * c.hd];
                for (int j = lo; j <= pos; ++j) {
                  const double p = std::exp(scores[j - lo] - max) / sum;
                  for (int i = 0; i < c.hd; ++i) mag[i] += p * std::fabs(key(vc, j)[i]);
                }
              }
            }
          }
          Buffer<Act> qb(q, c.offset), kb(kc, 0), vb(vc, 0), out(want.size(), c.offset);
          Buffer<int32_t> tb(l.tables, 0), sb(l.query_start, 0), cb(l.context, 0);
          Buffer<float> sk(sinks, 0);
          cuda::PagedAttentionShape shape;
          shape.rows = l.rows;
          shape.heads = c.H;
          shape.kv_heads = c.KV;
          shape.head_dim = c.hd;
          shape.window = c.window;
          shape.block_size = c.bs;
          shape.blocks = l.blocks;
          shape.sequences = l.sequences;
          shape.max_blocks = l.max_blocks;
          shape.ldq = ldq;
          shape.ldo = ldo;
          shape.scale = static_cast<float>(scale);
          cuda::paged_attention<Act>(out.data(), qb.data(), kb.data(), vb.data(), tb.data(),
                                     sb.data(), cb.data(), c.sinks ? sk.data() : nullptr, shape,
                                     nullptr);
          attention_close(v, out.values(), want, magnitude,
                          attention_tolerance<Act>(l.max_context, score_magnitude), "out");
          v.require(out.guard_intact(), "wrote past the end");
        });
}

// Metadata out of range: a block id beyond the cache, a context longer than the block table, and
// a slot beyond the cache. The rows they touch come out NaN (nothing outside the cache is read);
// the other sequences' rows are unaffected.
template <typename Act>
void check_paged_bad_metadata(uint32_t seed) {
  check(fmt::format("paged_attention {} bad metadata (NaN rows, other rows intact)",
                    type_name<Act>()),
        [&](Verdict& v) {
          const PagedCase c{4, 2, 32, 4, {10, 7, 9}, {2, 1, 3}, 0, false, 0, true};
          PagedLayout l = paged_layout(c, seed);
          const int64_t width = int64_t{c.KV} * c.hd, ld = int64_t{c.H} * c.hd;
          const size_t cache = static_cast<size_t>(l.blocks) * c.bs * width;
          const std::vector<double> kc = rounded<Act>(random_values(cache, -1, 1, seed + 1));
          const std::vector<double> vc = rounded<Act>(random_values(cache, -1, 1, seed + 2));
          const std::vector<double> q =
              rounded<Act>(random_values(static_cast<size_t>(l.rows) * ld, -1, 1, seed + 3));
          std::vector<double> want(static_cast<size_t>(l.rows) * ld);
          cpu::PagedGeometry g;
          g.heads = c.H;
          g.kv_heads = c.KV;
          g.head_dim = c.hd;
          g.block_size = c.bs;
          g.sequences = l.sequences;
          g.max_blocks = l.max_blocks;
          g.ldq = g.ldo = ld;
          cpu::paged_attention<double>(want.data(), q.data(), kc.data(), vc.data(),
                                       l.tables.data(), l.query_start.data(), l.context.data(),
                                       nullptr, g, 1 / std::sqrt(static_cast<double>(c.hd)));
          l.tables[static_cast<size_t>(1) * l.max_blocks] = l.blocks + 3;  // sequence 1
          l.context[2] = l.max_blocks * c.bs + 1;                            // sequence 2
          Buffer<Act> qb(q, 0), kb(kc, 0), vb(vc, 0), out(want.size(), 0);
          Buffer<int32_t> tb(l.tables, 0), sb(l.query_start, 0), cb(l.context, 0);
          cuda::PagedAttentionShape shape;
          shape.rows = l.rows;
          shape.heads = c.H;
          shape.kv_heads = c.KV;
          shape.head_dim = c.hd;
          shape.block_size = c.bs;
          shape.blocks = l.blocks;
          shape.sequences = l.sequences;
          shape.max_blocks = l.max_blocks;
          shape.ldq = shape.ldo = ld;
          shape.scale = static_cast<float>(1 / std::sqrt(static_cast<double>(c.hd)));
          cuda::paged_attention<Act>(out.data(), qb.data(), kb.data(), vb.data(), tb.data(),
                                     sb.data(), cb.data(), nullptr, shape, nullptr);
          const std::vector<double> got = out.values();
          const size_t good_end = static_cast<size_t>(l.query_start[1]) * ld;
          size_t not_nan = 0;
          for (size_t i = good_end; i < got.size(); ++i) not_nan += !std::isnan(got[i]);
          v.require(not_nan == 0, fmt::format("{} outputs of the bad sequences are not NaN",
                                              not_nan));
          const std::vector<double> good(got.begin(), got.begin() + good_end);
          const std::vector<double> want_good(want.begin(), want.begin() + good_end);
          v.within(compare(good, want_good, 8 * storage_tolerance<Act>(), 1e-5),
                   "the good sequence's rows");
          v.require(out.guard_intact(), "wrote past the end");
        });
}

void check_paged_all() {
  uint32_t seed = 3000;
  for (const auto& [N, KV, hd, bs, offset, quick] :
       {std::tuple{7, 2, 40, 5, size_t{0}, true}, std::tuple{1, 1, 64, 16, size_t{1}, false},
        std::tuple{40, 8, 128, 16, size_t{0}, false}, std::tuple{12, 3, 3, 1, size_t{2}, true}}) {
    seed += 10;
    if (!quick && g_quick) continue;
    check_kv_cache_write<float>(N, KV, hd, bs, 2 * N, offset, seed);
    check_kv_cache_write<bf16>(N, KV, hd, bs, 2 * N, offset, seed);
  }
  // Every head-size bucket (32, 64, 128) and sizes between; multi-head, grouped-query and
  // multi-query heads; decode rows, whole prompts and prompt chunks; a sequence with no rows;
  // block sizes of 1 to 16; windows; sinks; misaligned q and out.
  const PagedCase cases[] = {
      {4, 4, 32, 16, {1, 17, 40}, {1, 1, 1}, 0, false, 0, true},
      {6, 2, 40, 5, {37, 5, 18}, {37, 1, 6}, 0, true, 0, true},
      {8, 1, 64, 16, {70, 33}, {20, 33}, 16, true, 0, false},
      {2, 2, 100, 3, {9, 4, 20}, {3, 0, 20}, 0, false, 1, true},
      {3, 1, 128, 1, {12}, {12}, 5, true, 0, false},
      {2, 2, 8, 7, {300}, {2}, 0, false, 3, false},
      {4, 2, 64, 16, {129, 64}, {1, 1}, 100, true, 0, true},
  };
  for (const PagedCase& c : cases) {
    seed += 10;
    if (!c.quick && g_quick) continue;
    check_paged_attention<float>(c, seed);
    check_paged_attention<bf16>(c, seed);
  }
  check_paged_bad_metadata<float>(seed + 1);
  check_paged_bad_metadata<bf16>(seed + 2);
  check("paged kernels with no rows (no launch)", [](Verdict& v) {
    const long long before = emu::counters().launches;
    cuda::kv_cache_write<float>(nullptr, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0, 1, 8,
                                nullptr);
    cuda::paged_attention<float>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                 nullptr, cuda::PagedAttentionShape{}, nullptr);
    v.require(emu::counters().launches == before, "launched");
  });
}

void check_attention_all() { check_attention_parts({true, true, true}); }
void check_attention_f32() { check_attention_parts({true, false, false}); }
void check_attention_bf16() { check_attention_parts({false, true, false}); }
void check_attention_decode_all() { check_attention_parts({false, false, true}); }
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> sections;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      g_quick = true;
    } else {
      sections.push_back(arg);
    }
  }
  struct Section {
    const char* name;
    void (*run)();
    bool part = false;  // a part of another section: runs only when named
  };
  const Section all[] = {
      {"emulator", check_emulator},       {"elementwise", check_elementwise},
      {"layernorm", check_layernorm},     {"cross_entropy", check_cross_entropy_all},
      {"encoder", check_encoder_all},     {"optimizer", check_optimizer},
      {"attention", check_attention_all}, {"paged", check_paged_all},
      {"norm_rope", check_norm_rope},     {"moe", check_moe},
      {"expert_linear", check_expert_linear}, {"attention_gqa", check_attention_gqa},
      // The parts of "attention", for running side by side.
      {"attention_f32", check_attention_f32, true},
      {"attention_bf16", check_attention_bf16, true},
      {"attention_decode", check_attention_decode_all, true},
  };
  for (const auto& s : sections) {
    bool known = false;
    for (const auto& a : all) known |= s == a.name;
    if (!known) {
      fmt::print(stderr, "kernel_checks: unknown section '{}'\n", s);
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  for (const auto& a : all) {
    if (sections.empty() ? a.part
                         : std::find(sections.begin(), sections.end(), a.name) == sections.end()) {
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    fmt::print("== {}\n", a.name);
    a.run();
    fmt::print("   ({:.1f} s)\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  check("every launch was followed by check_launch", [](Verdict& v) {
    v.require(emu::counters().unchecked_launches == 0,
              fmt::format("{} launches were not", emu::counters().unchecked_launches.load()));
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{}: {} checks passed, {} failed; {} launches, {} blocks in {:.1f} s\n",
             g_failed ? "FAILED" : "PASSED", g_passed, g_failed, emu::counters().launches.load(),
             emu::counters().blocks.load(), seconds);
  return g_failed ? 1 : 0;
}
