// The CPU kernel set as function templates over the scalar type.
//
// CpuBackend calls the float instantiations. The double instantiations exist so that tests can
// check every backward pass against central finite differences, which float rounding would drown.
// Each kernel is a plain function over raw pointers, with the shapes and layout of
// backend/backend.h; loops are OpenMP-parallel over independent rows and written so that the
// compiler vectorises the inner loop. Nothing here allocates or throws: CpuBackend validates
// arguments before calling.
//
// Backward kernels accumulate (+=) into gradients, except cross_entropy_backward and matmul_backward
// where asked to overwrite (ops::LinearBackward).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/dtype.h"
#include "core/fp32_halves.h"

// `#pragma omp ...` spelled so that files compiled without OpenMP (which only call the kernels and
// link to the instances in cpu_kernels.cc, compiled with it) see nothing rather than an unknown
// pragma. SWITCHYARD_OMP_FOR(clauses) is `#pragma omp parallel for clauses`.
#ifdef _OPENMP
#define SWITCHYARD_OMP(...) _Pragma(#__VA_ARGS__)
#define SWITCHYARD_OMP_STRING(...) #__VA_ARGS__
#define SWITCHYARD_OMP_FOR(...) _Pragma(SWITCHYARD_OMP_STRING(omp parallel for __VA_ARGS__))
#else
#define SWITCHYARD_OMP(...)
#define SWITCHYARD_OMP_FOR(...)
#endif

namespace switchyard::backend::cpu {

// Loops shorter than this run on one thread: waking the team costs more than the work.
inline constexpr size_t kParallelThreshold = 1 << 15;
// Matrix products with at most this many rows go to batch_invariant_linear (weight streaming)
// instead of oneDNN.
inline constexpr int kGemvMaxRows = 4;

// ---- matrix products ----

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major; op(X) is X or X^T as trans_* says. With
// beta == 0, C is not read. fp32 through oneDNN's sgemm (cpu_gemm.cc).
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias may be null) through a cached oneDNN
// matmul primitive (cpu_gemm.cc).
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC);

// C[M,N] = op(A) @ op(B) (+ bias[N]; + C when accumulate), A and B bf16 (the raw bits), C bf16
// or fp32, row-major as sgemm; products accumulate in fp32 (oneDNN's bf16 matmul: AVX-512 BF16 or
// AMX where present, emulated otherwise). K must be positive.
void bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, void* C, DType c_dtype, int ldc, bool accumulate,
               const float* bias);

// out[N,OC] = inp[N,C] @ weight[OC,C]^T with every output one chain of fused multiply-adds over c
// in ascending order from zero, so that a row's result never depends on the number of rows, the
// other rows, the vector width or the thread count (invariant_linear.cc). Few rows stream the
// weights once (decoding runs at memory bandwidth); many rows run a packed GEMM (prompts).
void batch_invariant_linear(float* out, const float* inp, const float* weight, int N, int C,
                            int OC);

// A weight matrix [OC, C], row-major, in the dtype it is stored in: fp32, bf16, or MXFP4 (C a
// multiple of 32; `data` the codes, C / 2 bytes a row, `scales` the E8M0 bytes, C / 32 a row).
// Inference models keep checkpoint weights this way and the products decode them as they read.
struct WeightMatrix {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  const uint8_t* scales = nullptr;  // MXFP4 only

  // The matrix that starts `rows` rows of C further on (expert e of [E, OC, C]: rows = e * OC).
  WeightMatrix rows_from(int64_t rows, int64_t C) const {
    const int64_t elements = rows * C;
    WeightMatrix w = *this;
    w.data = static_cast<const uint8_t*>(data) + storage_bytes(dtype, elements);
    if (scales) w.scales = scales + elements / dtype_block_elements(dtype);
    return w;
  }
};

// batch_invariant_linear over weights stored as fp32, bf16 or MXFP4: the same summation order
// over the weights' values, so the bits equal the fp32 product over the decoded weights (decoding
// is exact). The weights are decoded in registers as they stream (few rows) or as the packed GEMM
// packs them (many rows). Throws Error for another dtype, or MXFP4 without scales or with C not a
// multiple of 32.
void batch_invariant_linear(float* out, const float* inp, const WeightMatrix& weight, int N, int C,
                            int OC);

