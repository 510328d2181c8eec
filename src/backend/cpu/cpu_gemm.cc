// fp32 matrix products for the CPU backend: oneDNN's matmul primitive for the forward products
// of linear layers (bias fused), oneDNN's sgemm for the rest, and batch-invariant products (each
// row's sums in one fixed order) for products whose rows must not depend on one another and for
// the few-row products of decoding, where packing weights costs more than it saves.
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

namespace switchyard::backend::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // empty sum: C = beta * C; oneDNN rejects K == 0 in some versions
    for (int m = 0; m < M; ++m) {
      float* c = C + static_cast<size_t>(m) * ldc;
      for (int n = 0; n < N; ++n) c[n] = beta == 0.0f ? 0.0f : beta * c[n];
    }
    return;
  }
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                                          A, lda, B, ldb, beta, C, ldc);
  // Only inconsistent leading dimensions fail, which is a bug here rather than a user's mistake,
  // but a silent wrong answer would be worse than an error.
  require(status == dnnl_success, "oneDNN sgemm failed (status {}) for M={} N={} K={}",
          static_cast<int>(status), M, N, K);
}

namespace {

// oneDNN matmul primitives for out[N,OC] = inp[N,C] @ weight[OC,C]^T (+ bias), one per shape.
// Building one costs far more than running a small product, and a model uses a handful of shapes,
// so they are kept for the life of the process. On AVX-512 machines they run the forward products
// of GPT-2 about 20% faster than sgemm (its transposed-B path packs the weights on every call).
class LinearPrimitives {
 public:
  static LinearPrimitives& instance() {
    static LinearPrimitives primitives;
    return primitives;
  }

  void run(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
           int OC) {
    using dnnl::memory;
    const memory::desc src({N, C}, memory::data_type::f32, memory::dims{C, 1});
    const memory::desc wei({C, OC}, memory::data_type::f32, memory::dims{1, C});  // weight^T
    const memory::desc dst({N, OC}, memory::data_type::f32, memory::dims{OC, 1});
    const memory::desc bia({1, OC}, memory::data_type::f32, memory::dims{OC, 1});
    dnnl::matmul* primitive;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // oneDNN plans a primitive's work split for the thread count when it is built: one built for
      // one thread would keep running on one after the thread adapter raised the count again.
      auto key = std::make_tuple(N, C, OC, bias != nullptr, omp_get_max_threads());
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        const dnnl::matmul::desc desc =
            bias ? dnnl::matmul::desc(src, wei, bia, dst) : dnnl::matmul::desc(src, wei, dst);
        it = cache_.emplace(key, dnnl::matmul(dnnl::matmul::primitive_desc(desc, engine_))).first;
      }
      primitive = &it->second;
    }
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, memory(src, engine_, const_cast<float*>(inp))},
        {DNNL_ARG_WEIGHTS, memory(wei, engine_, const_cast<float*>(weight))},
        {DNNL_ARG_DST, memory(dst, engine_, out)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(bia, engine_, const_cast<float*>(bias)));
    primitive->execute(stream_, args);
    stream_.wait();
  }

 private:
  LinearPrimitives() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mutex_;
  std::map<std::tuple<int, int, int, bool, int>, dnnl::matmul> cache_;
};

// The batch-invariant products: out[n, o] = sum over c of inp[n, c] * weight[o, c], each sum in
// one fixed order whatever the tile, the number of rows or the thread count: eight lanes over c in
// ascending steps of 8 (fused multiply-adds), the lanes summed in a fixed tree, then the last
// C % 8 products in order. A tile of NR input rows and R weight rows keeps NR * R accumulators in
// registers; tiles differ only in how many sums run side by side, never in how one is formed.
#if defined(__AVX2__) && defined(__FMA__)
inline float sum_lanes(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
}
#endif

