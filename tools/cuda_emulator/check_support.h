// What every file of the CUDA kernel checks shares (kernel_checks.cc and the *_checks.cc files):
// test tensors that behave like device memory (NaN-filled, misaligned on purpose, guarded against
// writes past their end), comparisons against a reference within a tolerance, and the check()
// that runs one check and prints its line. Header-only: each check file includes it.
#pragma once

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
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_types.h"
#include "core/dtype.h"
#include "emulator.h"

namespace switchyard::backend::cpu {}  // the CPU kernels, where a check file includes them

namespace checks {

namespace cpu = switchyard::backend::cpu;
namespace cuda = switchyard::backend::cuda;
using cuda::bf16;

inline bool g_quick = false;

// The full list of cases, or under --quick the short one, which still runs every kernel, every
// instantiation that differs in its synchronisation, and every path once.
template <typename T>
std::vector<T> cases(std::initializer_list<T> full, std::initializer_list<T> quick) {
  return g_quick ? std::vector<T>(quick) : std::vector<T>(full);
}

// ---- element types ----

template <typename T>
constexpr const char* type_name() {
  return std::is_same_v<T, float> ? "f32" : "bf16";
}

// Unit roundoff of float: the relative error of one float operation.
constexpr double kF32 = 0x1p-24;

// The relative tolerance of a value stored as T after float arithmetic: one ulp of T (its
// rounding is at most half an ulp, a bound that near-ties reach).
template <typename T>
constexpr double storage_tolerance() {
  return std::is_same_v<T, float> ? 0x1p-23 : 0x1p-7;
}

inline uint16_t bits_of(bf16 x) { return static_cast<__nv_bfloat16_raw>(x).x; }

inline bf16 bf16_from_bits(uint16_t u) {
  __nv_bfloat16_raw raw;
  raw.x = u;
  return bf16(raw);
}

inline double to_double(float x) { return x; }
inline double to_double(bf16 x) { return switchyard::bf16_to_float(bits_of(x)); }
inline double to_double(double x) { return x; }

// x rounded to T to nearest even (through float for bf16, with the repository's own conversion).
template <typename T>
T from_double(double x) {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else if constexpr (std::is_same_v<T, float>) {
    return static_cast<float>(x);
  } else {
    return bf16_from_bits(switchyard::float_to_bf16(static_cast<float>(x)));
  }
}

// x as a kernel stores it: rounded to float (its arithmetic) and then to T.
template <typename T>
double stored(double x) {
  return to_double(from_double<T>(static_cast<float>(x)));
}

inline double ulp_f32(double x) {
  const float f = static_cast<float>(std::fabs(x));
  return std::nextafter(f, std::numeric_limits<float>::infinity()) - f;
}

// ---- device-like memory ----

// One tensor as a kernel sees it: `offset` elements past a 256-byte boundary (0: 16-byte aligned;
// otherwise only element-aligned, like a view into the middle of a buffer), filled with 0xff
// bytes (NaN in float and bf16) so that elements a kernel should write but does not stand out.
// Under AddressSanitizer the allocation ends at the last element, so any access past it is
// reported; otherwise guard bytes after it must come back untouched.
template <typename T>
class Buffer {
 public:
  explicit Buffer(size_t n, size_t offset = 0) : n_(n), offset_(offset) {
    bytes_ = (offset + n) * sizeof(T) + kGuardBytes;
    raw_ = static_cast<unsigned char*>(::operator new(bytes_, std::align_val_t(256)));
    std::memset(raw_, 0xff, bytes_ - kGuardBytes);
    std::memset(raw_ + bytes_ - kGuardBytes, kGuard, kGuardBytes);
  }
  template <typename U>
  Buffer(const std::vector<U>& values, size_t offset) : Buffer(values.size(), offset) {
    for (size_t i = 0; i < n_; ++i) {
      if constexpr (std::is_integral_v<T>) {
        data()[i] = values[i];
      } else {
        data()[i] = from_double<T>(to_double(values[i]));
      }
    }
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { ::operator delete(raw_, std::align_val_t(256)); }

  T* data() { return reinterpret_cast<T*>(raw_) + offset_; }
  const T* data() const { return reinterpret_cast<const T*>(raw_) + offset_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data()[i]; }

  std::vector<double> values() const {
    std::vector<double> v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = to_double(data()[i]);
    return v;
  }
  void copy_from(const Buffer& other) { std::memcpy(data(), other.data(), n_ * sizeof(T)); }
  bool same_bits(const Buffer& other) const {
    return n_ == other.n_ && std::memcmp(data(), other.data(), n_ * sizeof(T)) == 0;
  }
  bool guard_intact() const {
    for (size_t i = bytes_ - kGuardBytes; i < bytes_; ++i) {
      if (raw_[i] != kGuard) return false;
    }
    return true;
  }

 private:
#ifdef __SANITIZE_ADDRESS__
  static constexpr size_t kGuardBytes = 0;
#else
  static constexpr size_t kGuardBytes = 64;
#endif
  static constexpr unsigned char kGuard = 0xa5;
  size_t n_, offset_, bytes_;
  unsigned char* raw_;
};

inline std::vector<double> random_values(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

template <typename T>
std::vector<double> rounded(std::vector<double> v) {
  for (auto& x : v) x = to_double(from_double<T>(x));
  return v;
}

// ---- comparing and reporting ----

// The worst element of got against want, in units of its tolerance: |got - want| / tol(i).
// A NaN where the reference has none, or none where it has one, is infinitely bad.
struct Worst {
  double ratio = 0;
  size_t index = 0;
  double got = 0, want = 0;
};

template <typename Tol>
Worst compare(const std::vector<double>& got, const std::vector<double>& want, Tol tol) {
  Worst w;
  if (got.size() != want.size()) {
    w.ratio = INFINITY;
    return w;
  }
  for (size_t i = 0; i < want.size(); ++i) {
    double r;
    if (std::isnan(want[i]) || std::isnan(got[i])) {
      r = std::isnan(want[i]) && std::isnan(got[i]) ? 0 : INFINITY;
    } else if (got[i] == want[i]) {
      r = 0;
    } else {
      const double t = tol(i);
      r = t > 0 ? std::fabs(got[i] - want[i]) / t : INFINITY;
      if (std::isnan(r)) r = INFINITY;
    }
    if (r > w.ratio || (i == 0 && r == 0)) w = {r, i, got[i], want[i]};
  }
  return w;
}

inline Worst compare(const std::vector<double>& got, const std::vector<double>& want, double rtol,
              double atol) {
  return compare(got, want, [&](size_t i) { return atol + rtol * std::fabs(want[i]); });
}

// What one check found: every requirement that failed, or a summary of how close it came.
class Verdict {
 public:
  void require(bool ok, const std::string& what) {
    if (!ok) fail(what);
  }
  void within(const Worst& w, const std::string& what) {
    if (w.ratio > 1) {
      fail(fmt::format("{} off by {:.3g}x its tolerance at [{}]: got {:.9g}, want {:.9g}", what,
                       w.ratio, w.index, w.got, w.want));
    }
    if (w.ratio >= worst_ || worst_what_.empty()) {
      worst_ = w.ratio;
      worst_what_ = what;
    }
  }
  void note(const std::string& text) { notes_.push_back(text); }
  bool ok() const { return failures_.empty(); }
  std::string detail() const {
    std::string out;
    for (const auto& f : ok() ? notes_ : failures_) out += (out.empty() ? "" : "; ") + f;
    if (ok() && !worst_what_.empty()) {
      out += (out.empty() ? "" : "; ") +
             (worst_ == 0 ? std::string("all exact")
                          : fmt::format("worst {:.2f} of tolerance ({})", worst_, worst_what_));
    }
    return out;
  }

 private:
  void fail(const std::string& what) {
    if (std::find(failures_.begin(), failures_.end(), what) == failures_.end()) {
      failures_.push_back(what);
    }
  }

  std::vector<std::string> failures_, notes_;
  double worst_ = 0;
  std::string worst_what_;
};

inline int g_passed = 0;
inline int g_failed = 0;

// Runs one check and prints its line. An exception (check_launch's Error, for one) fails it.
inline void check(const std::string& name, const std::function<void(Verdict&)>& body) {
  Verdict v;
  const auto start = std::chrono::steady_clock::now();
  try {
    body(v);
  } catch (const std::exception& e) {
    v.require(false, std::string("threw: ") + e.what());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (v.ok() ? g_passed : g_failed)++;
  fmt::print("{} {:<60} {} ({:.1f} s)\n", v.ok() ? "PASS" : "FAIL", name, v.detail(), seconds);
  std::fflush(stdout);
}

// Launches a lambda as a kernel, as preprocess.py's rewrite does.
template <typename Kernel, typename... Args>
void run_kernel(const char* name, dim3 grid, dim3 block, size_t bytes, Kernel kernel,
                Args... args) {
  emu::launch(name, __FILE__, __LINE__, grid, block, bytes, nullptr, kernel, args...);
}

// ---- attention ----

// How close attention results must come: per element, `element` of its own size plus
// `magnitude` of the magnitudes of the terms it sums (the usual bound on a sum's rounding
// error), and on the whole tensor a relative L2 error of `l2`. f32: fp32 sums of up to T terms;
// each probability carries the absolute error of its score (a few roundings of
// `score_magnitude`), which exp turns into a relative one. bf16: exact inputs, but the
// tensor-core paths round P (and dS) to bf16 before multiplying (2^-9 of each term), and outputs
// are stored in bf16. lse is fp32 on both paths: `element` relative plus `lse` absolute.
struct AttentionTolerance {
  double element, magnitude, l2, lse;
};

template <typename Act>
AttentionTolerance attention_tolerance(int T, double score_magnitude) {
  const double m = kF32 * (16 + 2 * score_magnitude + std::sqrt(static_cast<double>(T)));
  if constexpr (std::is_same_v<Act, float>) {
    return {4 * kF32, m, m, m};
  } else {
    return {storage_tolerance<Act>(), 0x1p-7, 6e-3, m};
  }
}

inline void attention_close(Verdict& v, const std::vector<double>& got,
                            const std::vector<double>& want, const std::vector<double>& magnitude,
                            const AttentionTolerance& tol, const std::string& what) {
  double num = 0, den = 0, mag = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
    mag += magnitude[i] * magnitude[i];
  }
  Worst l2;  // relative to the terms' magnitudes where the result itself is (nearly) zero
  l2.ratio = std::sqrt(num / std::max(den, 0.01 * mag)) / tol.l2;
  if (std::isnan(l2.ratio)) l2.ratio = INFINITY;
  v.within(l2, what + " (relative L2)");
  v.within(compare(got, want,
                   [&](size_t i) {
                     return tol.element * std::fabs(want[i]) + tol.magnitude * magnitude[i];
                   }),
           what);
}

}  // namespace checks