// The same contract as sgemm, by plain loops: the double path of the tests and the reference that
// the oneDNN path is checked against.
template <typename T>
void reference_gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
                    const T* B, int ldb, T beta, T* C, int ldc) {
  const bool parallel = static_cast<size_t>(M) * N * K > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      T acc = 0;
      for (int k = 0; k < K; ++k) {
        const T a =
            trans_a ? A[static_cast<size_t>(k) * lda + m] : A[static_cast<size_t>(m) * lda + k];
        const T b =
            trans_b ? B[static_cast<size_t>(n) * ldb + k] : B[static_cast<size_t>(k) * ldb + n];
        acc += a * b;
      }
      T& c = C[static_cast<size_t>(m) * ldc + n];
      c = beta == T(0) ? alpha * acc : alpha * acc + beta * c;
    }
  }
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    reference_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

// ---- elementwise math ----

// exp for the softmaxes and GELU. float: a polynomial that the compiler vectorises (glibc's expf is
// not vectorised without -ffast-math), relative error about 2e-7. Inputs are clamped to [-87, 88],
// so -inf gives ~1e-38 and +inf ~1.7e38, and a NaN input does NOT give NaN: callers that must
// propagate NaN add `x * 0` terms themselves. double: std::exp, so the finite-difference tests see
// exact derivatives.
template <typename T>
inline T exp_vec(T x) {
  if constexpr (std::is_same_v<T, float>) {
    // Everything is branch-free arithmetic: GCC 12 threads jumps through float selects (and will
    // not vectorise std::floor under -ftrapping-math), which would leave these loops scalar. Clamp
    // on the bits, mapped to integers that order like the floats they encode.
    const int32_t bits = std::bit_cast<int32_t>(x);
    const int32_t ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF);
    constexpr int32_t kLow = std::bit_cast<int32_t>(-87.0f) ^ 0x7FFFFFFF;
    constexpr int32_t kHigh = std::bit_cast<int32_t>(88.0f);
    const int32_t clamped = std::min(std::max(ordered, kLow), kHigh);
    const float y = std::bit_cast<float>(clamped ^ ((clamped >> 31) & 0x7FFFFFFF));
    // exp(y) = 2^n exp(r), n = round(y / ln 2), |r| <= ln(2) / 2, ln 2 split in two for accuracy.
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const float shifted = y * 1.44269504088896341f + 12582912.0f;
    const int32_t ni = std::bit_cast<int32_t>(shifted) - 0x4B400000;
    const float n = shifted - 12582912.0f;
    const float r = (y - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;  // Taylor series of exp(r) to degree 7 (truncation < 6e-9)
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = std::bit_cast<float>((ni + 127) << 23);
    return p * scale;
  } else {
    return std::exp(x);
  }
}

// ---- embeddings ----

// out[N,C] = table[ids[n], :] (+ position_table[position_ids[n], :] when position_table is not
// null). Also gathers rows: out[r] = table[ids[r]].
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, const int32_t* position_ids,
                       const T* position_table, int N, int C) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    T* o = out + static_cast<size_t>(n) * C;
    const T* e = table + static_cast<size_t>(ids[n]) * C;
    if (position_table) {
      const T* p = position_table + static_cast<size_t>(position_ids[n]) * C;
      SWITCHYARD_OMP(omp simd)
      for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
    } else {
      std::memcpy(o, e, sizeof(T) * C);
    }
  }
}

// embedding_forward over a bf16 table (an inference checkpoint's): out[N,C] fp32 = table[ids[n], :]
// widened (exact) (+ position_table[position_ids[n], :] in fp32 when position_table is not null).
void embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* table,
                            const int32_t* position_ids, const float* position_table, int N, int C);

// A [rows, C] parameter table held as fp32 halves (core/fp32_halves.h), or as bf16 alone (low null:
// a frozen checkpoint's table as stored); high null for none.
struct HalvesTable {
  const uint16_t* high = nullptr;
  const uint16_t* low = nullptr;
  float value(size_t i) const {
    return low ? fp32_from_halves(high[i], low[i]) : widen_bf16_bits(high[i]);
  }
};
// embedding_forward over tables held as halves or bf16: out[N,C] = table[ids[n], :] (+ positions'
// [position_ids[n], :] where positions.high is not null), summed in fp32 from the exact values,
// into fp32 (out) or bf16 (out_bf16, rounded to nearest even; the other pointer null).
void embedding_forward_halves(float* out, uint16_t* out_bf16, const int32_t* ids,
                              HalvesTable table, const int32_t* position_ids,
                              HalvesTable positions, int N, int C);