template <int NR, int R>
inline void invariant_tile(float* out, const float* inp, const float* weight, int C, int OC, int n0,
                           int o0) {
  const float* x[NR];
  const float* w[R];
  for (int i = 0; i < NR; ++i) x[i] = inp + static_cast<size_t>(n0 + i) * C;
  for (int r = 0; r < R; ++r) w[r] = weight + static_cast<size_t>(o0 + r) * C;
  float sums[NR][R];
  int c = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[NR][R];
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r) acc[i][r] = _mm256_setzero_ps();
  for (; c + 8 <= C; c += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm256_loadu_ps(w[r] + c);
    for (int i = 0; i < NR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x[i] + c);
      for (int r = 0; r < R; ++r) acc[i][r] = _mm256_fmadd_ps(wv[r], xv, acc[i][r]);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r) sums[i][r] = sum_lanes(acc[i][r]);
#else
  for (int i = 0; i < NR; ++i)
    for (int r = 0; r < R; ++r) sums[i][r] = 0.0f;
#endif
  for (int i = 0; i < NR; ++i) {
    for (int r = 0; r < R; ++r) {
      float tail = 0.0f;  // in order, one fused multiply-add at a time: no vectorised reduction
      for (int k = c; k < C; ++k) tail = std::fma(w[r][k], x[i][k], tail);
      out[static_cast<size_t>(n0 + i) * OC + o0 + r] = sums[i][r] + tail;
    }
  }
}

// Rows [n0, n1) against outputs [o0, o1): R weight rows at a time (they stay in L1) while the
// rows pass four at a time, then one at a time.
template <int R>
void invariant_block(float* out, const float* inp, const float* weight, int C, int OC, int n0,
                     int n1, int o0, int o1) {
  int o = o0;
  for (; o + R <= o1; o += R) {
    int n = n0;
    for (; n + 4 <= n1; n += 4) invariant_tile<4, R>(out, inp, weight, C, OC, n, o);
    for (; n < n1; ++n) invariant_tile<1, R>(out, inp, weight, C, OC, n, o);
  }
  for (; o < o1; ++o) {
    for (int n = n0; n < n1; ++n) invariant_tile<1, 1>(out, inp, weight, C, OC, n, o);
  }
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
  if (N == 0 || OC == 0) return;
  if (C == 0) {  // empty products: out = bias
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < OC; ++o) out[static_cast<size_t>(n) * OC + o] = bias ? bias[o] : 0.0f;
    }
    return;
  }
  try {
    LinearPrimitives::instance().run(out, inp, weight, bias, N, C, OC);
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul failed ({}) for N={} C={} OC={}", e.what(), N, C, OC);
  }
}

void batch_invariant_linear(float* out, const float* inp, const float* weight, int N, int C,
                            int OC) {
  // Tasks of up to 64 rows (they stay in L2 while the task's weights pass) by 64 outputs, or by 16
  // outputs for the few rows of decoding, so that every thread streams part of the weights.
  constexpr int kRows = 64;
  const int outputs = N <= kGemvMaxRows ? 16 : 64;
  const int row_blocks = (N + kRows - 1) / kRows, output_blocks = (OC + outputs - 1) / outputs;
  const bool parallel = static_cast<size_t>(OC) * C > kParallelThreshold;
#pragma omp parallel for schedule(static) if (parallel)
  for (int task = 0; task < row_blocks * output_blocks; ++task) {
    const int n0 = task / output_blocks * kRows, o0 = task % output_blocks * outputs;
    const int n1 = std::min(N, n0 + kRows), o1 = std::min(OC, o0 + outputs);
    // Few rows (decoding) keep eight sums per row in flight, more rows four per row of a tile.
    if (n1 - n0 < 4) {
      invariant_block<8>(out, inp, weight, C, OC, n0, n1, o0, o1);
    } else {
      invariant_block<4>(out, inp, weight, C, OC, n0, n1, o0, o1);
    }
  }
}

}  // namespace switchyard::backend::cpu
