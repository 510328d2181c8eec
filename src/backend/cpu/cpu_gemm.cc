// Matrix products for the CPU backend through oneDNN: its matmul primitive for the forward
// products of linear layers (bias fused) and for every bf16 product, its sgemm for the other fp32
// products. The batch-invariant products are in invariant_linear.cc.
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>

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

using dnnl::memory;

// One product's shapes, dtypes and layouts: C[M,N] (+)= op(A)[M,K] @ op(B)[K,N] (+ bias[N]).
struct MatmulKey {
  int M, N, K;
  memory::data_type ab, c;  // operands; result
  int64_t lda, ldb, ldc;
  bool trans_a, trans_b, bias, accumulate;
  int threads;
  auto tie() const {
    return std::tie(M, N, K, ab, c, lda, ldb, ldc, trans_a, trans_b, bias, accumulate, threads);
  }
  bool operator<(const MatmulKey& o) const { return tie() < o.tie(); }
};

// oneDNN matmul primitives, one per MatmulKey. Building one costs far more than running a small
// product, and a model uses a handful of shapes, so they are kept for the life of the process. On
// AVX-512 machines they run the forward products of GPT-2 about 20% faster than sgemm (its
// transposed-B path packs the weights on every call); in bf16 they use AVX-512 BF16 or AMX
// where the CPU has them, accumulating in fp32.
class MatmulPrimitives {
 public:
  static MatmulPrimitives& instance() {
    static MatmulPrimitives primitives;
    return primitives;
  }

  void run(const MatmulKey& key, void* c, const void* a, const void* b, const float* bias) {
    const memory::desc a_desc({key.M, key.K}, key.ab,
                              key.trans_a ? memory::dims{1, key.lda} : memory::dims{key.lda, 1});
    const memory::desc b_desc({key.K, key.N}, key.ab,
                              key.trans_b ? memory::dims{1, key.ldb} : memory::dims{key.ldb, 1});
    const memory::desc c_desc({key.M, key.N}, key.c, memory::dims{key.ldc, 1});
    const memory::desc bias_desc({1, key.N}, memory::data_type::f32, memory::dims{key.N, 1});
    dnnl::matmul* primitive;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        const dnnl::matmul::desc desc = key.bias ? dnnl::matmul::desc(a_desc, b_desc, bias_desc, c_desc)
                                                 : dnnl::matmul::desc(a_desc, b_desc, c_desc);
        dnnl::primitive_attr attr;
        if (key.accumulate) {  // C += product: oneDNN's sum post-op reads C before writing it
          dnnl::post_ops post;
          post.append_sum(1.0f);
          attr.set_post_ops(post);
        }
        it = cache_.emplace(key, dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine_)))
                 .first;
      }
      primitive = &it->second;
    }
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, memory(a_desc, engine_, const_cast<void*>(a))},
        {DNNL_ARG_WEIGHTS, memory(b_desc, engine_, const_cast<void*>(b))},
        {DNNL_ARG_DST, memory(c_desc, engine_, c)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(bias_desc, engine_, const_cast<float*>(bias)));
    primitive->execute(stream_, args);
    stream_.wait();
  }

 private:
  MatmulPrimitives() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mutex_;
  std::map<MatmulKey, dnnl::matmul> cache_;
};

void run_matmul(const MatmulKey& key, void* c, const void* a, const void* b, const float* bias) {
  try {
    MatmulPrimitives::instance().run(key, c, a, b, bias);
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul failed ({}) for M={} N={} K={}", e.what(), key.M, key.N, key.K);
  }
}

// oneDNN plans a primitive's work split for the thread count when it is built: one built for one
// thread would keep running on one after the thread adapter raised the count again.
MatmulKey key_for(bool trans_a, bool trans_b, int M, int N, int K, memory::data_type ab,
                  memory::data_type c, int lda, int ldb, int ldc, bool bias, bool accumulate) {
  return {M, N, K, ab, c, lda, ldb, ldc, trans_a, trans_b, bias, accumulate,
          omp_get_max_threads()};
}

}  // namespace

void bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, void* C, DType c_dtype, int ldc, bool accumulate,
               const float* bias) {
  if (M == 0 || N == 0) return;
  require(c_dtype == DType::kBF16 || c_dtype == DType::kF32,
          "bf16_gemm: the result must be bf16 or fp32, got {}", dtype_name(c_dtype));
  require(K > 0, "bf16_gemm: empty products (K = 0) are not supported");
  const memory::data_type c =
      c_dtype == DType::kBF16 ? memory::data_type::bf16 : memory::data_type::f32;
  // A transposed A of many rows (the vocabulary's weight gradient, dout^T @ inp with M = 50,257)
  // runs at half the rate in one oneDNN 2.6 call as in row blocks of 8,192 (measured on AVX-512
  // BF16: 383 against 720 GFLOP/s at K = 2,048, 321 against 646 at K = 256); each block is the
  // same product over its rows, so the results do not change.
  constexpr int kTransposedRowBlock = 8192;
  const int block = trans_a ? kTransposedRowBlock : M;
  const size_t c_bytes = c_dtype == DType::kBF16 ? 2 : 4;
  for (int m0 = 0; m0 < M; m0 += block) {
    const int rows = std::min(block, M - m0);
    const uint16_t* a = trans_a ? A + m0 : A + static_cast<size_t>(m0) * lda;
    void* c_rows = static_cast<char*>(C) + static_cast<size_t>(m0) * ldc * c_bytes;
    run_matmul(key_for(trans_a, trans_b, rows, N, K, memory::data_type::bf16, c, lda, ldb, ldc,
                       bias != nullptr, accumulate),
               c_rows, a, B, bias);
  }
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int C, int OC) {
  if (N == 0 || OC == 0) return;
  if (C == 0) {  // empty products: out = bias
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < OC; ++o) out[static_cast<size_t>(n) * OC + o] = bias ? bias[o] : 0.0f;
    }
    return;
  }
  // out = inp @ weight^T: weight [OC, C] read as its transpose [C, OC].
  run_matmul(key_for(false, true, N, OC, C, memory::data_type::f32, memory::data_type::f32, C, C,
                     OC, bias != nullptr, false),
             out, inp, weight, bias);
}

}  // namespace switchyard::backend::cpu