// dtable[ids[n], :] += dout[n, :]; dposition_table[position_ids[n], :] += dout[n, :] when
// dposition_table is not null. Threads split the channels, so repeated ids never race.
template <typename T>
void embedding_backward(T* dtable, T* dposition_table, const T* dout, const int32_t* ids,
                        const int32_t* position_ids, int N, int C) {
  constexpr int kBlock = 64;
  const int blocks = (C + kBlock - 1) / kBlock;
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    for (int n = 0; n < N; ++n) {
      const T* d = dout + static_cast<size_t>(n) * C;
      T* w = dtable + static_cast<size_t>(ids[n]) * C;
      SWITCHYARD_OMP(omp simd)
      for (int c = c0; c < c1; ++c) w[c] += d[c];
      if (dposition_table) {
        T* p = dposition_table + static_cast<size_t>(position_ids[n]) * C;
        SWITCHYARD_OMP(omp simd)
        for (int c = c0; c < c1; ++c) p[c] += d[c];
      }
    }
  }
}

// ---- layernorm ----

// One row of layernorm_forward: o[C] from x[C] (o may be x), returning the row's mean and rstd.
template <typename T>
inline void layernorm_row(T* o, T& mean, T& rstd, const T* x, const T* weight, const T* bias, int C,
                          T epsilon) {
  T sum = 0;
  SWITCHYARD_OMP(omp simd reduction(+ : sum))
  for (int c = 0; c < C; ++c) sum += x[c];
  const T m = sum / C;
  T var = 0;  // two passes: no cancellation when |mean| >> std
  SWITCHYARD_OMP(omp simd reduction(+ : var))
  for (int c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
  const T s = T(1) / std::sqrt(var / C + epsilon);
  SWITCHYARD_OMP(omp simd)
  for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
  mean = m;
  rstd = s;
}

// out[N,C] = (inp - mean) * rstd * weight + bias per row, biased variance (as torch), rstd =
// 1 / sqrt(variance + epsilon).
// mean[N] and rstd[N] are saved for the backward pass.
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C, T epsilon = T(1e-5)) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(n) * C;
    layernorm_row(out + row, mean[n], rstd[n], inp + row, weight, bias, C, epsilon);
  }
}

// One row of layernorm_backward's input gradient: dx[C] += d/dx given d[C], the row x[C] and its
// mean m and rstd s. dL/dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm =
// weight * dout.
template <typename T>
inline void layernorm_row_backward(T* dx, const T* d, const T* x, const T* weight, T m, T s, int C) {
  T dnorm_mean = 0;
  T dnorm_norm_mean = 0;
  SWITCHYARD_OMP(omp simd reduction(+ : dnorm_mean, dnorm_norm_mean))
  for (int c = 0; c < C; ++c) {
    const T dnorm = weight[c] * d[c];
    dnorm_mean += dnorm;
    dnorm_norm_mean += dnorm * (x[c] - m) * s;
  }
  dnorm_mean /= C;
  dnorm_norm_mean /= C;
  SWITCHYARD_OMP(omp simd)
  for (int c = 0; c < C; ++c) {
    const T norm = (x[c] - m) * s;
    dx[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// dinp[N,C] += ..., dweight[C] += sum_n norm * dout, dbias[C] += sum_n dout, with norm =
// (x-mean)*rstd. dinp per row in parallel, then the parameter gradients with threads splitting the
// channels.
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int N, int C) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(n) * C;
    layernorm_row_backward(dinp + row, dout + row, inp + row, weight, mean[n], rstd[n], C);
  }
  constexpr int kBlock = 64;
  const int blocks = (C + kBlock - 1) / kBlock;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    for (int n = 0; n < N; ++n) {
      const T* x = inp + static_cast<size_t>(n) * C;
      const T* d = dout + static_cast<size_t>(n) * C;
      const T m = mean[n];
      const T s = rstd[n];
      SWITCHYARD_OMP(omp simd)
      for (int c = c0; c < c1; ++c) {
        dweight[c] += (x[c] - m) * s * d[c];
        dbias[c] += d[c];
      }
    }
  }
}

// ---- linear layers ----

