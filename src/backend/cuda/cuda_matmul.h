// Matrix products for the CUDA backend through cuBLASLt.
//
// cuBLASLt is column-major; GemmCall is stated in its terms (the backend maps the row-major model
// tensors onto it). Each distinct problem (shape, types, leading dimensions, epilogue, pointer
// alignments) is planned once: descriptors and the heuristic's algorithm are cached, so a training
// step issues plain cublasLtMatmul calls. Arithmetic is fp32 (CUBLAS_COMPUTE_32F: no TF32), on bf16
// or fp32 operands.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <tuple>

namespace switchyard::backend::cuda {

enum class MatrixType { kF32, kBF16 };

enum class Epilogue {
  kNone,
  kBias,         // D += bias[m] broadcast over columns (bias of GemmCall::bias_type)
  kGeluAuxBias,  // aux = op(A) op(B) + bias; D = gelu(aux) (aux has D's type)
};

// D[m,n] = op(A) op(B) + beta * D, column-major. op(A) is m x k, op(B) is k x n.
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int lda = 0;
  MatrixType a_type = MatrixType::kF32;
  const void* b = nullptr;
  int ldb = 0;
  MatrixType b_type = MatrixType::kF32;
  void* d = nullptr;
  int ldd = 0;
  MatrixType d_type = MatrixType::kF32;
  float beta = 0;
  Epilogue epilogue = Epilogue::kNone;
  const void* bias = nullptr;
  MatrixType bias_type = MatrixType::kF32;
  void* aux = nullptr;
  int aux_ld = 0;
};

class Matmul {
 public:
  // Device scratch cuBLASLt may use (its advice for Hopper; enough for split-K and stream-K).
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  explicit Matmul(cudaStream_t stream);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // Queues the product on the stream. Returns false, having done nothing, when cuBLASLt has no
  // algorithm for this problem with its epilogue (the caller then runs the unfused kernels);
  // throws Error for anything else that goes wrong, and when even a plain product has no
  // algorithm.
  bool run(const GemmCall& call);

 private:
  struct Plan;
  using Key = std::tuple<bool, bool, int, int, int, int, int, int, int, int, int, bool, int, int,
                         int, int, int, int, int>;
  Plan* plan_for(const GemmCall& call, const Key& key);

  cudaStream_t stream_;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan*> plans_;
};

}  // namespace switchyard::backend::cuda
