// fp32 matrix products for the CPU backend: oneDNN's matmul primitive for the forward products
// of linear layers (bias fused), oneDNN's sgemm for the rest, and a weight-streaming loop for the
// few-row products of decoding, where packing costs more than it saves.
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

// out[n, o0..o0+R) for all N rows against R consecutive weight rows: R independent accumulators
// hide the FMA latency, and the R weight rows (R * C floats) stay in L1 while the N input rows
// pass.
template <int R>
inline void gemv_block(float* out, const float* inp, const float* weight, int N, int C, int OC,
                       int o0) {
  const float* w[R];
  for (int r = 0; r < R; ++r) w[r] = weight + static_cast<size_t>(o0 + r) * C;
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<size_t>(n) * C;
    float sums[R];
    int c = 0;
#if defined(__AVX2__) && defined(__FMA__)
    // GCC does not vectorise the R-way reduction below by itself, so the main loop is explicit.
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (; c + 8 <= C; c += 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + c), xv, acc[r]);
    }
    for (int r = 0; r < R; ++r) {
      const __m128 half =
          _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
      const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
      sums[r] = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1)));
    }
#else
    for (int r = 0; r < R; ++r) sums[r] = 0.0f;
#endif
    for (int r = 0; r < R; ++r) {
      float tail = 0.0f;
#pragma omp simd reduction(+ : tail)
      for (int k = c; k < C; ++k) tail += w[r][k] * x[k];
      sums[r] += tail;
    }
    float* o = out + static_cast<size_t>(n) * OC + o0;
    for (int r = 0; r < R; ++r) o[r] = sums[r];
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

void gemv_rows(float* out, const float* inp, const float* weight, int N, int C, int OC) {
  constexpr int kRows = 8;
  const int blocks = OC / kRows;
#pragma omp parallel for schedule(static) if (static_cast <size_t>(OC) * C > kParallelThreshold)
  for (int blk = 0; blk < blocks; ++blk) {
    gemv_block<kRows>(out, inp, weight, N, C, OC, blk * kRows);
  }
  for (int o = blocks * kRows; o < OC; ++o) gemv_block<1>(out, inp, weight, N, C, OC, o);
}

}  // namespace switchyard::backend::cpu