// out[N,OC] += bias[OC] for every row; nothing when bias is null.
template <typename T>
void add_bias(T* out, const T* bias, int N, int OC) {
  if (bias == nullptr) return;
  const bool parallel = static_cast<size_t>(N) * OC > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    T* o = out + static_cast<size_t>(n) * OC;
    SWITCHYARD_OMP(omp simd)
    for (int oc = 0; oc < OC; ++oc) o[oc] += bias[oc];
  }
}

// out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias may be null). With batch_invariant, each
// row's result is independent of the other rows (ops::Linear::batch_invariant); the double path
// always is.
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC,
                    bool batch_invariant = false) {
  if constexpr (std::is_same_v<T, float>) {
    if (N > kGemvMaxRows && !batch_invariant) {
      linear_forward(out, inp, weight, bias, N, C, OC);
      return;
    }
    batch_invariant_linear(out, inp, weight, N, C, OC);
  } else {
    gemm<T>(false, true, N, OC, C, 1, inp, C, weight, C, 0, out, OC);
  }
  add_bias(out, bias, N, OC);
}

// matmul_forward over weights stored as fp32, bf16 or MXFP4 (WeightMatrix): always the
// batch-invariant product, then the bias added as above, so a row gets the bits of the fp32
// batch-invariant matmul_forward over the decoded weights.
void matmul_forward(float* out, const float* inp, const WeightMatrix& weight, const float* bias,
                    int N, int C, int OC);

// Which of a linear layer's gradients are set rather than added to (ops::LinearBackward's
// overwrite flags): the input's, and the parameters' (weight and bias together).
struct GradientOverwrite {
  bool dinp = false;
  bool params = false;
};

// dinp[N,C] += dout[N,OC] @ weight[OC,C] (skipped when dinp is null);
// dweight[OC,C] += dout^T @ inp[N,C]; dbias[OC] += column sums of dout (skipped when null);
// `=` instead of `+=` where `overwrite` says (an overwritten buffer is not read).
template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int C, int OC, GradientOverwrite overwrite = {}) {
  const T dinp_beta = overwrite.dinp ? 0 : 1, params_beta = overwrite.params ? 0 : 1;
  if (dinp != nullptr) gemm<T>(false, false, N, C, OC, 1, dout, OC, weight, C, dinp_beta, dinp, C);
  gemm<T>(true, false, OC, C, N, 1, dout, OC, inp, C, params_beta, dweight, C);
  if (dbias == nullptr) return;
  if (overwrite.params) std::fill(dbias, dbias + OC, T(0));
  constexpr int kBlock = 256;
  const int blocks = (OC + kBlock - 1) / kBlock;
  const bool parallel = static_cast<size_t>(N) * OC > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int blk = 0; blk < blocks; ++blk) {
    const int o0 = blk * kBlock;
    const int o1 = std::min(OC, o0 + kBlock);
    for (int n = 0; n < N; ++n) {
      const T* d = dout + static_cast<size_t>(n) * OC;
      SWITCHYARD_OMP(omp simd)
      for (int oc = o0; oc < o1; ++oc) dbias[oc] += d[oc];
    }
  }
}

// ---- attention ----

template <typename T>
inline T dot(const T* a, const T* b, int n) {
  T acc = 0;
  SWITCHYARD_OMP(omp simd reduction(+ : acc))
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Attention works on row blocks of this many query positions: a block's products need keys up to
// its last row only, so little of the masked upper triangle is computed.
inline constexpr int kAttentionBlock = 64;

// ---- GELU ----

// GELU, tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Written as x *
// sigmoid(2u) (the same function, since 0.5 (1 + tanh(u)) = sigmoid(2u)), which needs only exp and
// vectorises. Returns s = sigmoid(2u) and, computed directly rather than as 1 - s (which cancels),
// 1 - s.
template <typename T>
inline void gelu_sigmoid(T x, T& s, T& one_minus_s) {
  constexpr T kSqrt2OverPi = T(0.7978845608028654);
  const T u = kSqrt2OverPi * (x + T(0.044715) * x * x * x);
  // e * s below must stay finite: float's exp_vec caps at exp(88); std::exp needs a cap (the
  // double path is not vectorised, so the branch costs nothing that matters).
  T arg = T(-2) * u;
  if constexpr (!std::is_same_v<T, float>) arg = std::min(arg, T(700));
  const T e = exp_vec(arg);
  s = T(1) / (T(1) + e);
  one_minus_s = e * s;
}

// gelu(x), and gelu'(x) the exact derivative of the tanh form:
// d/dx [x s] = s + x s (1 - s) 2 u'(x), s = sigmoid(2u), u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
template <typename T>
inline T gelu(T x) {
  T s, one_minus_s;
  gelu_sigmoid(x, s, one_minus_s);
  return x * s;
}
template <typename T>
inline T gelu_derivative(T x) {
  constexpr T kSqrt2OverPi = T(0.7978845608028654);
  T s, one_minus_s;
  gelu_sigmoid(x, s, one_minus_s);
  const T du = kSqrt2OverPi * (T(1) + T(3 * 0.044715) * x * x);
  return s + T(2) * x * s * one_minus_s * du;
}

// out[N] = gelu(inp[N]).
template <typename T>
void gelu_forward(T* out, const T* inp, size_t N) {
  SWITCHYARD_OMP_FOR(simd schedule(static) if (N > kParallelThreshold))
  for (size_t i = 0; i < N; ++i) out[i] = gelu(inp[i]);
}

// dinp[N] += gelu'(inp) * dout.
template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, size_t N) {
  SWITCHYARD_OMP_FOR(simd schedule(static) if (N > kParallelThreshold))
  for (size_t i = 0; i < N; ++i) dinp[i] += gelu_derivative(inp[i]) * dout[i];
}

// ---- residual ----

// out[N] = a + b.
template <typename T>
void residual_forward(T* out, const T* a, const T* b, size_t N) {
  SWITCHYARD_OMP_FOR(simd schedule(static) if (N > kParallelThreshold))
  for (size_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

// dst[N] += src.
template <typename T>
void accumulate(T* dst, const T* src, size_t N) {
  SWITCHYARD_OMP_FOR(simd schedule(static) if (N > kParallelThreshold))
  for (size_t i = 0; i < N; ++i) dst[i] += src[i];
}

// ---- loss ----

// The row statistics a softmax needs: its maximum, the sum of exp(l - max), and `poison`, which is
// NaN if any logit is NaN or infinite (exp_vec clamps its input and would hide them) and 0 otherwise.
template <typename T>
struct SoftmaxRow {
  T max_logit, sum, poison;
};

template <typename T>
inline SoftmaxRow<T> softmax_row(const T* l, int V) {
  T max_logit = -std::numeric_limits<T>::infinity();
  SWITCHYARD_OMP(omp simd reduction(max : max_logit))
  for (int i = 0; i < V; ++i) max_logit = std::max(max_logit, l[i]);
  T sum = 0;
  T poison = 0;
  SWITCHYARD_OMP(omp simd reduction(+ : sum, poison))
  for (int i = 0; i < V; ++i) {
    sum += exp_vec(l[i] - max_logit);
    poison += l[i] * T(0);
  }
  return {max_logit, sum, poison};
}

// losses[N] = -log softmax(logits[n, :V])[targets[n]] = logsumexp(logits[n]) - logits[n, target].
template <typename T>
void cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int N, int V) {
  const bool parallel = static_cast<size_t>(N) * V > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* l = logits + static_cast<size_t>(n) * V;
    const auto [max_logit, sum, poison] = softmax_row(l, V);
    losses[n] = std::log(sum) + max_logit - l[targets[n]] + poison;
  }
}

// dlogits[N,V] = (softmax(logits) - onehot(targets)) * dloss; overwrites. dlogits may be logits
// itself: each element is read before the same element is written.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, T dloss, int N,
                            int V) {
  const bool parallel = static_cast<size_t>(N) * V > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* l = logits + static_cast<size_t>(n) * V;
    T* d = dlogits + static_cast<size_t>(n) * V;
    const auto [max_logit, sum, poison] = softmax_row(l, V);
    const T scale = dloss / sum + poison;
    // omp simd: exact aliasing (d == l) is safe lane by lane, and it spares a runtime overlap check
    // that would fall back to scalar code in the in-place case.
    SWITCHYARD_OMP(omp simd)
    for (int i = 0; i < V; ++i) d[i] = exp_vec(l[i] - max_logit) * scale;
    d[targets[n]] -= dloss;
  }
}

// One row of cross_entropy_backward given the row's loss from the forward pass: its log-sum-exp is
// loss + l[target], so the row is read and exponentiated once rather than three times and twice.
// d may be l itself.
template <typename T>
inline void cross_entropy_backward_row_from_loss(T* d, const T* l, int32_t target, T loss, T dloss,
                                                 int V) {
  const T log_sum_exp = loss + l[target];
  // A row the forward pass found poisoned (a NaN or infinite logit: a NaN loss) stays NaN here
  // too; exp_vec clamps its argument, which would turn a NaN into a number.
  const T scale = dloss + log_sum_exp * T(0);
  SWITCHYARD_OMP(omp simd)
  for (int i = 0; i < V; ++i) d[i] = exp_vec(l[i] - log_sum_exp) * scale;
  d[target] -= dloss;
}

// ---- optimizer ----

// Sum of x[N]^2, accumulated in double.
template <typename T>
double sum_of_squares(const T* x, size_t N) {
  double acc = 0;
  const bool parallel = N > kParallelThreshold;
  SWITCHYARD_OMP_FOR(simd schedule(static) reduction(+ : acc) if (parallel))
  for (size_t i = 0; i < N; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return acc;
}

// One AdamW step as torch.optim.AdamW (decoupled weight decay), with g = grads * grad_scale:
// p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <typename T>
void adamw_update(T* params, const T* grads, T* m, T* v, size_t N, double learning_rate,
                  double beta1, double beta2, double epsilon, double weight_decay, int step,
                  double grad_scale) {
  const T decay = static_cast<T>(1.0 - learning_rate * weight_decay);
  const T step_size = static_cast<T>(learning_rate / (1.0 - std::pow(beta1, step)));
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(beta2, step)));
  const T b1 = static_cast<T>(beta1);
  const T b2 = static_cast<T>(beta2);
  const T eps = static_cast<T>(epsilon);
  const T gs = static_cast<T>(grad_scale);
  SWITCHYARD_OMP_FOR(simd schedule(static) if (N > kParallelThreshold))
  for (size_t i = 0; i < N; ++i) {
    const T g = grads[i] * gs;
    const T mi = b1 * m[i] + (T(1) - b1) * g;
    const T vi = b2 * v[i] + (T(1) - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

// Every kernel is instantiated for float and double once, in cpu_kernels.cc, which the build
// compiles with OpenMP and the native ISA; other translation units (tests included) link to those
// copies instead of instantiating their own with whatever flags they were built with.
#define SWITCHYARD_CPU_KERNEL_INSTANCES(PREFIX, T)                                                \
  PREFIX template void reference_gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*,   \
                                         int, T, T*, int);                                        \
  PREFIX template void gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*, int, T, T*, \
                               int);                                                              \
  PREFIX template void embedding_forward<T>(T*, const int32_t*, const T*, const int32_t*,         \
                                            const T*, int, int);                                  \
  PREFIX template void embedding_backward<T>(T*, T*, const T*, const int32_t*, const int32_t*,    \
                                             int, int);                                           \
  PREFIX template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int, int, T);\
  PREFIX template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                             const T*, int, int);                                 \
  PREFIX template void add_bias<T>(T*, const T*, int, int);                                      \
  PREFIX template void matmul_forward<T>(T*, const T*, const T*, const T*, int, int, int, bool); \
  PREFIX template void matmul_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int,     \
                                          int, GradientOverwrite);                                \
  PREFIX template void gelu_forward<T>(T*, const T*, size_t);                                     \
  PREFIX template void gelu_backward<T>(T*, const T*, const T*, size_t);                          \
  PREFIX template void residual_forward<T>(T*, const T*, const T*, size_t);                       \
  PREFIX template void accumulate<T>(T*, const T*, size_t);                                       \
  PREFIX template void cross_entropy_forward<T>(T*, const T*, const int32_t*, int, int);          \
  PREFIX template void cross_entropy_backward<T>(T*, const T*, const int32_t*, T, int, int);      \
  PREFIX template double sum_of_squares<T>(const T*, size_t);                                     \
  PREFIX template void adamw_update<T>(T*, const T*, T*, T*, size_t, double, double, double,      \
                                       double, double, int, double);

SWITCHYARD_CPU_KERNEL_INSTANCES(extern, float)
SWITCHYARD_CPU_KERNEL_INSTANCES(extern, double)

}  // namespace switchyard::backend::cpu
